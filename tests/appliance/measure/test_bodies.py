"""Splitting, ordering and naming of vertebral bodies on planted stacks of cylinders."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from appliance.labels import LEVELS
from appliance.measure.bodies import find_bodies, name_levels
from tests.appliance.measure.measure_shapes import body, grid_affine, lps_grid


def stack(n: int, gap_mm: float, bridge: int | None = None, shape=(90, 30, 30)):
    """``n`` 20 mm tall bodies (cranial first), ``gap_mm`` discs; optionally a 5 mm thick
    column of bone bridging disc ``bridge``."""
    aff = grid_affine((2.0, 2.0, 2.0), origin=(-30.0, -30.0, 0.0))
    pts = lps_grid(shape, aff)
    mask = np.zeros(shape, bool)
    centres = []
    for k in range(n):
        z = shape[0] * 2.0 - 15.0 - k * (20.0 + gap_mm)
        centres.append(z)
        mask |= body(pts, [0, 0, z], [0, 0, 1], [1, 0, 0], 18.0, 13.0, [0, 0, 1], [0, 0, 1], 20.0)
    if bridge is not None:
        z_gap = centres[bridge] - 10.0 - gap_mm / 2.0
        mask |= (np.abs(pts[..., 2] - z_gap) <= gap_mm / 2.0 + 1.0) & (np.hypot(pts[..., 0], pts[..., 1] + 11.0) < 2.5)
    return mask, aff, centres


def test_components_are_ordered_cranial_to_caudal():
    mask, aff, centres = stack(6, 6.0)
    bodies, warnings = find_bodies(mask, aff)
    assert [round(b.centroid_mm[2]) for b in bodies] == [round(c) for c in centres]
    assert warnings == []


def test_bodies_touching_through_a_bony_bridge_are_split():
    mask, aff, centres = stack(6, 6.0, bridge=2)
    assert ndimage.label(mask)[1] == 5  # the bridge really joins two bodies
    bodies, warnings = find_bodies(mask, aff)
    assert len(bodies) == 6
    assert np.allclose([b.centroid_mm[2] for b in bodies], centres, atol=1.5)
    assert any("split" in w for w in warnings)


def test_speckle_is_not_a_body():
    mask, aff, _ = stack(4, 6.0)
    rng = np.random.default_rng(0)
    mask = mask | (rng.random(mask.shape) < 0.002)
    bodies, _ = find_bodies(mask, aff)
    assert len(bodies) == 4


def test_names_count_up_from_the_lowest_level():
    names, warnings = name_levels(5, "L5")
    assert names == ["L1", "L2", "L3", "L4", "L5"]
    assert warnings == []
    names, warnings = name_levels(len(LEVELS), "L5", room_above_top_mm=10.0)
    assert names == list(LEVELS) and warnings == []


def test_an_extra_segment_is_flagged_and_left_unnamed():
    names, warnings = name_levels(len(LEVELS) + 1, "L5")
    assert names[0] == "unnamed_above_C2_1" and names[1] == "C2" and names[-1] == "L5"
    assert len(warnings) == 1 and "transitional" in warnings[0]


def test_a_missing_body_below_c2_is_flagged_when_the_view_reaches_higher():
    names, warnings = name_levels(len(LEVELS) - 1, "L5", room_above_top_mm=80.0)
    assert names[0] == "C3"
    assert len(warnings) == 1 and "C2" in warnings[0]
    assert name_levels(len(LEVELS) - 1, "L5", room_above_top_mm=5.0)[1] == []


def test_without_a_lowest_level_names_are_placeholders_with_a_warning():
    names, warnings = name_levels(3, None)
    assert names == ["V1", "V2", "V3"]
    assert "not named" in warnings[0]
    with pytest.raises(ValueError):
        name_levels(3, "S1")
