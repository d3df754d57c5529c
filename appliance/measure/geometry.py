"""Geometry helpers shared by the measurement modules: crops, voxel → LPS mapping,
sub-voxel surfaces of binary masks, robust plane and sphere fits.

Conventions: arrays are ``(z, y, x)``; ``affine`` is the 4×4 matrix mapping homogeneous
``(x, y, z, 1)`` indices to LPS millimetres (``Volume.affine``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes


@dataclass(frozen=True)
class Surface:
    """Points (N, 3) on a mask's boundary and their outward unit normals, LPS mm."""

    points_mm: np.ndarray
    normals: np.ndarray


def crop_slices(lo_zyx: np.ndarray, hi_zyx: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Index slices for the box ``[lo, hi)`` clipped to ``shape``."""
    lo = np.maximum(np.floor(lo_zyx).astype(int), 0)
    hi = np.minimum(np.ceil(hi_zyx).astype(int), np.asarray(shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def pad_slices(sl: tuple[slice, ...], pad: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(sl, shape))


def zyx_to_lps(idx_zyx: np.ndarray, affine: np.ndarray, offset_zyx=(0, 0, 0)) -> np.ndarray:
    """LPS mm of (N, 3) ``(z, y, x)`` indices (relative to a crop starting at ``offset_zyx``)."""
    idx = np.asarray(idx_zyx, float) + np.asarray(offset_zyx, float)
    return idx[:, ::-1] @ affine[:3, :3].T + affine[:3, 3]


def voxel_points_mm(mask: np.ndarray, affine: np.ndarray, offset_zyx=(0, 0, 0)) -> np.ndarray:
    """LPS mm of every voxel centre in ``mask``."""
    return zyx_to_lps(np.argwhere(mask), affine, offset_zyx)


def voxel_volume_mm3(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(affine[:3, :3])))


def spacing_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel size along the index axes, in ``(z, y, x)`` order."""
    return np.linalg.norm(affine[:3, :3], axis=0)[::-1]


def surface(mask: np.ndarray, affine: np.ndarray, offset_zyx=(0, 0, 0), sigma_vox: float = 1.0) -> Surface:
    """Sub-voxel boundary of a binary mask: the 0.5 iso-surface of the mask smoothed with
    a Gaussian of ``sigma_vox`` voxels (marching cubes). Smoothing turns the voxel
    staircase of an oblique plane back into a plane and removes single-voxel speckle."""
    padded = np.pad(mask.astype(np.float32), 3)
    smooth = ndimage.gaussian_filter(padded, sigma_vox, mode="constant") if sigma_vox > 0 else padded
    if smooth.max() <= 0.5:
        return Surface(np.empty((0, 3)), np.empty((0, 3)))
    verts, _, normals, _ = marching_cubes(smooth, 0.5)
    pts = zyx_to_lps(verts - 3.0, affine, offset_zyx)
    # skimage's normals point outward (down the gradient) in index space; covectors map
    # to millimetres through the inverse transpose of the index → mm matrix.
    n = normals[:, ::-1] @ np.linalg.inv(affine[:3, :3])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    return Surface(pts, n)


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def plane_basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane perpendicular to ``normal``."""
    n = unit(normal)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = unit(np.cross(n, helper))
    return e1, np.cross(n, e1)


def fit_plane(points_mm: np.ndarray, floor_mm: float = 1.0, iterations: int = 4, min_points: int = 6):
    """Robust least-squares plane (total least squares, iteratively trimmed at
    3 × the median absolute residual but never below ``floor_mm``). Returns (centroid,
    unit normal, inlier mask) or None when too few points remain."""
    pts = np.asarray(points_mm, float)
    keep = np.ones(len(pts), bool)
    if len(pts) < min_points:
        return None
    for _ in range(iterations):
        c = pts[keep].mean(axis=0)
        _, _, vt = np.linalg.svd(pts[keep] - c, full_matrices=False)
        n = vt[2]
        r = np.abs((pts - c) @ n)
        cut = max(3.0 * np.median(r[keep]), floor_mm)
        new = r <= cut
        if new.sum() < min_points:
            break
        if np.array_equal(new, keep):
            break
        keep = new
    c = pts[keep].mean(axis=0)
    _, _, vt = np.linalg.svd(pts[keep] - c, full_matrices=False)
    return c, vt[2], keep


def fit_sphere(points_mm: np.ndarray, iterations: int = 4, min_points: int = 20):
    """Robust algebraic sphere fit |p − c|² = r² (linear least squares, trimmed at
    3 × the median absolute radial residual, floor 0.5 mm). Returns (centre, radius,
    inlier mask) or None."""
    pts = np.asarray(points_mm, float)
    if len(pts) < min_points:
        return None
    keep = np.ones(len(pts), bool)
    c = pts.mean(axis=0)
    r = 0.0
    for _ in range(iterations + 1):
        p = pts[keep] - pts[keep].mean(axis=0)
        a = np.c_[2.0 * p, np.ones(len(p))]
        b = (p**2).sum(axis=1)
        sol, *_ = np.linalg.lstsq(a, b, rcond=None)
        c = sol[:3] + pts[keep].mean(axis=0)
        r = float(np.sqrt(max(sol[3] + sol[:3] @ sol[:3], 0.0)))
        res = np.abs(np.linalg.norm(pts - c, axis=1) - r)
        cut = max(3.0 * np.median(res[keep]), 0.5)
        new = res <= cut
        if new.sum() < min_points or np.array_equal(new, keep):
            break
        keep = new
    return c, r, keep
