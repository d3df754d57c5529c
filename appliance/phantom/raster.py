"""Rasterise shapes onto an axis-aligned LPS grid, one bounding box at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.phantom.shapes import Coords, Shape


@dataclass(frozen=True)
class Grid:
    """Axis-aligned grid (identity direction): voxel (x, y, z) index → origin + index·spacing."""

    origin_mm: np.ndarray  # (x, y, z) of voxel (0, 0, 0)
    spacing_mm: np.ndarray  # (x, y, z)
    shape_zyx: tuple[int, int, int]

    def axis_mm(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates along x (0), y (1) or z (2)."""
        n = self.shape_zyx[2 - axis]
        return self.origin_mm[axis] + self.spacing_mm[axis] * np.arange(n, dtype=np.float64)

    def box(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> tuple[tuple[slice, slice, slice], Coords] | None:
        """Array slices (z, y, x) covering ``[lo, hi]`` and the broadcastable coordinates."""
        idx_lo = np.floor((np.asarray(lo_mm) - self.origin_mm) / self.spacing_mm).astype(int)
        idx_hi = np.ceil((np.asarray(hi_mm) - self.origin_mm) / self.spacing_mm).astype(int) + 1
        size = np.array(self.shape_zyx[::-1])
        idx_lo = np.clip(idx_lo, 0, size)
        idx_hi = np.clip(idx_hi, 0, size)
        if np.any(idx_hi <= idx_lo):
            return None
        sl = tuple(slice(int(idx_lo[a]), int(idx_hi[a])) for a in (2, 1, 0))
        x = self.axis_mm(0)[sl[2]][None, None, :]
        y = self.axis_mm(1)[sl[1]][None, :, None]
        z = self.axis_mm(2)[sl[0]][:, None, None]
        return sl, (x, y, z)  # type: ignore[return-value]


def union_sdf(shapes: tuple[Shape, ...] | list[Shape], grid: Grid):
    """Minimum of the shapes' distances over their joint bounding box."""
    los, his = zip(*(s.bbox_mm() for s in shapes))
    found = grid.box(np.min(los, axis=0), np.max(his, axis=0))
    if found is None:
        return None
    sl, _ = found
    dist = np.full(tuple(s.stop - s.start for s in sl), np.inf, dtype=np.float32)
    for shape in shapes:
        part = grid.box(*shape.bbox_mm())
        if part is None:
            continue
        psl, coords = part
        local = tuple(slice(p.start - o.start, p.stop - o.start) for p, o in zip(psl, sl))
        np.minimum(dist[local], shape.sdf(coords).astype(np.float32), out=dist[local])
    return sl, dist


def paint(
    density: np.ndarray,
    labels: np.ndarray | None,
    sl: tuple[slice, slice, slice],
    dist: np.ndarray,
    cortical_hu: float,
    inner_hu: float,
    cortex_mm: float,
    label: int | None = None,
) -> np.ndarray:
    """Write a bone (cortical shell + interior) where ``dist < 0``; returns the inside mask."""
    inside = dist < 0
    region = density[sl]
    region[inside] = inner_hu
    region[inside & (dist > -cortex_mm)] = cortical_hu
    if label is not None and labels is not None:
        labels[sl][inside] = label
    return inside


def paint_shape(density, labels, grid: Grid, shape: Shape, cortical_hu, inner_hu, cortex_mm,
                label: int | None = None):
    """Paint one shape; returns ``(slices, inside mask)`` or None when off the grid."""
    found = grid.box(*shape.bbox_mm())
    if found is None:
        return None
    sl, coords = found
    inside = paint(density, labels, sl, shape.sdf(coords), cortical_hu, inner_hu, cortex_mm, label)
    return sl, inside
