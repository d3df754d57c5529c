"""Soft tissue around the skeleton: trunk outline, fat layer, lungs, heart, liver,
bowel gas, neck, raised arms and thighs, painted as tissue codes
(:class:`appliance.phantom.tissues.Tissue`) into the phantom's tissue map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.phantom.params import PhantomParams
from appliance.phantom.raster import Grid, paint_shape
from appliance.phantom.shapes import Capsule, Ellipsoid, Sphere
from appliance.phantom.skeleton import Skeleton
from appliance.phantom.spine import Spine
from appliance.phantom.tissues import Tissue


@dataclass(frozen=True)
class Outline:
    """Per-slice trunk ellipse (centre, semi-axes) in mm; ``trunk`` False below the buttocks."""

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    trunk: np.ndarray


def outline(spine: Spine, skel: Skeleton, p: PhantomParams, z_mm: np.ndarray) -> Outline:
    g = p.scale * p.girth
    names = {v.name: v for v in spine.vertebrae}
    hip_z = float(skel.hip_center_mm[2])
    ctrl_z = [hip_z, 60.0 * p.scale, names["L2"].body.center[2], names["T12"].body.center[2],
              names["T6"].body.center[2], names["T1"].body.center[2], names["C7"].superior_z_mm,
              names["C7"].superior_z_mm + 25.0]
    ctrl_a = np.array([165, 150, 138, 152, 160, 150, 60, 58]) * g
    ctrl_b = np.array([112, 112, 112, 108, 105, 92, 60, 58]) * g
    back = np.array([80, 78, 75, 68, 62, 55, 48, 45]) * g
    a = np.interp(z_mm, ctrl_z, ctrl_a)
    b = np.interp(z_mm, ctrl_z, ctrl_b)
    sx, sy = spine.centre_at(z_mm)
    cy = sy + np.interp(z_mm, ctrl_z, back) - b
    cx = 0.5 * sx
    return Outline(cx, cy, a, b, z_mm > skel.ischium_z_mm + 10.0 * p.scale)


def paint_soft_tissue(tissues: np.ndarray, grid: Grid, spine: Spine, skel: Skeleton,
                      p: PhantomParams, rng: np.random.Generator) -> Outline:
    """Fill the tissue map (initialised to air) with the body; returns the trunk outline."""
    z = grid.axis_mm(2)
    x = grid.axis_mm(0)[None, :]
    y = grid.axis_mm(1)[:, None]
    ol = outline(spine, skel, p, z)
    g = p.scale * p.girth
    for k in range(len(z)):
        if ol.trunk[k]:
            rho = np.sqrt(((x - ol.cx[k]) / ol.a[k]) ** 2 + ((y - ol.cy[k]) / ol.b[k]) ** 2)
            fat_rho = 1.0 - p.fat_thickness_mm * p.girth / min(ol.a[k], ol.b[k])
        else:  # thighs around the femoral shafts
            rho = np.full((len(y), len(x)), np.inf)
            for shaft in skel.femoral_shafts:
                t = (z[k] - shaft.a[2]) / (shaft.b[2] - shaft.a[2])
                c = shaft.a + np.clip(t, 0, 1) * (shaft.b - shaft.a)
                rho = np.minimum(rho, np.sqrt((x - c[0]) ** 2 + (y - c[1] + 5.0 * g) ** 2) / (80.0 * g))
            fat_rho = 1.0 - p.fat_thickness_mm * p.girth / (80.0 * g)
        sl = tissues[k]
        sl[rho <= 1.0] = Tissue.FAT
        sl[rho <= fat_rho] = Tissue.SOFT
    _organs(tissues, grid, spine, ol, p, rng)
    for arm_bone in skel.humeri:  # raised arms: soft tissue around each humerus
        arm = Capsule(arm_bone.a, arm_bone.b, 42.0 * g)
        paint_shape(tissues, None, grid, arm, Tissue.SOFT, Tissue.SOFT, 0.0)
    return ol


def _organs(tissues: np.ndarray, grid: Grid, spine: Spine, ol: Outline, p: PhantomParams,
            rng: np.random.Generator) -> None:
    names = {v.name: v for v in spine.vertebrae}
    z = grid.axis_mm(2)

    def at(zq: float) -> tuple[float, float, float, float]:
        return tuple(float(np.interp(zq, z, arr)) for arr in (ol.cx, ol.cy, ol.a, ol.b))  # type: ignore

    top, bottom = names["T1"].superior_z_mm + 15.0, names["T11"].body.center[2]
    zc = 0.5 * (top + bottom)
    cx, cy, a, b = at(zc)
    eye = np.eye(3)
    for side in (-1, 1):
        lung = Ellipsoid(np.array([cx + side * 0.47 * a, cy + 0.08 * b, zc]), eye,
                         np.array([0.36 * a, 0.72 * b, 0.5 * (top - bottom)]))
        paint_shape(tissues, None, grid, lung, Tissue.LUNG, Tissue.LUNG, 0.0)
    hz = names["T8"].body.center[2]
    cx, cy, a, b = at(hz)
    heart = Ellipsoid(np.array([cx + 0.12 * a, cy - 0.35 * b, hz]), eye, np.array([0.3 * a, 0.38 * b, 55.0]))
    paint_shape(tissues, None, grid, heart, Tissue.HEART, Tissue.HEART, 0.0)
    lz = names["T12"].body.center[2]
    cx, cy, a, b = at(lz)
    liver = Ellipsoid(np.array([cx - 0.35 * a, cy - 0.1 * b, lz]), eye, np.array([0.45 * a, 0.6 * b, 70.0]))
    paint_shape(tissues, None, grid, liver, Tissue.LIVER, Tissue.LIVER, 0.0)
    lo, hi = 30.0 * p.scale, names["L1"].body.center[2]
    for _ in range(p.gas_pockets):
        gz = float(rng.uniform(lo, hi))
        cx, cy, a, b = at(gz)
        centre = np.array([cx + rng.uniform(-0.6, 0.6) * a, cy - rng.uniform(0.2, 0.7) * b, gz])
        paint_shape(tissues, None, grid, Sphere(centre, float(rng.uniform(6.0, 22.0))), Tissue.GAS, Tissue.GAS,
                    0.0)
