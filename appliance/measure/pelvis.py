"""Femoral heads, hip axis and the S1 plate from the pelvis and femoral-head labels.

Definitions used:
- Femoral head: each substantial connected component of the femoral-head label; centre
  and radius by a robust least-squares sphere fit to its sub-voxel surface. The head
  with the larger x is the patient's left (LPS).
- Hip axis: the line through both head centres; its centre is their midpoint, its
  direction points from the right to the left head.
- S1 plate: the cranial face of the pelvis label directly below the lowest vertebral
  body, i.e. inside a cylinder around that body's axis (radius 1.15 × the body's largest
  half-width) down to 45 mm below its inferior endplate: the topmost cranially facing
  surface there (within 50° of the body's inferior-endplate normal, then within 30° of
  the first fit), fitted as a robust plane, then refined on the voxel columns
  (:func:`planefit.refine_plane`, centre of the feasible slope box, no tilt prior: the
  L5–S1 wedge varies too much; columns the search cylinder cut give lower bounds only,
  and when the columns contradict each other only the inner 80 % bound it from above).
  Centre = that plane's point at the patch centroid.
- The S1 plate lies behind the front of the lowest body (:func:`s1_behind_front`): S1's
  endplate sits under L5's, at most shifted backwards by a retrolisthesis of L5
  (grade 1: up to a quarter of the body's depth; anterolisthesis moves S1 further
  back), so its centre lies at least ``S1_MIN_BEHIND_FRONT`` × the body's depth behind
  the body's anterior edge, along the body's anteroposterior axis (LPS +y made
  perpendicular to the inferior-endplate normal). A plate in front of that is an organ
  below the column (the real chest CT's heart: 0.08 of the depth), not a sacrum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from appliance.measure.bodies import Body
from appliance.measure.definitions import superior
from appliance.measure.endplates import Endplates, Plane, refine
from appliance.measure.geometry import (
    crop_slices,
    fit_plane,
    fit_sphere,
    plane_basis,
    spacing_mm,
    surface,
    voxel_points_mm,
    voxel_volume_mm3,
    zyx_to_lps,
)

#: Components of the femoral-head label smaller than this are ignored.
MIN_HEAD_MM3 = 1000.0
S1_SEARCH_BELOW_MM = 45.0
S1_CYLINDER_FACTOR = 1.15
#: When the S1 plate's voxel columns contradict each other (the sacrum's anterior wall is
#: as steep as the plate, so rim columns can end at the wall), only columns within this
#: share of the plate's radius bound it from both sides.
S1_CORE_FRACTION = 0.8
#: The S1 plate's centre lies at least this share of the lowest body's depth behind its
#: anterior edge (retrolisthesis grade 1 at most: half the depth less a quarter).
S1_MIN_BEHIND_FRONT = 0.25


@dataclass(frozen=True)
class FemoralHead:
    side: str  # "left" (+x) or "right"
    center_mm: np.ndarray
    radius_mm: float


def femoral_heads(head_mask: np.ndarray, affine: np.ndarray, offset_zyx=(0, 0, 0)) -> tuple[list[FemoralHead], list[str]]:
    """Up to two heads (sphere fits), sides not yet assigned (``side`` = "")."""
    warnings: list[str] = []
    lab, n = ndimage.label(head_mask)
    if n == 0:
        return [], warnings
    sizes = np.bincount(lab.ravel())[1:] * voxel_volume_mm3(affine)
    order = [int(i) for i in np.argsort(sizes)[::-1] if sizes[i] >= max(MIN_HEAD_MM3, 0.2 * sizes.max())]
    if len(order) > 2:
        warnings.append(f"{len(order)} femoral-head components found; the two largest are used")
        order = order[:2]
    heads = []
    for i in order:
        sl = ndimage.find_objects((lab == i + 1).astype(np.int32))[0]
        off = tuple(int(s.start) + int(o) for s, o in zip(sl, offset_zyx))
        surf = surface(lab[sl] == i + 1, affine, off)
        fit = fit_sphere(surf.points_mm)
        if fit is None:
            warnings.append("a femoral-head component is too small for a sphere fit")
            continue
        heads.append(FemoralHead("", fit[0], fit[1]))
    return heads, warnings


def assign_sides(heads: list[FemoralHead], midline_x_mm: float) -> list[FemoralHead]:
    """Left = larger x of two heads; a lone head by its side of ``midline_x_mm``."""
    if len(heads) == 2:
        a, b = sorted(heads, key=lambda h: h.center_mm[0])
        return [FemoralHead("right", a.center_mm, a.radius_mm), FemoralHead("left", b.center_mm, b.radius_mm)]
    return [FemoralHead("left" if h.center_mm[0] > midline_x_mm else "right", h.center_mm, h.radius_mm)
            for h in heads]


def _topmost(points_mm: np.ndarray, up: np.ndarray, cell_mm: float, tol_mm: float) -> np.ndarray:
    """Mask of the points within ``tol_mm`` of the highest one (along ``up``) in their
    ``cell_mm`` column: the first surface met coming down from above."""
    e1, e2 = plane_basis(up)
    cells = np.floor(np.c_[points_mm @ e1, points_mm @ e2] / cell_mm).astype(np.int64)
    _, inv = np.unique(cells, axis=0, return_inverse=True)
    inv = inv.ravel()
    h = points_mm @ up
    top = np.full(inv.max() + 1, -np.inf)
    np.maximum.at(top, inv, h)
    return h >= top[inv] - tol_mm


def s1_plate(
    pelvis_mask: np.ndarray, affine: np.ndarray, offset_zyx, lowest: Body, lowest_plates: Endplates
) -> Plane | None:
    """The S1 plate under ``lowest`` (see the module docstring), or None."""
    c0 = lowest_plates.inferior.center_mm
    axis = lowest_plates.inferior.normal
    e1, e2 = plane_basis(axis)
    body_pts = voxel_points_mm(lowest.mask, affine, lowest.offset_zyx)
    radius = S1_CYLINDER_FACTOR * float(np.max(np.hypot((body_pts - c0) @ e1, (body_pts - c0) @ e2)))
    # crop the pelvis label to the box around the search cylinder
    lo_mm, hi_mm = c0 - S1_SEARCH_BELOW_MM * axis, c0 + 5.0 * axis
    ends = np.array([lo_mm, hi_mm])
    box_lo = ends.min(axis=0) - radius
    box_hi = ends.max(axis=0) + radius
    corners = np.array([[x, y, z] for x in (box_lo[0], box_hi[0]) for y in (box_lo[1], box_hi[1])
                        for z in (box_lo[2], box_hi[2])])
    idx_xyz = (corners - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    idx_zyx = idx_xyz[:, ::-1] - np.asarray(offset_zyx)
    sl = crop_slices(idx_zyx.min(axis=0), idx_zyx.max(axis=0) + 1, pelvis_mask.shape)
    crop = pelvis_mask[sl]
    if not crop.any():
        return None
    off = tuple(int(s.start) + int(o) for s, o in zip(sl, offset_zyx))
    grid = np.indices(crop.shape).reshape(3, -1).T
    pts = zyx_to_lps(grid, affine, off) - c0
    height = pts @ axis
    radial = np.hypot(pts @ e1, pts @ e2)
    inside = ((radial <= radius) & (height >= -S1_SEARCH_BELOW_MM) & (height <= 5.0)).reshape(crop.shape)
    region = crop & inside
    if region.sum() * voxel_volume_mm3(affine) < 500.0:
        return None
    surf = surface(region, affine, off)
    up = superior(axis)
    pick = surf.normals @ up > np.cos(np.radians(50.0))
    pts_up = surf.points_mm[pick]
    if len(pts_up) < 12:
        return None
    step = float(spacing_mm(affine).max())
    top = _topmost(pts_up, up, cell_mm=2.0 * step, tol_mm=1.5 * step)
    first = fit_plane(pts_up[top], step)
    if first is None:
        return None
    c, n, _ = first
    n = superior(n)
    near = np.abs((surf.points_mm - c) @ n) < max(4.0, 2.0 * step)
    pick = (surf.normals @ n > np.cos(np.radians(30.0))) & near
    fit = fit_plane(surf.points_mm[pick], step)
    if fit is None:
        return None
    c, n, keep = fit
    # the search region cuts the sacrum: columns it cut bound the plate from below only
    return refine(Plane(c, superior(n), int(keep.sum())), region, affine, off, up, ambiguous_deg=np.inf,
                  solid=crop, core_fallback=S1_CORE_FRACTION)


def s1_behind_front(s1: Plane, lowest: Body, lowest_plates: Endplates, affine: np.ndarray) -> tuple[bool, float]:
    """Whether the S1 plate's centre lies far enough behind the lowest body's anterior
    edge (module docstring), and where it lies as a share of that body's depth (0 at
    the anterior edge, 1 at the posterior edge)."""
    n = lowest_plates.inferior.normal / np.linalg.norm(lowest_plates.inferior.normal)
    ap = np.array([0.0, 1.0, 0.0]) - n[1] * n  # LPS +y is posterior
    if np.linalg.norm(ap) < 1e-6:
        return True, float("nan")
    ap /= np.linalg.norm(ap)
    depth = voxel_points_mm(lowest.mask, affine, lowest.offset_zyx) @ ap
    front, back = float(depth.min()), float(depth.max())
    share = (float(s1.center_mm @ ap) - front) / max(back - front, 1e-6)
    return share >= S1_MIN_BEHIND_FRONT, share
