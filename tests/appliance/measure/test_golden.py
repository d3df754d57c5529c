"""Golden tests: tiny label maps whose angles are worked out by hand in the test.

Every expected value below is arithmetic on the planted plate tilts, centres and axes
(kyphosis = tilt of the lower inferior plate minus tilt of the upper superior plate,
pelvic incidence = pelvic tilt + sacral slope, Legaye et al. 1998, rotation = planted
body turn minus the planted turn of the hip axis), never a call into
``appliance.measure.definitions``, so a sign or convention slip there shows up here
even though the phantom (which uses the same definitions for its truth) would agree.

Frame: LPS mm, x patient left, y posterior, z superior; a plate of sagittal tilt β and
coronal tilt γ has the superior normal (tan γ, tan β, 1) normalised: β > 0 leans it
posteriorly, γ > 0 to the patient's left (the usual Cobb / kyphosis conventions).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from appliance.labels import Label
from appliance.measure.api import measure
from tests.appliance.measure.measure_shapes import lps_grid, unit

VOXEL_MM = 1.25
#: A convention slip costs tens of degrees; estimation on a 1.25 mm map stays under this
#: (the S1 plate centre comes from the part of the plate under L5, ~1.5 mm off its centre:
#: pelvic tilt +0.5°, incidence +0.76° on the lumbar map).
TOL_DEG = 1.0


def _normal(beta_deg: float, gamma_deg: float = 0.0) -> np.ndarray:
    return unit([math.tan(math.radians(gamma_deg)), math.tan(math.radians(beta_deg)), 1.0])


def _grid(lo_mm, hi_mm):
    """(shape zyx, affine) of a grid of VOXEL_MM covering [lo, hi] (x, y, z in mm)."""
    lo, hi = np.asarray(lo_mm, float), np.asarray(hi_mm, float)
    n_xyz = np.ceil((hi - lo) / VOXEL_MM).astype(int) + 1
    affine = np.eye(4)
    affine[:3, :3] = np.diag([VOXEL_MM] * 3)
    affine[:3, 3] = lo
    return tuple(int(v) for v in n_xyz[::-1]), affine


def _column(pts, centres_z, heights, half_w, half_d, sup, inf, turns_deg):
    """Wedged elliptic cylinders centred on the z axis at ``centres_z``: each body's axis
    bisects its superior and inferior plate normals (a wedge, as real bodies are), its
    left–right axis is turned by ``turns_deg`` about +z and then made perpendicular to
    that axis, and the plates cut it ``height / 2`` above and below the centre."""
    out = np.zeros(pts.shape[:3], bool)
    for z, h, s, i, t in zip(centres_z, heights, sup, inf, turns_deg):
        c, axis = np.array([0.0, 0.0, z]), unit(s + i)
        left = np.array([math.cos(math.radians(t)), math.sin(math.radians(t)), 0.0])
        left = unit(left - (left @ axis) * axis)
        post = np.cross(axis, left)
        d = pts - c
        inside = ((d @ left) / half_w) ** 2 + ((d @ post) / half_d) ** 2 <= 1.0
        top, bottom = c + 0.5 * h * axis, c - 0.5 * h * axis
        out |= inside & ((pts - top) @ s <= 0) & ((pts - bottom) @ i >= 0)
    return out


# ---------------------------------------------------------------- lumbar + pelvis map
#: Sagittal plate tilts, cranial to caudal (L1 sup, L1 inf, L2 sup, …, L5 inf): lordotic.
LUMBAR_BETA = np.linspace(12.0, -20.0, 10)
#: Axial turn of each body (deg about +z). The bodies lean by at most 18° sagittally,
#: which changes the turn seen in the axial plane by under 0.4° (θ·(1 − cos 18°)).
LUMBAR_TURN = (0.0, 5.0, 12.0, 5.0, 0.0)
S1_BETA = -35.0  # the S1 plate faces anteriorly: sacral slope 35°
HIP_CENTRE = np.array([0.0, -40.0, -95.0])  # mid-point of the head centres
HIP_TURN_DEG = 3.0  # the hip axis is turned too: rotation is relative to it
HEAD_RADIUS = 24.0
HEAD_HALF_SPAN = 78.0


def _heads() -> tuple[np.ndarray, np.ndarray]:
    t = math.radians(HIP_TURN_DEG)
    half = HEAD_HALF_SPAN * np.array([math.cos(t), math.sin(t), 0.0])
    return HIP_CENTRE + half, HIP_CENTRE - half  # left (+x), right


@functools.lru_cache(maxsize=1)
def lumbar_map() -> tuple[np.ndarray, np.ndarray]:
    shape, affine = _grid((-125.0, -80.0, -135.0), (125.0, 45.0, 190.0))
    pts = lps_grid(shape, affine)
    labels = np.zeros(shape, np.uint8)
    # L5 sits 9 mm above the S1 plate centre (the origin); bodies 26 mm, discs 9 mm
    centres = [22.0 + 35.0 * k for k in range(4, -1, -1)]
    sup = [_normal(b) for b in LUMBAR_BETA[0::2]]
    inf = [_normal(b) for b in LUMBAR_BETA[1::2]]
    labels[_column(pts, centres, [26.0] * 5, 22.0, 16.0, sup, inf, LUMBAR_TURN)] = Label.VERTEBRAL_BODIES
    # sacrum: below the S1 plate (through the origin), a wedge down to z = -70
    s1 = _normal(S1_BETA)
    sacrum = ((pts[..., 0] / 24.0) ** 2 + (pts[..., 1] / 18.0) ** 2 <= 1.0) \
        & (pts @ s1 <= 0) & (pts[..., 2] >= -70.0)
    # iliac bones: from the sacroiliac joints out and down around the acetabula
    x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
    ilium = (np.abs(x) >= 18.0) & (np.abs(x) <= 110.0) & (y >= -75.0) & (y <= 25.0) & (z >= -125.0) & (z <= -30.0)
    left, right = _heads()
    sockets = np.zeros(shape, bool)
    for c in (left, right):
        sockets |= np.linalg.norm(pts - c, axis=-1) <= HEAD_RADIUS + 3.0
    labels[(sacrum | ilium) & ~sockets] = Label.PELVIS
    for c in (left, right):
        labels[np.linalg.norm(pts - c, axis=-1) <= HEAD_RADIUS] = Label.FEMORAL_HEADS
    return labels, affine


@pytest.fixture(scope="module")
def lumbar() -> dict:
    labels, affine = lumbar_map()
    return measure(labels, affine)


def test_golden_lumbar_names_from_the_sacrum(lumbar):
    assert [v["name"] for v in lumbar["vertebrae"]] == ["L1", "L2", "L3", "L4", "L5"]


def test_golden_lordosis_by_hand(lumbar):
    # lordosis = tilt(L1 superior) − tilt(L5 inferior); L1–S1 uses the S1 plate instead
    assert lumbar["lumbar_lordosis_deg"] == pytest.approx(12.0 - -20.0, abs=TOL_DEG)
    assert lumbar["lumbar_lordosis_l1_s1_deg"] == pytest.approx(12.0 - S1_BETA, abs=TOL_DEG)


def test_golden_pelvic_parameters_by_hand(lumbar):
    # sacral slope: the plate's angle to the horizontal, anterior-facing positive
    assert lumbar["sacral_slope_deg"] == pytest.approx(35.0, abs=TOL_DEG)
    # pelvic tilt: the line from the hip-axis centre up to the S1 centre (the origin)
    # against the vertical; the hips are 40 mm anterior and 95 mm below
    pt = math.degrees(math.atan2(40.0, 95.0))
    # and the column is straight in the coronal plane
    assert lumbar["cobb"]["angle_deg"] == pytest.approx(0.0, abs=TOL_DEG)
    assert lumbar["pelvic_tilt_deg"] == pytest.approx(pt, abs=TOL_DEG)
    assert lumbar["pelvic_incidence_deg"] == pytest.approx(pt + 35.0, abs=TOL_DEG)


def test_golden_rotation_relative_to_the_hip_axis(lumbar):
    assert lumbar["rotation_reference"] == "femoral_head_axis"
    for name, turn in zip(("L1", "L2", "L3", "L4", "L5"), LUMBAR_TURN):
        assert lumbar["vertebral_rotation_deg"][name] == pytest.approx(turn - HIP_TURN_DEG, abs=TOL_DEG), name


def test_golden_lumbar_states_no_doubt_it_does_not_have(lumbar):
    assert not [w for w in lumbar["warnings"] if "voxels alone fix it only" in w]


# ---------------------------------------------------------------- thoracic map
THORACIC_BETA = np.linspace(-18.0, 22.0, 24)  # T1 sup … T12 inf: kyphotic
#: Coronal plate tilts: one curve, T1's superior plate 9° to the left, T12's inferior
#: plate 9° to the right, so the Cobb angle is 18° between T1 and T12.
THORACIC_GAMMA = np.linspace(9.0, -9.0, 24)


@functools.lru_cache(maxsize=1)
def thoracic_map() -> tuple[np.ndarray, np.ndarray]:
    shape, affine = _grid((-30.0, -25.0, -20.0), (30.0, 25.0, 300.0))
    pts = lps_grid(shape, affine)
    centres = [10.0 + 24.0 * k for k in range(11, -1, -1)]  # bodies 18 mm, discs 6 mm
    sup = [_normal(b, g) for b, g in zip(THORACIC_BETA[0::2], THORACIC_GAMMA[0::2])]
    inf = [_normal(b, g) for b, g in zip(THORACIC_BETA[1::2], THORACIC_GAMMA[1::2])]
    labels = np.zeros(shape, np.uint8)
    labels[_column(pts, centres, [18.0] * 12, 17.0, 13.0, sup, inf, [0.0] * 12)] = Label.VERTEBRAL_BODIES
    return labels, affine


def test_golden_kyphosis_and_cobb_by_hand():
    labels, affine = thoracic_map()
    m = measure(labels, affine, lowest_level="T12")
    assert [v["name"] for v in m["vertebrae"]] == [f"T{k}" for k in range(1, 13)]
    # kyphosis = tilt(T12 inferior) − tilt(T1 superior); T4–T12 from T4's superior plate
    assert m["thoracic_kyphosis_deg"] == pytest.approx(22.0 - -18.0, abs=TOL_DEG)
    t4_sup = THORACIC_BETA[6]
    assert m["thoracic_kyphosis_t4_t12_deg"] == pytest.approx(22.0 - t4_sup, abs=TOL_DEG)
    cobb = m["cobb"]
    assert cobb["angle_deg"] == pytest.approx(9.0 - -9.0, abs=TOL_DEG)
    assert (cobb["upper_end_vertebra"], cobb["lower_end_vertebra"]) == ("T1", "T12")
    # no pelvis in view: no pelvic parameters, and rotation is against the scan's axis
    assert m["sacral_slope_deg"] is None and m["pelvic_incidence_deg"] is None
    assert m["rotation_reference"] == "scan_left_right_axis"


def test_c2_is_never_the_upper_end_of_a_cobb_angle():
    """C2's body top is the dens's base, not an endplate (definitions.NO_SUPERIOR_ENDPLATE):
    a wild tilt there must not make a curve; C3's superior plate starts it instead."""
    from appliance.measure.definitions import coronal_curves

    names = ["C2", "C3", "C4", "C5"]
    cents = np.zeros((4, 3))
    sup, inf = [25.0, 4.0, 2.0, 0.0], [4.0, 2.0, 0.0, -6.0]
    (major,) = coronal_curves(names, sup, inf, cents)
    assert (major.upper_end_vertebra, major.lower_end_vertebra) == ("C3", "C5")
    assert major.angle_deg == pytest.approx(4.0 - -6.0)
    # C2 above a single body: no upper end, so no curve at all
    assert coronal_curves(["C2", "C3"], [25.0, 0.0], [4.0, 0.0], np.zeros((2, 3))) == []
