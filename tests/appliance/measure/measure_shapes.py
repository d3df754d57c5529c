"""Planted synthetic masks for the measurement tests (voxel-centre sampling, like a
label map): wedged elliptic cylinders with exact endplate planes, spheres."""

from __future__ import annotations

import numpy as np


def unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def grid_affine(spacing_xyz=(2.5, 2.5, 2.5), origin=(0.0, 0.0, 0.0), rot_z_deg: float = 0.0) -> np.ndarray:
    """4×4 (x, y, z, 1) index → LPS mm, optionally with in-plane rotated axes."""
    t = np.radians(rot_z_deg)
    r = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    a = np.eye(4)
    a[:3, :3] = r @ np.diag(spacing_xyz)
    a[:3, 3] = origin
    return a


def lps_grid(shape_zyx, affine) -> np.ndarray:
    """(z, y, x, 3) LPS mm of every voxel centre."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij"), axis=-1)
    return idx[..., ::-1] @ affine[:3, :3].T + affine[:3, 3]


def body(pts, centre, axis, left, half_width, half_depth, sup_normal, inf_normal, height) -> np.ndarray:
    """Elliptic cylinder around ``axis`` through ``centre`` cut by two planes at ±height/2
    (along the axis) with the given normals."""
    axis, left = unit(axis), unit(left)
    post = np.cross(axis, left)
    d = pts - centre
    u, v = d @ left, d @ post
    inside = (u / half_width) ** 2 + (v / half_depth) ** 2 <= 1.0
    top = centre + 0.5 * height * axis
    bottom = centre - 0.5 * height * axis
    return inside & ((pts - top) @ unit(sup_normal) <= 0) & ((pts - bottom) @ unit(inf_normal) >= 0)


def tilt(deg_x: float, deg_y: float) -> np.ndarray:
    """Unit normal with coronal tilt ``deg_x`` and sagittal tilt ``deg_y`` (definitions' sense)."""
    return unit([np.tan(np.radians(deg_x)), np.tan(np.radians(deg_y)), 1.0])


def angle_deg(a, b) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(np.dot(unit(a), unit(b))), -1.0, 1.0))))
