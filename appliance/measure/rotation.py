"""Left–right axis of a vertebral body, for axial rotation.

Definition used: the body's left–right axis is the major principal axis of its voxels'
second moments in the plane perpendicular to the body axis (the mean endplate normal),
pointing to the patient's left (+x). A body's cross-section is mirror-symmetric about
its mid-sagittal plane and wider than deep, so that axis is the left–right one. When the
cross-section is nearly circular (principal-axis ratio below ``MIN_AXIS_RATIO``) the
axis is undefined and None is returned.

Small cross-sections (fewer than ``SMALL_SECTION_VOX`` voxels, e.g. thoracic bodies at
2.5 mm): the second moments of a 6×9-voxel section are off by up to 7°, because the
voxel staircase is not symmetric. For those bodies :func:`angle_range` gives the range of
axis angles the voxels allow — every angle at which one ellipse with that axis has all
the body's boundary voxel centres of its mid part (between the endplates) inside and
their outside neighbours outside, leaving out the posterior sector where the posterior
wall is concave; holes filled, and when no ellipse fits, the fewest points that
must give way for the second-moment axis dropped (speckle) — and :func:`smooth_profile` picks, within each body's range, the
smoothest rotation profile along the spine (neighbouring vertebrae rotate alike). The
voxels always decide when they can: a range narrower than ``AMBIGUOUS_DEG`` gives its
centre, and large cross-sections keep their second-moment value.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.optimize import linprog, lsq_linear

from appliance.measure.bodies import Body
from appliance.measure.geometry import plane_basis, spacing_mm, unit, voxel_points_mm, zyx_to_lps

#: Smallest width/depth ratio (square root of the eigenvalue ratio) trusted for an axis.
MIN_AXIS_RATIO = 1.08
#: Cross-sections of fewer voxels than this get an angle range (see the module docstring).
SMALL_SECTION_VOX = 400
#: Half-angle (in the section's normalised ellipse coordinates) of the posterior sector
#: left out of the ellipse test: the concave posterior wall is not elliptic.
POSTERIOR_SECTOR_DEG = 35.0
#: Voxels closer than this (in voxels) to an endplate are left out of the ellipse test.
ENDPLATE_MARGIN_VOX = 0.75
#: Ranges wider than this (degrees) leave the value to the neighbours within the range.
AMBIGUOUS_DEG = 1.0
#: Share of the test's points allowed to give way (speckle) when no ellipse holds them all.
OUTLIER_SHARE = 0.05
_STEP = np.radians(1.0)
_MAX_STEPS = 30
#: How far (steps) from the second-moment axis an ellipse is looked for.
_SEARCH_STEPS = 15


def left_axis(body: Body, affine: np.ndarray, body_axis: np.ndarray) -> tuple[np.ndarray | None, float]:
    """(unit left–right axis or None, width/depth ratio of the cross-section)."""
    pts = voxel_points_mm(body.mask, affine, body.offset_zyx)
    e1, e2 = plane_basis(body_axis)
    q = (pts - pts.mean(axis=0)) @ np.c_[e1, e2]
    evals, evecs = np.linalg.eigh(np.cov(q.T))
    ratio = float(np.sqrt(evals[1] / max(evals[0], 1e-12)))
    if ratio < MIN_AXIS_RATIO:
        return None, ratio
    major = evecs[0, 1] * e1 + evecs[1, 1] * e2
    major = unit(major)
    return (major if major[0] >= 0 else -major), ratio


def section_voxels(body: Body, body_axis: np.ndarray, affine: np.ndarray) -> float:
    """Mean number of voxels in a cross-section: voxel count over the body's extent in
    voxel layers along the index axis closest to ``body_axis``."""
    m_zyx = affine[:3, :3][:, ::-1]
    ax = int(np.argmax(np.abs(unit(body_axis) @ (m_zyx / np.linalg.norm(m_zyx, axis=0)))))
    layers = int(np.count_nonzero(body.mask.any(axis=tuple(a for a in range(3) if a != ax))))
    return float(body.mask.sum()) / max(layers, 1)


def _ellipse_fits(qi: np.ndarray, qo: np.ndarray, theta: float, outliers: bool = False):
    """Is there an ellipse with axes along ``theta`` holding every ``qi`` and no ``qo``?
    (Linear in the conic's coefficients: a·u² + b·v² + c·u + d·v + e ≤ 0 inside.)
    With ``outliers``: the mask of the fewest points (``qi`` then ``qo``) that must go."""
    cs, sn = np.cos(theta), np.sin(theta)

    def feat(q):
        u, v = q @ [cs, sn], q @ [-sn, cs]
        return np.c_[u * u, v * v, u, v, np.ones(len(u))]

    g = np.r_[feat(qi), -feat(qo)]
    if outliers:  # the fewest constraints that must give way (L1), then: do the rest fit?
        k = len(g)
        a_ub = sparse.hstack([sparse.csr_matrix(g), -sparse.identity(k, format="csr")], format="csr")
        res = linprog(np.r_[np.zeros(5), np.ones(k)], A_ub=a_ub, b_ub=np.full(k, -1e-6),
                      A_eq=np.r_[[1.0, 1.0, 0, 0, 0], np.zeros(k)][None], b_eq=[1.0],
                      bounds=[(0, None), (0, None)] + [(None, None)] * 3 + [(0, None)] * k, method="highs")
        return res.x[5:] > 1e-7 if res.success else np.ones(k, bool)
    res = linprog(np.zeros(5), A_ub=g, b_ub=np.full(len(g), -1e-6), A_eq=[[1.0, 1.0, 0, 0, 0]], b_eq=[1.0],
                  bounds=[(0, None), (0, None), (None, None), (None, None), (None, None)], method="highs")
    return res.status == 0


def angle_range(body: Body, affine: np.ndarray, superior, inferior, left: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The two extreme left–right axes (unit vectors) the voxels allow for ``body``
    (see the module docstring), searched from ``left``; None when no ellipse fits within
    15° of ``left`` (then the second moments stand). ``superior`` / ``inferior`` are the
    endplate planes (``center_mm``, ``normal``)."""
    axis = unit(superior.normal + inferior.normal)
    m = ndimage.binary_fill_holes(np.pad(body.mask, 1))
    pts = zyx_to_lps(np.argwhere(np.ones(m.shape, bool)), affine, np.asarray(body.offset_zyx) - 1)
    gap = ENDPLATE_MARGIN_VOX * float(spacing_mm(affine).max())
    core = ((pts - superior.center_mm) @ superior.normal < -gap) & ((pts - inferior.center_mm) @ inferior.normal > gap)
    rim_in = (m & ~ndimage.binary_erosion(m)).ravel() & core
    rim_out = (~m & ndimage.binary_dilation(m)).ravel() & core
    if rim_in.sum() < 12:
        return None
    e1, e2 = plane_basis(axis)
    centre = pts[rim_in].mean(axis=0)
    qi, qo = ((pts[rim_in] - centre) @ np.c_[e1, e2]), ((pts[rim_out] - centre) @ np.c_[e1, e2])
    scale = np.sqrt((qi ** 2).sum(axis=1).mean())
    qi, qo = qi / scale, qo / scale
    theta0 = float(np.arctan2(left @ e2, left @ e1))
    cs, sn = np.cos(theta0), np.sin(theta0)
    posterior = 1.0 if (-sn * e1 + cs * e2)[1] > 0 else -1.0  # LPS: +y is posterior
    u_i, v_i = qi @ [cs, sn], qi @ [-sn, cs]
    half_w, half_d = np.abs(u_i).max(), np.abs(v_i).max()

    def lateral_or_anterior(q):
        u, v = q @ [cs, sn], q @ [-sn, cs]
        return np.degrees(np.arctan2(np.abs(u) / half_w, posterior * v / half_d)) > POSTERIOR_SECTOR_DEG

    qi, qo = qi[lateral_or_anterior(qi)], qo[lateral_or_anterior(qo)]
    start = next((theta0 + s * k * _STEP for k in range(_SEARCH_STEPS + 1) for s in (1.0, -1.0)
                  if _ellipse_fits(qi, qo, theta0 + s * k * _STEP)), None)
    if start is None:  # speckle: drop the fewest points no ellipse along the moments' axis holds
        bad = _ellipse_fits(qi, qo, theta0, outliers=True)
        if bad.mean() > OUTLIER_SHARE:
            return None
        qi, qo, start = qi[~bad[:len(qi)]], qo[~bad[len(qi):]], theta0
    ends = []
    for sign in (1.0, -1.0):
        inside, k = start, 0
        while k < _MAX_STEPS and _ellipse_fits(qi, qo, inside + sign * _STEP):
            inside, k = inside + sign * _STEP, k + 1
        outside = inside + sign * _STEP
        for _ in range(4):
            mid = 0.5 * (inside + outside)
            inside, outside = (mid, outside) if _ellipse_fits(qi, qo, mid) else (inside, mid)
        ends.append(np.cos(inside) * e1 + np.sin(inside) * e2)
    return ends[0], ends[1]


def smooth_profile(centre_deg: np.ndarray, half_deg: np.ndarray) -> np.ndarray:
    """Rotations (cranial first) within ``centre ± max(half − AMBIGUOUS_DEG / 2, 0)``
    that make the profile along the spine smoothest (least squares on first and second
    differences, ties broken toward the centres)."""
    c = np.asarray(centre_deg, float)
    room = np.maximum(np.asarray(half_deg, float) - 0.5 * AMBIGUOUS_DEG, 0.0) + 1e-9
    n = len(c)
    if n < 3 or not np.any(room > 1e-6):
        return c
    d1 = np.diff(np.eye(n), axis=0)
    d2 = np.diff(np.eye(n), 2, axis=0)
    a = np.r_[d1, d2, 1e-3 * np.eye(n)]
    b = np.r_[np.zeros(len(d1) + len(d2)), 1e-3 * c]
    return lsq_linear(a, b, bounds=(c - room, c + room)).x


#: Bodies whose single cross-sections disagree on the left–right axis by more than this
#: (degrees, half-range) have no axial outline that fixes their orientation: no value.
MAX_SECTION_SPREAD_DEG = 10.0
#: Share of the sections, by deviation from the whole body's axis, that the spread covers
#: (a section grazing an endplate or a speckle is not the outline).
SECTION_SPREAD_QUANTILE = 0.8
#: Fewest voxels a cross-section needs to give an axis of its own ...
MIN_SECTION_VOX = 40
#: ... and for a small section whose voxels no ellipse holds (the axis then comes from
#: second moments, off by up to ``SMALL_MOMENTS_DEG`` on a 6 × 9-voxel section).
MIN_SMALL_SECTION_VOX = 12
SMALL_MOMENTS_DEG = 7.0


def section_spread_deg(body: Body, affine: np.ndarray, superior, inferior, left: np.ndarray,
                       min_voxels: int = MIN_SECTION_VOX) -> float | None:
    """Half-range (degrees) of the left–right axes of the body's single cross-sections,
    one voxel layer thick, between its endplates, around ``left`` (the whole body's axis).

    A vertebral body's outline is the same ellipse-like shape from endplate to endplate,
    so every section gives about the same axis; a shape whose sections disagree (C2 with
    its dens, two bodies fused at an angle, a mask that is not a body) has no axial outline
    that fixes its orientation. The spread covers ``SECTION_SPREAD_QUANTILE`` of the
    sections that are elongated enough to have an axis (``MIN_AXIS_RATIO``); sections too
    round to have one count as disagreeing by 90°. None when fewer than three sections
    hold ``min_voxels`` voxels (then the body is too thin to tell)."""
    axis = unit(np.asarray(superior.normal, float) + np.asarray(inferior.normal, float))
    pts = voxel_points_mm(body.mask, affine, body.offset_zyx)
    layer = float(spacing_mm(affine).max())
    h = (pts - superior.center_mm) @ axis
    top, bottom = 0.0, float((np.asarray(inferior.center_mm) - superior.center_mm) @ axis)
    core = (h < top - 0.75 * layer) & (h > bottom + 0.75 * layer)
    if core.sum() < 3 * min_voxels:
        return None
    e1, e2 = plane_basis(axis)
    q = pts[core] @ np.c_[e1, e2]
    k = np.floor((h[core] - bottom) / layer).astype(int)
    ref = float(np.arctan2(left @ e2, left @ e1))
    dev = []
    for j in np.unique(k):
        s = q[k == j]
        if len(s) < min_voxels:
            continue
        evals, evecs = np.linalg.eigh(np.cov(s.T))
        if np.sqrt(evals[1] / max(evals[0], 1e-12)) < MIN_AXIS_RATIO:
            dev.append(90.0)
            continue
        theta = float(np.arctan2(evecs[1, 1], evecs[0, 1]))
        dev.append(abs((np.degrees(theta - ref) + 90.0) % 180.0 - 90.0))
    if len(dev) < 3:
        return None
    return float(np.quantile(dev, SECTION_SPREAD_QUANTILE))


def pelvis_left_axis(pelvis_mask: np.ndarray, affine: np.ndarray, offset_zyx=(0, 0, 0)) -> np.ndarray | None:
    """The pelvis's left–right axis (unit, +x): the major principal axis of its voxels in
    the axial (x–y) plane. The pelvis is mirror-symmetric and about twice as wide as it is
    deep, so that axis is its transverse axis — the reference for vertebral rotation when
    the femoral heads are not both in view (JoVE 67781, Figure 3D: rotation relative to the
    pelvis). None when the axial outline is too round (ratio below 1.3) to tell."""
    pts = voxel_points_mm(pelvis_mask, affine, offset_zyx)[:, :2]
    if len(pts) < 100:
        return None
    evals, evecs = np.linalg.eigh(np.cov((pts - pts.mean(axis=0)).T))
    if np.sqrt(evals[1] / max(evals[0], 1e-12)) < 1.3:
        return None
    major = np.r_[evecs[:, 1], 0.0]
    return major if major[0] >= 0 else -major
