"""What a 2.5 mm label map cannot tell: two phantoms, one label map, lordosis 5° apart.

Issue 6 asks for ≤ 2° on small (2–3 mm) phantoms. At 2.5 mm a nearly flat endplate
lies within one voxel layer, and the label map (a voxel is bone when its centre is
inside) stays bit for bit the same while the plate turns by several degrees. This test
builds such a pair through the real generator: study 0 of ``bench_measure.py`` and the
same study with L1's superior endplate turned 5° in the sagittal plane (and moved
0.3 mm along its normal). Their label maps are identical, their planted lumbar lordosis
differs by 5°, so any measurement — ours included — is at least 2.5° off on one of
them. ``tests/benchmarks/bench_measure_limit.py`` gives this bound for every plate and
phantom.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from appliance.measure.api import measure
from appliance.phantom import generate as gen
from appliance.phantom.spine import build_spine
from tests.benchmarks.bench_measure import ANGLES, evaluate, overrides

PINS = overrides(0, 20)  # study 0 of tests/benchmarks/bench_measure.py
TURN_DEG = 5.0
SHIFT_MM = -0.3


def _turned(n: np.ndarray, deg: float) -> np.ndarray:
    a = np.radians(deg)  # about the x (left) axis: the sagittal tilt grows by deg
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), np.sin(a)], [0.0, -np.sin(a), np.cos(a)]]) @ n


def _l1_turned(p):
    spine = build_spine(p)
    verts = []
    for v in spine.vertebrae:
        if v.name == "L1":
            b = v.body
            body = dataclasses.replace(b, sup_normal=_turned(b.sup_normal, TURN_DEG),
                                       sup_point=b.sup_point + SHIFT_MM * b.sup_normal)
            v = dataclasses.replace(v, body=body)
        verts.append(v)
    return dataclasses.replace(spine, vertebrae=tuple(verts))


@pytest.fixture(scope="module")
def pair():
    plain = gen.generate_study(0, "small", **PINS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gen, "build_spine", _l1_turned)
        turned = gen.generate_study(0, "small", **PINS)
    return plain, turned


def test_one_label_map_two_lordoses(pair):
    plain, turned = pair
    assert np.array_equal(plain.labels.array, turned.labels.array)
    ll = [s.truth["lumbar_lordosis_deg"] for s in pair]
    assert abs(ll[1] - ll[0]) == pytest.approx(TURN_DEG, abs=0.01)
    # the images differ (the T12/L1 disc follows the plate): only the label map is blind to it
    assert not np.array_equal(plain.image.array, turned.image.array)


def test_no_measurement_is_within_2deg_of_both(pair):
    plain, turned = pair
    got = measure(plain.labels.array, plain.labels.affine)["lumbar_lordosis_deg"]
    errors = [abs(got - s.truth["lumbar_lordosis_deg"]) for s in pair]
    assert max(errors) >= TURN_DEG / 2 - 1e-6
    # ours lies between the two truths, i.e. inside what the map allows
    lo, hi = sorted(s.truth["lumbar_lordosis_deg"] for s in pair)
    assert lo - 0.5 <= got <= hi + 0.5


def test_the_warning_states_at_least_that_much(pair):
    """The measurement says how far the voxels leave lordosis open, and its bound covers
    the ambiguity shown above (half of the 5° between the two phantoms)."""
    plain, _ = pair
    m = measure(plain.labels.array, plain.labels.affine)
    hits = [w for w in m["warnings"] if w.startswith("lumbar lordosis (L1–L5)")]
    assert len(hits) == 1
    stated = float(re.search(r"±(\d+\.\d)°", hits[0]).group(1))
    assert stated >= TURN_DEG / 2


@pytest.mark.parametrize("study", [0, 8, 10])
def test_no_error_over_2deg_goes_unannounced(study):
    """Studies of ``bench_measure.py`` whose small phantoms have errors over 2° (lordosis
    on 0 and 8, sacral slope on 8; pelvic incidence on 10 before the S1 plate's wall
    columns were recognised): every such error comes with a warning whose ± covers it."""
    row = evaluate(study, "small", overrides(study, 20))
    for short in ANGLES:
        if row[short] is not None and abs(row[short]) > 2.0:
            assert row["stated"][short] is not None and row["stated"][short] >= abs(row[short]), (short, row)
    if row["rot_max"] > 2.0:
        assert row["stated"]["rot_max"] is not None and row["stated"]["rot_max"] >= row["rot_max"], row
