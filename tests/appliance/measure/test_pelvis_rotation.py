"""Femoral heads, S1 plate and body left–right axes on planted shapes."""

from __future__ import annotations

import numpy as np

from appliance.measure import definitions as d
from appliance.measure.bodies import find_bodies
from appliance.measure.endplates import fit_endplates
from appliance.measure.pelvis import assign_sides, femoral_heads, s1_plate
from appliance.measure.rotation import left_axis
from tests.appliance.measure.measure_shapes import angle_deg, body, grid_affine, lps_grid, tilt, unit

AFF = grid_affine((2.5, 2.5, 2.5), origin=(-100.0, -60.0, -80.0))


def test_heads_centre_radius_and_sides():
    pts = lps_grid((60, 50, 80), AFF)
    right, left = np.array([-60.0, 0.0, -20.0]), np.array([58.0, 3.0, -18.0])
    mask = (np.linalg.norm(pts - right, axis=-1) < 23.0) | (np.linalg.norm(pts - left, axis=-1) < 22.0)
    heads, warnings = femoral_heads(mask, AFF)
    heads = assign_sides(heads, midline_x_mm=0.0)
    by_side = {h.side: h for h in heads}
    assert warnings == [] and set(by_side) == {"left", "right"}
    assert np.linalg.norm(by_side["right"].center_mm - right) < 0.3
    assert np.linalg.norm(by_side["left"].center_mm - left) < 0.3
    assert abs(by_side["left"].radius_mm - 22.0) < 0.6


def test_a_lone_head_gets_its_side_from_the_midline():
    pts = lps_grid((60, 50, 80), AFF)
    heads, _ = femoral_heads(np.linalg.norm(pts - [-60.0, 0.0, -20.0], axis=-1) < 23.0, AFF)
    assert [h.side for h in assign_sides(heads, midline_x_mm=0.0)] == ["right"]


def test_s1_plate_under_the_lowest_body():
    """A tilted S1 block (SS 40°) 10 mm below an L5-like body, with wide 'alae' lower down."""
    pts = lps_grid((60, 50, 80), AFF)
    s1_n = tilt(0.0, -40.0)
    s1_c = np.array([0.0, 0.0, 0.0])
    l5_axis = tilt(0.0, -30.0)
    l5 = body(pts, s1_c + 26.0 * l5_axis, l5_axis, [1, 0, 0], 23.0, 17.0, tilt(0, -25), tilt(0, -34), 27.0)
    s1 = body(pts, s1_c - 14.0 * s1_n, s1_n, [1, 0, 0], 25.0, 17.0, s1_n, s1_n, 28.0)
    ala = (np.abs(pts[..., 0]) > 30) & (np.abs(pts[..., 0]) < 90) & (pts[..., 2] < -20) & (pts[..., 2] > -45) \
        & (np.abs(pts[..., 1]) < 25)
    [b], _ = find_bodies(l5, AFF)
    plates = fit_endplates(b, AFF, l5_axis)
    plate = s1_plate(s1 | ala, AFF, (0, 0, 0), b, plates)
    assert plate is not None
    assert angle_deg(plate.normal, s1_n) < 2.0  # 2.5 mm voxels
    assert abs(d.sacral_slope_deg(plate.normal) - 40.0) < 2.0
    assert abs((plate.center_mm - s1_c) @ s1_n) < 1.0  # on the plate
    assert np.linalg.norm(plate.center_mm - s1_c) < 3.0


def test_body_left_axis_follows_the_planted_rotation():
    pts = lps_grid((30, 50, 80), AFF)
    axis = tilt(8.0, -6.0)
    x0 = unit(np.array([1.0, 0.0, 0.0]) - axis[0] * axis)
    for rot_deg in (-17.0, 0.0, 12.0):
        phi = np.radians(rot_deg)
        left = np.cos(phi) * x0 + np.sin(phi) * np.cross(axis, x0)
        mask = body(pts, [0, 0, -45.0], axis, left, 22.0, 16.0, axis, axis, 25.0)
        [b], _ = find_bodies(mask, AFF)
        got, ratio = left_axis(b, AFF, axis)
        assert ratio > 1.2
        assert abs(d.axial_rotation_deg(got, [1, 0, 0]) - d.axial_rotation_deg(left, [1, 0, 0])) < 1.5


def test_a_round_cross_section_has_no_left_axis():
    pts = lps_grid((30, 50, 80), AFF)
    mask = body(pts, [0, 0, -45.0], [0, 0, 1], [1, 0, 0], 18.0, 18.0, [0, 0, 1], [0, 0, 1], 20.0)
    [b], _ = find_bodies(mask, AFF)
    got, ratio = left_axis(b, AFF, np.array([0.0, 0.0, 1.0]))
    assert got is None and ratio < 1.08
