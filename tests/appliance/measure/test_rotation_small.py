"""Vertebral rotation from small (2.5 mm) cross-sections: the ellipse range test and the
smoothest profile within the ranges (:mod:`appliance.measure.rotation`)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from appliance.measure.api import measure
from appliance.measure.rotation import AMBIGUOUS_DEG, smooth_profile
from appliance.phantom import generate_study
from tests.benchmarks.bench_measure import overrides


@functools.lru_cache(maxsize=4)
def _bench_study(i: int):
    """Study i of the 20-study small benchmark (same pinned values)."""
    return generate_study(i, "small", **overrides(i, 20))


@pytest.mark.parametrize("i", [2, 7])
def test_small_rotation_within_two_degrees(i):
    # second moments alone: 2.9° (T6, study 2) and 3.6° (T8, study 7)
    study = _bench_study(i)
    m = measure(study.labels.array, study.labels.affine)
    errors = {n: m["vertebral_rotation_deg"][n] - v for n, v in study.truth["vertebral_rotation_deg"].items()
              if n[0] in "TL"}
    assert max(abs(e) for e in errors.values()) <= 2.0, errors


def test_tight_ranges_give_their_centres():
    c = np.array([1.0, 5.0, -3.0, 0.5])
    assert np.allclose(smooth_profile(c, np.full(4, 0.4 * AMBIGUOUS_DEG)), c)


def test_a_wide_range_takes_the_neighbours_value_inside_it():
    c = np.array([2.0, 2.0, 9.0, 2.0, 2.0])
    half = np.array([0.0, 0.0, 10.0, 0.0, 0.0])
    got = smooth_profile(c, half)
    assert np.allclose(got[[0, 1, 3, 4]], 2.0) and abs(got[2] - 2.0) < 0.05
    half[2] = 4.0  # the range [5, 13] excludes 2: the value stays at its edge (room = half − 0.5)
    got = smooth_profile(c, half)
    assert abs(got[2] - (9.0 - 4.0 + 0.5 * AMBIGUOUS_DEG)) < 0.05
