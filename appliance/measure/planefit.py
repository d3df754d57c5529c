"""Sub-voxel refinement of a plane that bounds a binary mask (an endplate, the S1 plate).

A label map sampled at voxel centres says, for every column of voxels along the index
axis most nearly normal to the plane, that the plane passes beyond the column's
outermost inside voxel and — away from walls — before the next voxel. Least squares
through a voxel staircase is biased by up to a few degrees when only one or two steps
cross a face; instead every column's interval is a linear constraint on the plane
t = a·u + b·v + c (t along the column axis), and the estimate is taken from the set of
planes satisfying them all:

- slope: the centre of the feasible slope box (a, b), moved toward a reference direction
  (a tilt prior: the chord to the neighbouring body, else the surface fit) only by as
  much as the box is wider than ``AMBIGUOUS_DEG``. At 0.7–1 mm voxels the box is
  usually far narrower than a degree and the voxels alone decide; a face lying within
  one or two voxel layers leaves its tilt open by several degrees, and then the
  reference decides within what the voxels allow;
- offset: the middle of the offsets allowed at that slope.

The width of the feasible slope box is returned too (``Refined.open_deg``): how many
degrees of sagittal and coronal tilt the voxels leave open. It is the measurement's
honest uncertainty where a face lies within a voxel layer or two.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage, sparse
from scipy.optimize import linprog

from appliance.measure.geometry import unit

#: Columns whose boundary lies farther than this (in voxels along the column) from the
#: initial plane are treated as walls, speckle or noise and ignored.
MAX_COLUMN_OFFSET_VOX = 1.5
#: Share of constraints allowed to give way when no plane satisfies all (speckle).
OUTLIER_SHARE = 0.1
#: A rim column joins the two-sided set when the estimate leaves it this much room.
RIM_SLACK_VOX = 0.05
#: Most columns used per face (a deterministic subsample beyond that).
MAX_COLUMNS = 400
#: Slope boxes wider than this (degrees) leave the tilt to the reference (prior) direction.
AMBIGUOUS_DEG = 1.0


class Refined(NamedTuple):
    centre_mm: np.ndarray
    normal: np.ndarray  # unit, outward
    margin_vox: float  # smallest slack of the constraints at the estimate
    open_deg: np.ndarray  # (sagittal, coronal) width of the tilt range the voxels allow
    dropped: int  # constraints that had to give way (speckle, or columns capped by a wall)


def refine_plane(
    mask: np.ndarray,
    affine: np.ndarray,
    offset_zyx,
    point_mm: np.ndarray,
    outward_normal: np.ndarray,
    min_columns: int = 6,
    prior_normal: np.ndarray | None = None,
    ambiguous_deg: float | None = None,
    solid: np.ndarray | None = None,
    core_fraction: float | None = None,
) -> Refined | None:
    """Refine the face of ``mask`` near the plane (``point_mm``, ``outward_normal``).

    ``prior_normal`` is the reference direction of the tilt (default: the given
    normal); ``ambiguous_deg`` overrides ``AMBIGUOUS_DEG`` (``inf``: always the box
    centre, no reference). Columns farther than ``MAX_COLUMN_OFFSET_VOX`` from the initial plane are
    ignored; if no plane satisfies all the others, the fewest that must give way are
    dropped (at most ``OUTLIER_SHARE``). ``solid`` (same shape, a superset of ``mask``)
    is the whole structure when ``mask`` is a crop of it: a column whose next voxel is
    still ``solid`` was cut by the crop, not by the face, and bounds the plane from
    inside only. ``core_fraction`` keeps the two-sided constraints to the columns within
    that share of the face's elliptic radius (the rim bounds from inside only). Returns
    the :class:`Refined` plane or None when too few columns qualify.
    """
    n = unit(outward_normal)
    m_zyx = affine[:3, :3][:, ::-1]  # (z, y, x) index → mm
    dirs = m_zyx / np.linalg.norm(m_zyx, axis=0)
    ax = int(np.argmax(np.abs(n @ dirs)))
    s = 1 if n @ dirs[:, ax] > 0 else -1
    length = mask.shape[ax]
    has = mask.any(axis=ax)
    if s > 0:
        j = length - 1 - np.argmax(np.flip(mask, axis=ax), axis=ax)
    else:
        j = np.argmax(mask, axis=ax)
    others = [a for a in range(3) if a != ax]
    uv = np.argwhere(has)
    jk = j[has].astype(float)
    cut = np.zeros(len(uv), bool)
    if solid is not None:  # the voxel just beyond each column's outermost one
        beyond = j[has] + s
        inside_grid = (beyond >= 0) & (beyond < length)
        probe = np.zeros((len(uv), 3), int)
        probe[:, others[0]], probe[:, others[1]] = uv[:, 0], uv[:, 1]
        probe[:, ax] = np.clip(beyond, 0, length - 1)
        cut = inside_grid & solid[probe[:, 0], probe[:, 1], probe[:, 2]]
    idx = np.zeros((len(uv), 3))
    idx[:, others[0]], idx[:, others[1]], idx[:, ax] = uv[:, 0], uv[:, 1], jk
    idx += np.asarray(offset_zyx, float)
    pts = idx @ m_zyx.T + affine[:3, 3]
    step_mm = abs(n @ m_zyx[:, ax])  # one voxel along the column, measured along n
    r = (pts - point_mm) @ n / step_mm
    near = (r > -MAX_COLUMN_OFFSET_VOX - 0.5) & (r < MAX_COLUMN_OFFSET_VOX - 0.5)
    if near.sum() < min_columns:
        return None
    # a two-sided ("inner") column needs its four neighbouring columns on the face too:
    # next to a wall (rim, notch) a column may leave the body through the wall instead
    grid = np.zeros(has.shape, bool)
    grid[uv[near, 0], uv[near, 1]] = True
    inner = near & ndimage.binary_erosion(grid, border_value=0)[uv[:, 0], uv[:, 1]] & ~cut
    if core_fraction is not None and inner.sum() >= min_columns:
        q = uv - uv[near].mean(axis=0)
        cov = np.cov(q[near].T) + 1e-9 * np.eye(2)
        r2 = np.einsum("ij,jk,ik->i", q, np.linalg.inv(cov), q)
        core = inner & (r2 <= (2.0 * core_fraction) ** 2)
        if core.sum() >= min_columns:
            inner = core
    if inner.sum() < min_columns:
        return None
    u0, v0 = uv[inner, 0].mean(), uv[inner, 1].mean()
    cols = np.flatnonzero(near)
    if len(cols) > MAX_COLUMNS:
        cols = np.sort(np.random.default_rng(0).choice(cols, MAX_COLUMNS, replace=False))
    # Constraint rows g(x) = G·(a, b, c) + h > 0 with t = a·u + b·v + c along the column:
    # every column:   s·(t − j) > 0   (its outermost inside voxel lies inside the plane)
    # inner columns:  s·(t − j) < 1   (the next voxel is outside because of the plane)
    uu, vv, jj = uv[cols, 0] - u0, uv[cols, 1] - v0, jk[cols]
    rows = np.c_[s * uu, s * vv, np.full(len(cols), float(s))]
    g_mat = np.r_[rows, -rows[inner[cols]]]
    h_vec = np.r_[-s * jj, 1.0 + s * jj[inner[cols]]]
    x0 = _consistent(g_mat, h_vec)
    if x0 is None:
        return None
    ok = g_mat @ x0 + h_vec >= -1e-9
    # one degree of tilt, in slope units along each of the two column axes
    per_deg = np.radians(1.0) * np.linalg.norm(m_zyx[:, others], axis=0) / np.linalg.norm(m_zyx[:, ax])
    ref = unit(prior_normal) if prior_normal is not None else n
    denom = ref @ m_zyx[:, ax]
    if abs(denom) < 1e-6:
        ref, denom = n, n @ m_zyx[:, ax]
    ref_slope = -np.array([ref @ m_zyx[:, others[0]], ref @ m_zyx[:, others[1]]]) / denom
    wide = AMBIGUOUS_DEG if ambiguous_deg is None else ambiguous_deg
    g_fin, h_fin = g_mat[ok], h_vec[ok]
    box = _box(g_fin, h_fin)
    x = _closest(g_fin, h_fin, _target(box, ref_slope, per_deg, wide), per_deg)
    if x is None:
        return None
    # Rim columns whose next voxel lies within the current plane estimate are plate
    # columns, not walls: add their upper bounds as well and solve again.
    val = rows @ x - s * jj  # s·(t − j) for every near column
    extra = ~inner[cols] & ~cut[cols] & (val < 1.0 - RIM_SLACK_VOX) & (val > 0.0)
    if extra.any() and core_fraction is None:  # with a core, the rim stays one-sided
        g2, h2 = np.r_[g_mat[ok], -rows[extra]], np.r_[h_vec[ok], 1.0 + s * jj[extra]]
        box2 = _box(g2, h2)
        x_new = _closest(g2, h2, _target(box2, ref_slope, per_deg, wide), per_deg)
        if x_new is not None:
            x, box = x_new, box2
    margin = float(np.min(g_mat[ok] @ x + h_vec[ok]))
    a, b, c = x

    def normal_of(a: float, b: float) -> np.ndarray:
        tu = np.zeros(3)
        tv = np.zeros(3)
        tu[others[0]], tu[ax] = 1.0, a
        tv[others[1]], tv[ax] = 1.0, b
        nn = unit(np.cross(m_zyx @ tu, m_zyx @ tv))
        return -nn if nn @ n < 0 else nn

    normal = normal_of(a, b)
    centre = np.zeros(3)
    centre[others[0]], centre[others[1]], centre[ax] = u0, v0, c
    centre_mm = (centre + np.asarray(offset_zyx, float)) @ m_zyx.T + affine[:3, 3]
    open_deg = np.zeros(2)
    if box is not None:  # column axis x (index 2) is left–right: coronal; the other one sagittal
        for i, axis in enumerate(others):
            step = np.eye(2)[i] * box[1][i]
            ends = [normal_of(*(box[0] + sign * step)) for sign in (-1.0, 1.0)]
            width = float(np.degrees(np.arccos(np.clip(ends[0] @ ends[1], -1.0, 1.0))))
            open_deg[1 if axis == 2 else 0] = max(open_deg[1 if axis == 2 else 0], width)
    return Refined(centre_mm, normal, margin, open_deg, int((~ok).sum()))


def _consistent(g: np.ndarray, h: np.ndarray) -> np.ndarray | None:
    """A point satisfying g·x + h ≥ 0 — or, when none does, one violating as little as
    possible (L1) as long as at most ``OUTLIER_SHARE`` of the constraints give way."""
    free = [(None, None)] * 3
    res = linprog(np.zeros(3), A_ub=-g, b_ub=h, bounds=free, method="highs")
    if res.success:
        return res.x
    k = len(h)
    a_ub = sparse.hstack([sparse.csr_matrix(-g), -sparse.identity(k, format="csr")], format="csr")
    res = linprog(np.r_[np.zeros(3), np.ones(k)], A_ub=a_ub, b_ub=h - 0.02,
                  bounds=free + [(0.0, None)] * k, method="highs")
    if not res.success:
        return None
    x = res.x[:3]
    if np.mean(g @ x + h < -1e-9) > OUTLIER_SHARE:
        return None
    return x


def _box(g: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and half-width of the feasible slope box (the range of each slope over
    the planes with g·x + h ≥ 0), or None when a range is unbounded."""
    centre, half = np.zeros(2), np.zeros(2)
    for i in range(2):
        ends = []
        for sign in (1.0, -1.0):
            res = linprog(sign * np.eye(3)[i], A_ub=-g, b_ub=h, bounds=[(None, None)] * 3, method="highs")
            if not res.success:
                return None
            ends.append(res.x[i])
        centre[i], half[i] = 0.5 * (ends[0] + ends[1]), 0.5 * (ends[1] - ends[0])
    return centre, half


def _target(box: tuple[np.ndarray, np.ndarray] | None, ref_slope: np.ndarray, per_deg: np.ndarray,
            wide_deg: float) -> np.ndarray:
    """Slope to aim for: the centre of the feasible slope box, moved toward the reference
    by as much as the box's half-width exceeds ``wide_deg`` / 2. A tight box (the
    usual case at 1 mm voxels) gives its centre; a wide one (a face within one voxel
    layer) gives the reference as long as it stays that far inside the box (``box``:
    :func:`_box`; None gives the reference)."""
    if box is None:
        return ref_slope
    centre, half = box
    room = np.maximum(half - 0.5 * wide_deg * per_deg, 0.0)
    return centre + np.clip(ref_slope - centre, -room, room)


def _closest(g: np.ndarray, h: np.ndarray, ref_slope: np.ndarray, per_deg: np.ndarray) -> np.ndarray | None:
    """The plane (a, b, c) with g·x + h ≥ 0 whose slope is closest (L1, in degrees) to
    ``ref_slope``, with its offset c in the middle of the range left at that slope."""
    cost = np.r_[0.0, 0.0, 0.0, 1.0, 1.0]
    # |a − a0| / σa ≤ pa and |b − b0| / σb ≤ pb, as four rows
    inv = 1.0 / per_deg
    dev = np.array([[inv[0], 0, 0, -1, 0], [-inv[0], 0, 0, -1, 0], [0, inv[1], 0, 0, -1], [0, -inv[1], 0, 0, -1]])
    dev_b = np.array([inv[0] * ref_slope[0], -inv[0] * ref_slope[0], inv[1] * ref_slope[1], -inv[1] * ref_slope[1]])
    a_ub = np.r_[np.c_[-g, np.zeros((len(h), 2))], dev]
    res = linprog(cost, A_ub=a_ub, b_ub=np.r_[h, dev_b], bounds=[(None, None)] * 3 + [(0.0, None)] * 2,
                  method="highs")
    if not res.success:
        return None
    a, b = res.x[:2]
    rest = h + g[:, 0] * a + g[:, 1] * b  # need g[:, 2]·c + rest ≥ 0
    up, down = g[:, 2] > 0, g[:, 2] < 0
    lo = np.max(-rest[up] / g[up, 2]) if up.any() else res.x[2]
    hi = np.min(-rest[down] / g[down, 2]) if down.any() else res.x[2]
    return np.array([a, b, 0.5 * (lo + hi) if lo <= hi else res.x[2]])
