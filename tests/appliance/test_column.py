"""appliance.column: no vertebral column in an empty, noisy or all-body label map; a spine passes."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.column import MAX_COLUMN_CM3, MAX_COMPONENTS, MIN_COLUMN_CM3, find_column

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm³ voxels


def test_the_phantom_spine_is_a_column(small_study):
    f = find_column(small_study.labels.array, small_study.labels.affine)
    assert f.found and f.problem is None and f.fragments == 0
    assert f.body_sized >= 15 and MIN_COLUMN_CM3 < f.body_sized_cm3 < MAX_COLUMN_CM3


def test_nothing_labelled_is_no_column():
    f = find_column(np.zeros((40, 40, 40), np.uint8), AFFINE)
    assert f.problem == "too_little" and f.body_sized == 0 and f.largest_cm3 == 0.0
    assert "0 vertebral-body components of plausible size" in f.describe()


def test_specks_only_are_no_column():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[10:13, 10:13, 10:13] = 1  # 0.2 cm³: a speck, not a body
    f = find_column(labels, AFFINE)
    assert f.problem == "too_little" and f.fragments == 1 and f.largest_cm3 == pytest.approx(0.216)


def test_label_noise_is_no_column():
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 60, 60)) < 0.05).astype(np.uint8)  # what an untrained network paints
    f = find_column(labels, AFFINE)
    assert f.problem == "fragmented" and f.components > MAX_COMPONENTS
    assert "noise" in f.describe()


def test_many_body_sized_blobs_are_no_column():
    labels = np.zeros((80, 80, 80), np.uint8)
    labels[2::6, 2::6, 2::6] = 1  # 2197 separate blobs, each 0.3 cm³ after dilation: body-sized
    from scipy import ndimage

    labels = ndimage.binary_dilation(labels, iterations=1).astype(np.uint8)
    labels = ndimage.binary_dilation(labels, structure=np.ones((3, 3, 3))).astype(np.uint8)
    f = find_column(labels, AFFINE)
    assert f.fragments == 0 and f.problem == "fragmented"  # what an untrained net gives on the working grid


def test_the_whole_patient_labelled_body_is_no_column():
    labels = np.ones((70, 70, 70), np.uint8)  # 2744 cm³ in one piece
    f = find_column(labels, AFFINE)
    assert f.problem == "too_much" and f.body_sized_cm3 > MAX_COLUMN_CM3


def test_the_plausibility_result_handed_to_measure_gives_the_same_measurements(small_study):
    """The pipeline runs the plausibility rules once: the column check's result, handed to
    measure(), gives exactly what measure() computes on its own."""
    import json

    from appliance.measure.api import measure

    labels, affine = small_study.labels.array, small_study.labels.affine
    finding = find_column(labels, affine)
    assert finding.plausible is not None
    handed = measure(labels, affine, plausible=finding.plausible)
    assert json.dumps(handed, sort_keys=True) == json.dumps(measure(labels, affine), sort_keys=True)
