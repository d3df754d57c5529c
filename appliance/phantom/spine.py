"""The planted spine: a centreline built from coronal and sagittal tilt profiles, and
wedged vertebral bodies C2–L5 placed along it.

Construction (LPS mm, S1 plate centre at the origin): endplate heights are laid out
along z from the S1 plate upward. The coronal tilt α(z) and sagittal tilt β(z) of the
centreline tangent are piecewise linear through control values placed *at endplates*,
so every planted angle is exact: the tangent is t(z) ∝ (tan α, tan β, 1), whose
coronal / sagittal projections make angles α and β with +z — exactly the tilt
definitions of :mod:`appliance.measure.definitions`. Each endplate is the plane
through the centreline point c(z) with normal t(z); a body's superior and inferior
normals therefore differ (wedging) wherever the curve bends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.labels import LEVELS
from appliance.phantom.params import PhantomParams
from appliance.phantom.shapes import VertebralBody, unit

# Adult dimensions (mm) per level, cranial to caudal: body height, disc height below the
# level, half width (left–right) and half depth (antero-posterior) of the body.
_HEIGHT = np.r_[15.0, 13.5, 13.5, 14.0, 14.0, 14.5, np.linspace(16.5, 23.5, 12), 26.0, 27.0, 27.5, 27.5, 27.0]
_DISC_BELOW = np.r_[[4.5] * 5, 5.0, np.linspace(4.0, 6.5, 11), 7.5, 9.0, 10.0, 10.5, 11.0, 10.0]
_HALF_WIDTH = np.r_[8.0, np.linspace(8.5, 10.0, 5), np.linspace(13.0, 20.0, 12), np.linspace(21.0, 24.0, 5)]
_HALF_DEPTH = np.r_[8.0, np.linspace(7.5, 8.0, 5), np.linspace(8.5, 15.0, 12), np.linspace(16.0, 17.5, 5)]


@dataclass(frozen=True)
class Vertebra:
    name: str
    body: VertebralBody
    superior_z_mm: float
    inferior_z_mm: float
    rotation_deg: float  # planted axial rotation about the body axis


@dataclass(frozen=True)
class Spine:
    vertebrae: tuple[Vertebra, ...]
    s1_center_mm: np.ndarray
    s1_normal: np.ndarray
    z_mm: np.ndarray  # dense samples of the centreline
    x_mm: np.ndarray
    y_mm: np.ndarray
    balance: dict  # how sagittal balance was reached (junction angle, thoracic shape, C7 offset)

    def centre_at(self, z_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centreline (x, y) at heights ``z_mm`` (held constant beyond its ends)."""
        return np.interp(z_mm, self.z_mm, self.x_mm), np.interp(z_mm, self.z_mm, self.y_mm)

    def by_name(self, name: str) -> Vertebra:
        return next(v for v in self.vertebrae if v.name == name)


def _endplate_heights(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """z of the superior and inferior endplate of each level (S1 plate at z = 0)."""
    sup = np.empty(len(LEVELS))
    inf = np.empty(len(LEVELS))
    z = 0.0
    for k in reversed(range(len(LEVELS))):
        z += _DISC_BELOW[k] * scale
        inf[k] = z
        z += _HEIGHT[k] * scale
        sup[k] = z
    return sup, inf


def _coronal_controls(p: PhantomParams, sup: np.ndarray, inf: np.ndarray) -> list[tuple[float, float]]:
    """(z, α) control points: each curve's end vertebrae carry ±angle/2 around the value
    they share with the adjacent curve; α returns to 0 at C2 and at the S1 plate."""
    pts = [(0.0, 0.0), (sup[0], 0.0)]
    level_value: float | None = None
    for curve in p.curves:
        u, lo = LEVELS.index(curve.upper), LEVELS.index(curve.lower)
        if level_value is None:
            top = curve.sign * curve.angle_deg / 2.0
        else:
            top = level_value
        bottom = top - curve.sign * curve.angle_deg
        pts += [(sup[u], top), (inf[lo], bottom)]
        level_value = bottom
    return sorted(pts)


@dataclass(frozen=True)
class Segment:
    """Tilt going from ``b0`` at ``z0`` to ``b1`` at ``z1`` (z0 < z1) as b0 + (b1 − b0)·f(u),
    u ∈ [0, 1]: f = u**gamma, or 1 − (1 − u)**gamma when ``early`` (change made low)."""

    z0: float
    z1: float
    b0: float
    b1: float
    gamma: float = 1.0
    early: bool = False

    def shape(self, u: np.ndarray) -> np.ndarray:
        return 1.0 - (1.0 - u) ** self.gamma if self.early else u ** self.gamma


def _profile(z: np.ndarray, segments: list[Segment]) -> np.ndarray:
    """Tilt (deg) at heights ``z``; exact control values at every segment end."""
    out = np.full(np.shape(z), segments[0].b0, dtype=float)
    for seg in segments:
        u = np.clip((np.asarray(z, float) - seg.z0) / (seg.z1 - seg.z0), 0.0, 1.0)
        inside = (np.asarray(z) >= seg.z0) & (np.asarray(z) <= seg.z1)
        out = np.where(inside, seg.b0 + (seg.b1 - seg.b0) * seg.shape(u), out)
    last = segments[-1]
    return np.where(np.asarray(z) > last.z1, last.b1, out)


def _sagittal_segments(p: PhantomParams, sup: np.ndarray, inf: np.ndarray,
                       thoracic_gamma: float, thoracolumbar_deg: float) -> list[Segment]:
    """Sagittal tilt from SS, the L5–S1 wedge, lordosis, kyphosis, cervical lordosis.

    Lordosis is concentrated caudally (most of it at L4–S1) and kyphosis cranially; the
    thoracic exponent is chosen by :func:`build_spine` to keep C7 over the sacrum
    (sagittal balance), together with the thoracolumbar junction angle (T12 inferior vs
    L1 superior), which no reported parameter spans. Only the values at the endplates
    are planted angles.
    """
    i = LEVELS.index
    s1 = -p.sacral_slope_deg
    l5_inf = s1 + p.l5_s1_wedge_deg
    l1_sup = l5_inf + p.lordosis_deg
    t12_inf = l1_sup + thoracolumbar_deg
    t1_sup = t12_inf - p.kyphosis_deg
    c2_sup = t1_sup + p.cervical_lordosis_deg
    return [
        Segment(0.0, inf[i("L5")], s1, l5_inf),
        Segment(inf[i("L5")], sup[i("L1")], l5_inf, l1_sup, 1.8, early=True),
        Segment(sup[i("L1")], inf[i("T12")], l1_sup, t12_inf),
        Segment(inf[i("T12")], sup[i("T1")], t12_inf, t1_sup, thoracic_gamma),
        Segment(sup[i("T1")], sup[i("C2")], t1_sup, c2_sup),
    ]


def _rotations(p: PhantomParams, sup: np.ndarray, inf: np.ndarray) -> np.ndarray:
    """Axial rotation per level: a half sine over each curve (largest at mid-curve),
    scaled by the curve's share of the major Cobb angle, plus per-level jitter."""
    rot = np.asarray(p.rotation_jitter_deg, dtype=float).copy()
    major = max(p.curves[0].angle_deg, 1e-6)
    mid = 0.5 * (sup + inf)
    for k, curve in enumerate(p.curves):
        u, lo = LEVELS.index(curve.upper), LEVELS.index(curve.lower)
        share = curve.angle_deg / major * (1 if k == 0 else -1)
        frac = np.clip((mid - inf[lo]) / (sup[u] - inf[lo]), 0.0, 1.0)
        rot += p.max_rotation_deg * share * np.sin(np.pi * frac)
    return np.clip(rot, -25.0, 25.0)


def _integrate(slope: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.r_[0.0, np.cumsum(0.5 * (slope[1:] + slope[:-1]) * np.diff(z))]


def build_spine(p: PhantomParams) -> Spine:
    s = p.scale
    sup, inf = _endplate_heights(s)
    top = float(sup[0])
    z = np.linspace(0.0, top, int(np.ceil(top / 0.05)) + 1)
    cz, cv = zip(*_coronal_controls(p, sup, inf))
    alpha = np.radians(np.interp(z, cz, cv))
    x = _integrate(np.tan(alpha), z)
    c7 = LEVELS.index("C7")
    # Sagittal balance (C7 over the S1 plate, within the drawn offset): choose the thoracic
    # shape exponent and, if needed, a junctional angle away from the drawn one (a cost of
    # 1 mm per degree of departure keeps it close when balance allows).
    best = None
    for tl in np.r_[p.thoracolumbar_deg, np.linspace(-35.0, 35.0, 29)]:
        for gamma in np.linspace(0.6, 4.0, 18):
            segs = _sagittal_segments(p, sup, inf, float(gamma), float(tl))
            y = _integrate(np.tan(np.radians(_profile(z, segs))), z)
            cost = abs(float(np.interp(0.5 * (sup[c7] + inf[c7]), z, y)) - p.c7_offset_mm) \
                + abs(tl - p.thoracolumbar_deg)
            if best is None or cost < best[0]:
                best = (cost, segs, y, float(tl), float(gamma))
    _, segments, y, thoracolumbar, thoracic_gamma = best

    def point(zq: float) -> np.ndarray:
        return np.array([np.interp(zq, z, x), np.interp(zq, z, y), zq])

    def tangent(zq: float) -> np.ndarray:
        a = np.radians(np.interp(zq, cz, cv))
        b = np.radians(float(_profile(np.array(zq), segments)))
        return unit([np.tan(a), np.tan(b), 1.0])

    rotations = _rotations(p, sup, inf)
    vertebrae = []
    for k, name in enumerate(LEVELS):
        zmid = 0.5 * (sup[k] + inf[k])
        axis = tangent(zmid)
        left0 = unit(np.array([1.0, 0.0, 0.0]) - axis[0] * axis)
        post0 = np.cross(axis, left0)
        phi = np.radians(rotations[k])
        left = np.cos(phi) * left0 + np.sin(phi) * post0
        posterior = -np.sin(phi) * left0 + np.cos(phi) * post0
        body = VertebralBody(
            center=point(zmid), left=left, posterior=posterior,
            half_width=_HALF_WIDTH[k] * s, half_depth=_HALF_DEPTH[k] * s,
            sup_point=point(sup[k]), sup_normal=tangent(sup[k]),
            inf_point=point(inf[k]), inf_normal=tangent(inf[k]),
        )
        vertebrae.append(Vertebra(name, body, float(sup[k]), float(inf[k]), float(rotations[k])))
    return Spine(tuple(vertebrae), np.zeros(3), tangent(0.0), z, x, y,
                 {"thoracolumbar_deg": thoracolumbar, "thoracic_gamma": thoracic_gamma,
                  "c7_offset_mm": float(np.interp(0.5 * (sup[c7] + inf[c7]), z, y))})
