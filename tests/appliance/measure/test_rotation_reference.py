"""Vertebral rotation as JoVE 67781 Figure 3D defines it: relative to the pelvis, with
no value where the axial outline does not fix the orientation (issue 18, item 4)."""

from __future__ import annotations

import numpy as np

from appliance.labels import Label
from appliance.measure.api import measure
from appliance.measure.bodies import Body
from appliance.measure.endplates import fit_endplates
from appliance.measure.geometry import voxel_points_mm
from appliance.measure.rotation import MAX_SECTION_SPREAD_DEG, left_axis, pelvis_left_axis, section_spread_deg
from tests.appliance.measure.measure_shapes import body, grid_affine, lps_grid

AFF = grid_affine((1.5, 1.5, 1.5), origin=(-60.0, -60.0, -60.0))
SHAPE = (80, 80, 80)


def _body(mask: np.ndarray) -> Body:
    pts = voxel_points_mm(mask, AFF)
    return Body(mask, (0, 0, 0), pts.mean(axis=0), float(len(pts)) * 1.5 ** 3)


def _rot(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([np.cos(t), np.sin(t), 0.0])


def test_pelvis_axis_is_its_transverse_axis():
    pts = lps_grid(SHAPE, AFF)
    d = pts - [0.0, 0.0, 0.0]
    for turn in (0.0, 12.0, -25.0):
        u, v = d @ _rot(turn), d @ _rot(turn + 90.0)
        pelvis = ((u / 55.0) ** 2 + (v / 25.0) ** 2 + (d[..., 2] / 30.0) ** 2) <= 1.0
        axis = pelvis_left_axis(pelvis, AFF)
        got = np.degrees(np.arctan2(axis[1], axis[0]))
        assert axis[0] > 0 and abs(got - turn) < 0.5, (turn, got)
    ball = np.linalg.norm(d, axis=-1) < 30.0
    assert pelvis_left_axis(ball, AFF) is None  # a round outline has no transverse axis


def test_a_regular_body_has_sections_that_agree():
    pts = lps_grid(SHAPE, AFF)
    mask = body(pts, [0, 0, 0], [0, 0, 1], _rot(8.0), 22.0, 15.0, [0, 0, 1], [0, 0, 1], 24.0)
    b = _body(mask)
    plates = fit_endplates(b, AFF, np.array([0.0, 0.0, 1.0]))
    axis, _ = left_axis(b, AFF, plates.axis)
    spread = section_spread_deg(b, AFF, plates.superior, plates.inferior, axis)
    assert spread is not None and spread < 1.0


def test_a_twisted_shape_has_no_fixed_orientation():
    """Upper half turned 40° against the lower half (two bodies fused at an angle, or a
    mask that is not a body): the sections disagree, so the spread exceeds the limit."""
    pts = lps_grid(SHAPE, AFF)
    low = body(pts, [0, 0, -6.0], [0, 0, 1], _rot(-20.0), 22.0, 13.0, [0, 0, 1], [0, 0, 1], 12.0)
    high = body(pts, [0, 0, 6.0], [0, 0, 1], _rot(20.0), 22.0, 13.0, [0, 0, 1], [0, 0, 1], 12.0)
    b = _body(low | high)
    plates = fit_endplates(b, AFF, np.array([0.0, 0.0, 1.0]))
    axis, _ = left_axis(b, AFF, plates.axis)
    assert section_spread_deg(b, AFF, plates.superior, plates.inferior, axis) > MAX_SECTION_SPREAD_DEG


def _column(with_heads: bool, with_pelvis: bool, pelvis_turn_deg: float = 0.0):
    """Five bodies, each turned 5° (so relative to a reference at 0° they read 5°), over
    a pelvis turned ``pelvis_turn_deg`` and two femoral heads on a level axis."""
    aff = grid_affine((2.0, 2.0, 2.0), origin=(-100.0, -70.0, -200.0))
    shape = (150, 70, 100)
    pts = lps_grid(shape, aff)
    labels = np.zeros(shape, np.uint8)
    for k in range(5):
        z = 60.0 - 30.0 * k
        labels[body(pts, [0, 0, z], [0, 0, 1], _rot(5.0), 24.0, 16.0, [0, 0, 1], [0, 0, 1], 22.0)] = Label.VERTEBRAL_BODIES
    if with_pelvis:
        d = pts - [0.0, 0.0, -130.0]
        u, v = d @ _rot(pelvis_turn_deg), d @ _rot(pelvis_turn_deg + 90.0)
        labels[((u / 80.0) ** 2 + (v / 30.0) ** 2 + (d[..., 2] / 25.0) ** 2) <= 1.0] = Label.PELVIS
    if with_heads:
        for x in (-55.0, 55.0):
            labels[np.linalg.norm(pts - [x, -10.0, -170.0], axis=-1) < 20.0] = Label.FEMORAL_HEADS
    return labels, aff


def test_rotation_reference_falls_back_from_hips_to_pelvis_to_scan():
    m = measure(*_column(with_heads=True, with_pelvis=True))
    assert m["rotation_reference"] == "femoral_head_axis"
    measured = [v for v in m["vertebral_rotation_deg"].values() if v is not None]
    assert len(measured) == 5 and all(abs(v - 5.0) < 1.0 for v in measured), m["vertebral_rotation_deg"]

    m = measure(*_column(with_heads=False, with_pelvis=True, pelvis_turn_deg=-3.0))
    assert m["rotation_reference"] == "pelvis_transverse_axis"
    measured = [v for v in m["vertebral_rotation_deg"].values() if v is not None]
    assert len(measured) == 5 and all(abs(v - 8.0) < 1.0 for v in measured), m["vertebral_rotation_deg"]
    assert any("relative to the pelvis's transverse axis" in w for w in m["warnings"])

    m = measure(*_column(with_heads=False, with_pelvis=False), lowest_level="L5")
    assert m["rotation_reference"] == "scan_left_right_axis"
    measured = [v for v in m["vertebral_rotation_deg"].values() if v is not None]
    assert len(measured) == 5 and all(abs(v - 5.0) < 1.0 for v in measured)
    assert any("scan's left–right axis" in w for w in m["warnings"])


def test_c2_gets_no_rotation(measured):
    _, m = measured(1)
    assert m["vertebral_rotation_deg"]["C2"] is None
    assert any("rotation not measured for C2" in w for w in m["warnings"])

