"""Organ-like blobs added to a label map, as real CT masks of the default model show them
(issue 18): kidneys labelled pelvis, the heart labelled femoral head, the aorta labelled
vertebral body. Positions are relative to named bodies of a phantom's truth
(``study.truth["vertebrae"]``: centroid, half width, half depth).

Every helper returns a new label map and paints only background voxels (it never
overwrites bone), so the clean map's structures are untouched.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from appliance.labels import LEVELS, Label
from appliance.measure.geometry import spacing_mm, zyx_to_lps

#: Kidney semi-axes (lateral, anteroposterior, craniocaudal) in mm: about 140 cm³ each.
KIDNEY_SEMI_AXES_MM = (28.0, 22.0, 55.0)
#: Gap between the body's lateral edge and the kidney's medial edge.
KIDNEY_GAP_MM = 10.0
HEART_RADIUS_MM = 45.0  # a 9 cm sphere
HEART_GAP_MM = 10.0
AORTA_RADIUS_MM = 12.5  # a 25 mm tube
AORTA_GAP_MM = 5.0


def _bodies(truth: dict) -> dict[str, dict]:
    return {v["name"]: v for v in truth["vertebrae"]}


def _box_points(shape, affine, lo_mm, hi_mm):
    """Index slices of the box [lo_mm, hi_mm] (LPS) in the map, and the LPS mm of its voxels."""
    inv = np.linalg.inv(affine)
    corners = np.array([[x, y, z, 1.0] for x in (lo_mm[0], hi_mm[0]) for y in (lo_mm[1], hi_mm[1])
                        for z in (lo_mm[2], hi_mm[2])]) @ inv.T
    zyx = corners[:, 2::-1]
    lo = np.maximum(np.floor(zyx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(zyx.max(axis=0)).astype(int) + 1, np.asarray(shape))
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    grid = np.indices(tuple(int(b - a) for a, b in zip(lo, hi))).reshape(3, -1).T
    return sl, zyx_to_lps(grid, affine, lo)


def _paint(labels: np.ndarray, sl, inside: np.ndarray, value: int) -> np.ndarray:
    out = labels.copy()
    region = out[sl]
    region[inside.reshape(region.shape) & (region == 0)] = value
    return out


def add_kidneys(labels: np.ndarray, affine: np.ndarray, truth: dict, level: str = "L1",
                value: int = Label.PELVIS) -> np.ndarray:
    """Two kidney-sized ellipsoids beside ``level``, labelled ``value`` (pelvis)."""
    b = _bodies(truth)[level]
    c = np.asarray(b["centroid_mm"], float)
    semi = np.asarray(KIDNEY_SEMI_AXES_MM)
    out = labels
    for side in (-1.0, 1.0):
        centre = c + [side * (b["half_width_mm"] + KIDNEY_GAP_MM + semi[0]), 10.0, 0.0]
        sl, pts = _box_points(labels.shape, affine, centre - semi, centre + semi)
        out = _paint(out, sl, (((pts - centre) / semi) ** 2).sum(axis=1) <= 1.0, value)
    return out


def add_sphere(labels: np.ndarray, affine: np.ndarray, truth: dict, level: str = "T8",
               radius_mm: float = HEART_RADIUS_MM, value: int = Label.FEMORAL_HEADS) -> np.ndarray:
    """A sphere in front of ``level`` (anterior = −y in LPS), labelled ``value``."""
    b = _bodies(truth)[level]
    centre = np.asarray(b["centroid_mm"], float) - [0.0, b["half_depth_mm"] + HEART_GAP_MM + radius_mm, 0.0]
    sl, pts = _box_points(labels.shape, affine, centre - radius_mm, centre + radius_mm)
    return _paint(labels, sl, np.linalg.norm(pts - centre, axis=1) <= radius_mm, value)


def add_tube(labels: np.ndarray, affine: np.ndarray, truth: dict, top: str = "T6", bottom: str = "L3",
             radius_mm: float = AORTA_RADIUS_MM, gap_mm: float | None = AORTA_GAP_MM,
             value: int = Label.VERTEBRAL_BODIES) -> np.ndarray:
    """An aorta-like tube along the front of ``top``…``bottom``, labelled ``value``.

    ``gap_mm``: the tube is kept that far from every vertebral-body voxel (a separate
    component); ``None`` lets it touch the bodies (its axis 2 mm closer than their
    front, so the two merge into one component of the label)."""
    bodies = _bodies(truth)
    names = LEVELS[LEVELS.index(top): LEVELS.index(bottom) + 1]
    offset = (lambda v: v["half_depth_mm"] + gap_mm + radius_mm + 2.0) if gap_mm is not None else \
        (lambda v: v["half_depth_mm"] + radius_mm - 2.0)
    axis = np.array([np.asarray(bodies[n]["centroid_mm"], float) - [0.0, offset(bodies[n]), 0.0] for n in names])
    # extend half a body step beyond both end bodies, then sample the axis densely
    axis = np.vstack([axis[0] + 0.5 * (axis[0] - axis[1]), axis, axis[-1] + 0.5 * (axis[-1] - axis[-2])])
    t = np.linspace(0.0, len(axis) - 1.0, 40 * len(axis))
    dense = np.array([np.interp(t, np.arange(len(axis)), axis[:, k]) for k in range(3)]).T
    sl, pts = _box_points(labels.shape, affine, dense.min(axis=0) - radius_mm, dense.max(axis=0) + radius_mm)
    dist, _ = cKDTree(dense).query(pts)
    inside = dist <= radius_mm
    if gap_mm is not None:
        bone = labels[sl] == Label.VERTEBRAL_BODIES
        to_bone = ndimage.distance_transform_edt(~bone, sampling=spacing_mm(affine)).ravel()
        inside &= to_bone > gap_mm
    return _paint(labels, sl, inside, value)


def add_issue_blobs(labels: np.ndarray, affine: np.ndarray, truth: dict, touching: bool = False) -> np.ndarray:
    """All of issue 18's blobs: kidneys beside L1 (pelvis), a 9 cm sphere in front of T8
    (femoral head) and a 25 mm tube along the front of T6–L3 (vertebral body), ~5 mm
    from the bodies, or touching them with ``touching``."""
    out = add_kidneys(labels, affine, truth)
    out = add_sphere(out, affine, truth)
    return add_tube(out, affine, truth, gap_mm=None if touching else AORTA_GAP_MM)


def add_ellipsoid(labels: np.ndarray, affine: np.ndarray, centre_mm, semi_axes_mm, value: int) -> np.ndarray:
    """An axis-aligned ellipsoid (LPS centre and semi-axes, mm) labelled ``value``, on
    background voxels only: for maps without a phantom truth (the real masks)."""
    centre, semi = np.asarray(centre_mm, float), np.asarray(semi_axes_mm, float)
    sl, pts = _box_points(labels.shape, affine, centre - semi, centre + semi)
    return _paint(labels, sl, (((pts - centre) / semi) ** 2).sum(axis=1) <= 1.0, value)


def add_bridge(labels: np.ndarray, affine: np.ndarray, a_mm, b_mm, radius_mm: float,
               value: int = Label.VERTEBRAL_BODIES) -> np.ndarray:
    """A cylinder of ``radius_mm`` from ``a_mm`` to ``b_mm`` (LPS), labelled ``value`` on
    background voxels: fills the disc between two bodies so that they merge."""
    a, b = np.asarray(a_mm, float), np.asarray(b_mm, float)
    sl, pts = _box_points(labels.shape, affine, np.minimum(a, b) - radius_mm, np.maximum(a, b) + radius_mm)
    ab = b - a
    t = np.clip((pts - a) @ ab / (ab @ ab), 0.0, 1.0)
    inside = np.linalg.norm(pts - (a + t[:, None] * ab), axis=1) <= radius_mm
    return _paint(labels, sl, inside, value)
