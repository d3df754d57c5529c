"""Superior and inferior endplate of each vertebral body as separate robust plane fits.

Definition used: an endplate is the plane bounding the body's voxels cranially
(superior endplate) or caudally (inferior endplate). First estimate: a trimmed total
least-squares plane through the part of the body's sub-voxel surface facing that way
(outward normal within 45° of the spine's local direction, then within 30° of the first
fit, inner 80 % of the patch). Final estimate: :func:`planefit.refine_plane`, which
uses the voxel columns themselves, with the chord to the neighbouring body's centroid
across that disc as the tilt prior where the voxels leave the tilt open (faces within
one voxel layer). Both normals are returned oriented superiorly (+z), as
:mod:`appliance.measure.definitions` expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from appliance.measure.bodies import Body
from appliance.measure.definitions import superior
from appliance.measure.geometry import Surface, fit_plane, plane_basis, spacing_mm, surface, unit, voxel_points_mm
from appliance.measure.planefit import Refined, refine_plane

FIRST_CONE_DEG = 45.0
REFINE_CONE_DEG = 30.0
#: Share of the endplate's radius used by the final fit (the rim is rounded).
INNER_FRACTION = 0.8
#: Refinement is rejected when the voxels leave less margin than this (voxels) ...
MIN_MARGIN_VOX = -0.5
#: ... or when it moves the normal by more than this (the surface fit of a face lying
#: within one voxel layer can be 10° off).
MAX_REFINE_CHANGE_DEG = 20.0
#: A face whose voxel columns do not agree on one plane is given the tilt range of the
#: planes that stay within this many voxel layers across it (:func:`_unrefined`).
UNREFINED_LAYERS = 2.0


@dataclass(frozen=True)
class Plane:
    center_mm: np.ndarray  # centroid of the fitted surface patch
    normal: np.ndarray  # unit, pointing superiorly
    n_points: int
    #: (sagittal, coronal) width in degrees of the tilt range the voxels allow (0 when
    #: not known: the surface fit was kept)
    open_deg: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Endplates:
    superior: Plane
    inferior: Plane

    @property
    def axis(self) -> np.ndarray:
        """Body axis: the mean of the two endplate normals."""
        return unit(self.superior.normal + self.inferior.normal)


def _inner(points_mm: np.ndarray, normal: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the points within ``fraction`` of the patch's elliptic radius (second
    moments in the plane), dropping the rim where the endplate rounds into the wall."""
    e1, e2 = plane_basis(normal)
    q = (points_mm - points_mm.mean(axis=0)) @ np.c_[e1, e2]
    cov = np.cov(q.T) + 1e-9 * np.eye(2)
    r2 = np.einsum("ij,jk,ik->i", q, np.linalg.inv(cov), q)
    return r2 <= (2.0 * fraction) ** 2  # a uniform ellipse has r2 ≤ 4 at its rim


def fit_face(surf: Surface, reference_mm: np.ndarray, direction: np.ndarray, floor_mm: float) -> Plane | None:
    """Plane through the surface patch facing ``direction`` (unit, outward) on that side
    of ``reference_mm``; the normal is returned oriented superiorly, or None when the
    patch's plane leans more than ``FIRST_CONE_DEG`` away from ``direction`` (an irregular
    patch of a mask that is not a body: no endplate). The final fit uses
    the inner ``INNER_FRACTION`` of the patch; residuals below ``floor_mm`` (about a
    voxel) are never trimmed."""
    d = unit(direction)
    current = d
    for cone in (FIRST_CONE_DEG, REFINE_CONE_DEG):
        pick = (surf.normals @ current > np.cos(np.radians(cone))) & ((surf.points_mm - reference_mm) @ current > 0)
        pts = surf.points_mm[pick]
        if cone == REFINE_CONE_DEG and len(pts) >= 16:
            pts = pts[_inner(pts, current, INNER_FRACTION)]
        fit = fit_plane(pts, floor_mm)
        if fit is None:
            return None
        c, n, keep = fit
        current = n if n @ d > 0 else -n
    if current @ d < np.cos(np.radians(FIRST_CONE_DEG)):  # the patch's plane is not a face that way
        return None
    return Plane(c, superior(current), int(keep.sum()))


def refine(plane: Plane | None, mask: np.ndarray, affine: np.ndarray, offset_zyx, outward: np.ndarray,
           prior_normal: np.ndarray | None = None, ambiguous_deg: float | None = None,
           solid: np.ndarray | None = None, core_fallback: float | None = None) -> Plane | None:
    """Sub-voxel refinement of a surface fit (:func:`planefit.refine_plane`, with the
    optional tilt prior and ``solid``); the surface fit is kept when the voxels contradict
    any single plane or the change exceeds 10°. With ``core_fallback``, a face whose
    columns contradict each other is refined again with two-sided columns only in that
    share of its radius (near a steep wall, rim columns end at the wall, not the face)."""
    if plane is None:
        return None
    n_out = plane.normal if plane.normal @ outward > 0 else -plane.normal
    got = refine_plane(mask, affine, offset_zyx, plane.center_mm, n_out, prior_normal=prior_normal,
                       ambiguous_deg=ambiguous_deg, solid=solid)
    if got is not None and core_fallback is not None and _contradictory(got):
        core = refine_plane(mask, affine, offset_zyx, plane.center_mm, n_out, prior_normal=prior_normal,
                            ambiguous_deg=ambiguous_deg, solid=solid, core_fraction=core_fallback)
        got = core if core is not None and not _contradictory(core) else got
    if got is None or _degenerate(got) or got.margin_vox < MIN_MARGIN_VOX:
        return _unrefined(plane, mask, affine, offset_zyx)
    if got.normal @ n_out < np.cos(np.radians(MAX_REFINE_CHANGE_DEG)):
        return _unrefined(plane, mask, affine, offset_zyx, got.normal)
    return Plane(got.centre_mm, superior(got.normal), plane.n_points, (float(got.open_deg[0]), float(got.open_deg[1])))


def _unrefined(plane: Plane, mask: np.ndarray, affine: np.ndarray, offset_zyx,
               other_normal: np.ndarray | None = None) -> Plane:
    """The surface fit, when the voxel columns do not agree on one plane (a rough or
    notched face, a degenerate box), with the tilt range it honestly leaves open: every
    plane that stays within ``UNREFINED_LAYERS`` voxel layers across the face's extent
    in that direction (anterior–posterior for the sagittal tilt, left–right for the
    coronal), widened to cover ``other_normal`` (the rejected refinement) when given.
    Never a confident value: the surface fit of a face within a voxel layer or two can be
    10° off, and a degenerate box returns an exactly axis-aligned normal."""
    n = plane.normal
    pts = voxel_points_mm(mask, affine, offset_zyx)
    layer = float(spacing_mm(affine).max())
    widths = []
    for k, axis in ((0, np.array([0.0, 1.0, 0.0])), (1, np.array([1.0, 0.0, 0.0]))):
        d = axis - (axis @ n) * n
        extent = float(np.ptp(pts @ unit(d))) if np.linalg.norm(d) > 1e-6 and len(pts) else 0.0
        w = 180.0 if extent <= 0 else float(2.0 * np.degrees(np.arctan2(UNREFINED_LAYERS * layer, extent)))
        if other_normal is not None:  # the tilt between the two candidates, in that plane
            o = superior(other_normal)
            j = 1 if k == 0 else 0  # sagittal tilt lives in the y–z plane, coronal in x–z
            w = max(w, 2.0 * abs(float(np.degrees(np.arctan2(o[j], o[2]) - np.arctan2(n[j], n[2])))))
        widths.append(w)
    return Plane(plane.center_mm, plane.normal, plane.n_points, (widths[0], widths[1]))


def _degenerate(got: Refined) -> bool:
    """Columns that leave no tilt open at all: they only just agree, on a plane no face
    has (a digital plane always leaves some); the estimate is then an artefact of the
    solver (an exactly axis-aligned normal)."""
    return float(np.min(got.open_deg)) < 1e-3


def _contradictory(got: Refined) -> bool:
    """Columns that do not agree on a real face: some had to give way, or they leave no
    tilt open at all (a digital plane always leaves some; a box of no width means they
    only just agree, on a plane no face has)."""
    return bool(got.dropped) or _degenerate(got)


def fill_pits(body: Body) -> Body:
    """The body with single-voxel pits and holes filled: an empty voxel with five or six
    of its six face neighbours inside joins (speckle removed from a face would
    otherwise read as a dent). This never happens on a clean digital plane or its
    staircase, so faces are kept. (Protruding speckle is left to the refinement's
    outlier handling: removing one-neighbour voxels would also shave clean rims.)"""
    cross = ndimage.generate_binary_structure(3, 1).astype(np.uint8)
    cross[1, 1, 1] = 0
    n = ndimage.convolve(np.pad(body.mask, 1).astype(np.uint8), cross, mode="constant")[1:-1, 1:-1, 1:-1]
    return Body(body.mask | (n >= 5), body.offset_zyx, body.centroid_mm, body.volume_mm3)


def fit_endplates(
    body: Body,
    affine: np.ndarray,
    approx_axis: np.ndarray,
    disc_above: np.ndarray | None = None,
    disc_below: np.ndarray | None = None,
) -> Endplates | None:
    """Both endplates of ``body``; ``approx_axis`` is the spine's local cranial direction,
    ``disc_above`` / ``disc_below`` the directions to the neighbouring bodies' centroids
    (the tilt priors of the superior / inferior endplate; None at the ends)."""
    body = fill_pits(body)
    surf = surface(body.mask, affine, body.offset_zyx)
    if len(surf.points_mm) == 0:
        return None
    a = superior(approx_axis)
    floor_mm = float(spacing_mm(affine).max())
    sup = refine(fit_face(surf, body.centroid_mm, a, floor_mm), body.mask, affine, body.offset_zyx, a, disc_above)
    inf = refine(fit_face(surf, body.centroid_mm, -a, floor_mm), body.mask, affine, body.offset_zyx, -a, disc_below)
    if sup is None or inf is None:
        return None
    return Endplates(sup, inf)


def disc_directions(centroids_mm: np.ndarray) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """For each body (cranial first): the cranial direction of the chord to the body
    above and of the chord from the body below (None where there is none) — the
    spine's direction at its superior and inferior disc."""
    c = np.asarray(centroids_mm, float)
    chords = [superior(c[k] - c[k + 1]) if np.linalg.norm(c[k] - c[k + 1]) > 0 else None
              for k in range(len(c) - 1)]
    return [(chords[k - 1] if k > 0 else None, chords[k] if k < len(c) - 1 else None) for k in range(len(c))]


def spine_directions(centroids_mm: np.ndarray) -> np.ndarray:
    """Local cranial direction of the spine at each body (cranial first): the direction
    from the next-lower to the next-higher centroid (one-sided at the ends; +z alone)."""
    c = np.asarray(centroids_mm, float)
    n = len(c)
    out = np.tile(np.array([0.0, 0.0, 1.0]), (n, 1))
    for k in range(n):
        hi, lo = c[max(k - 1, 0)], c[min(k + 1, n - 1)]
        if np.linalg.norm(hi - lo) > 0:
            out[k] = superior(hi - lo)
    return out
