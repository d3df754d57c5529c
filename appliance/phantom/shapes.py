"""Signed distance functions (mm, negative inside) of the phantom's primitives.

Each primitive evaluates on broadcastable coordinate arrays ``(x, y, z)`` in LPS mm and
knows its bounding box, so a primitive is only ever evaluated on the voxels near it.
Distances are exact for spheres, capsules and planes and approximate (a scaled
ellipse distance) for elliptic sections; only the sign is used for labels, the
magnitude only for the cortical shell thickness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


class Shape(Protocol):
    def sdf(self, p: Coords) -> np.ndarray: ...

    def bbox_mm(self) -> tuple[np.ndarray, np.ndarray]: ...


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _dot(p: Coords, v: np.ndarray, origin: np.ndarray) -> np.ndarray:
    return (p[0] - origin[0]) * v[0] + (p[1] - origin[1]) * v[1] + (p[2] - origin[2]) * v[2]


@dataclass(frozen=True)
class Sphere:
    center: np.ndarray
    radius: float

    def sdf(self, p: Coords) -> np.ndarray:
        c = self.center
        return np.sqrt((p[0] - c[0]) ** 2 + (p[1] - c[1]) ** 2 + (p[2] - c[2]) ** 2) - self.radius

    def bbox_mm(self):
        return self.center - self.radius, self.center + self.radius


@dataclass(frozen=True)
class Capsule:
    """All points within ``radius`` of the segment a–b."""

    a: np.ndarray
    b: np.ndarray
    radius: float

    def sdf(self, p: Coords) -> np.ndarray:
        ab = self.b - self.a
        t = np.clip(_dot(p, ab, self.a) / float(ab @ ab), 0.0, 1.0)
        dx = p[0] - (self.a[0] + t * ab[0])
        dy = p[1] - (self.a[1] + t * ab[1])
        dz = p[2] - (self.a[2] + t * ab[2])
        return np.sqrt(dx * dx + dy * dy + dz * dz) - self.radius

    def bbox_mm(self):
        lo = np.minimum(self.a, self.b) - self.radius
        hi = np.maximum(self.a, self.b) + self.radius
        return lo, hi


@dataclass(frozen=True)
class Ellipsoid:
    center: np.ndarray
    axes: np.ndarray  # 3×3, rows = unit directions
    radii: np.ndarray  # semi-axes along those rows

    def sdf(self, p: Coords) -> np.ndarray:
        q = sum((_dot(p, self.axes[k], self.center) / self.radii[k]) ** 2 for k in range(3))
        return (np.sqrt(q) - 1.0) * float(np.min(self.radii))

    def bbox_mm(self):
        ext = np.sqrt(((self.axes * self.radii[:, None]) ** 2).sum(axis=0))
        return self.center - ext, self.center + ext


@dataclass(frozen=True)
class VertebralBody:
    """Kidney-shaped elliptic cylinder cut by two endplate planes (wedged in general).

    Lateral surface: ellipse with semi-axes ``half_width`` along ``left`` and
    ``half_depth`` along ``posterior`` around the axis through ``center``, minus a
    posterior notch (the concave posterior wall). Superior endplate: the plane through
    ``sup_point`` with normal ``sup_normal``; inferior: through ``inf_point`` with
    ``inf_normal``; both normals point superiorly.
    """

    center: np.ndarray
    left: np.ndarray
    posterior: np.ndarray
    half_width: float
    half_depth: float
    sup_point: np.ndarray
    sup_normal: np.ndarray
    inf_point: np.ndarray
    inf_normal: np.ndarray
    notch: bool = True

    def sdf(self, p: Coords) -> np.ndarray:
        u = _dot(p, self.left, self.center)
        v = _dot(p, self.posterior, self.center)
        r = min(self.half_width, self.half_depth)
        side = (np.sqrt((u / self.half_width) ** 2 + (v / self.half_depth) ** 2) - 1.0) * r
        if self.notch:
            nu, nv = 0.42 * self.half_width, 0.30 * self.half_depth
            notch = (np.sqrt((u / nu) ** 2 + ((v - 1.1 * self.half_depth) / nv) ** 2) - 1.0) * nv
            side = np.maximum(side, -notch)
        top = _dot(p, self.sup_normal, self.sup_point)
        bottom = -_dot(p, self.inf_normal, self.inf_point)
        return np.maximum(side, np.maximum(top, bottom))

    def bbox_mm(self):
        ext = max(self.half_width, self.half_depth)
        pts = np.array([self.sup_point, self.inf_point])
        return pts.min(axis=0) - ext - 2.0, pts.max(axis=0) + ext + 2.0


@dataclass(frozen=True)
class Slab:
    """Thick elliptic plate: |distance to the mid-plane| ≤ half_thickness, inside an ellipse."""

    center: np.ndarray
    normal: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    r1: float
    r2: float
    half_thickness: float

    def sdf(self, p: Coords) -> np.ndarray:
        h = np.abs(_dot(p, self.normal, self.center)) - self.half_thickness
        a = _dot(p, self.e1, self.center) / self.r1
        b = _dot(p, self.e2, self.center) / self.r2
        rim = (np.sqrt(a * a + b * b) - 1.0) * min(self.r1, self.r2)
        return np.maximum(h, rim)

    def bbox_mm(self):
        ext = np.abs(self.e1) * self.r1 + np.abs(self.e2) * self.r2 + np.abs(self.normal) * self.half_thickness
        return self.center - ext, self.center + ext


@dataclass(frozen=True)
class CupShell:
    """Spherical shell (inner..outer radius) on the side of ``pole`` (an acetabulum)."""

    center: np.ndarray
    inner: float
    outer: float
    pole: np.ndarray
    min_cos: float = -0.15

    def sdf(self, p: Coords) -> np.ndarray:
        c = self.center
        d = np.sqrt((p[0] - c[0]) ** 2 + (p[1] - c[1]) ** 2 + (p[2] - c[2]) ** 2)
        shell = np.abs(d - 0.5 * (self.inner + self.outer)) - 0.5 * (self.outer - self.inner)
        cos = _dot(p, self.pole, c) / np.maximum(d, 1e-6)
        return np.maximum(shell, (self.min_cos - cos) * self.outer)

    def bbox_mm(self):
        return self.center - self.outer, self.center + self.outer


@dataclass(frozen=True)
class Clipped:
    """A shape kept only below a plane (normal points to the removed side)."""

    shape: Shape
    point: np.ndarray
    normal: np.ndarray

    def sdf(self, p: Coords) -> np.ndarray:
        return np.maximum(self.shape.sdf(p), _dot(p, self.normal, self.point))

    def bbox_mm(self):
        return self.shape.bbox_mm()
