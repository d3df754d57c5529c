"""The "rich" anatomy: what a real CT holds besides bone, so a network learns what is
*not* a vertebral body, a pelvis or a femoral head (issue 17).

Added to the tissue map over the classic soft tissue and under the bones: kidneys,
spleen, aorta with its arch and iliac bifurcation, inferior vena cava, psoas and
paraspinal muscles, bowel loops with gas, bladder, skin, a sternum, at times a patient
table, surgical clips and a stent wire. Each of them gets its own tissue code, so a
renderer can make the aorta, the kidneys or the bowel brighter than bone (contrast), as
real CTs do. Positions follow the spine and the trunk outline, so they move with the
curve and the sagittal balance; sizes are plausible adult values, not a population model.
Drawn from its own random stream: the classic phantom stays as it was.
"""

from __future__ import annotations

import numpy as np

from appliance.phantom.body import Outline
from appliance.phantom.params import PhantomParams
from appliance.phantom.raster import Grid, paint_shape
from appliance.phantom.shapes import Capsule, Ellipsoid, Shape
from appliance.phantom.skeleton import Skeleton
from appliance.phantom.spine import Spine
from appliance.phantom.tissues import Tissue

#: Probability that a study has a patient table behind the back (diagnostic CT).
P_TABLE = 0.5
#: Probability of a stent wire along the abdominal aorta.
P_STENT = 0.25
#: Surgical clips per study (uniform, inclusive).
CLIPS = (0, 4)


def _tube(points: list[np.ndarray], radius: float) -> list[Shape]:
    return [Capsule(a, b, radius) for a, b in zip(points[:-1], points[1:])]


def _paint(tissues: np.ndarray, grid: Grid, shapes: list[Shape], code: Tissue) -> None:
    for shape in shapes:
        paint_shape(tissues, None, grid, shape, code, code, 0.0)


def _front(spine: Spine, z: float, ahead_mm: float, left_mm: float) -> np.ndarray:
    """A point ``ahead_mm`` in front of (−y) and ``left_mm`` left of (+x) the spine at ``z``."""
    sx, sy = spine.centre_at(np.array([z]))
    return np.array([float(sx[0]) + left_mm, float(sy[0]) - ahead_mm, z])


def paint_rich_soft_tissue(tissues: np.ndarray, grid: Grid, spine: Spine, skel: Skeleton,
                           ol: Outline, p: PhantomParams, rng: np.random.Generator) -> list[Shape]:
    """Paint the organs, vessels and muscles; returns the extra *bones* (sternum) and
    metal, which the caller paints after them (bone codes over soft tissue)."""
    g = p.scale * p.girth
    names = {v.name: v for v in spine.vertebrae}
    zc = {n: float(v.body.center[2]) for n, v in names.items()}
    z_axis = grid.axis_mm(2)
    hip_z = float(skel.hip_center_mm[2])
    depth = float(names["L1"].body.half_depth)

    def trunk_at(zq: float) -> tuple[float, float, float, float]:
        return tuple(float(np.interp(zq, z_axis, arr)) for arr in (ol.cx, ol.cy, ol.a, ol.b))  # type: ignore

    # Skin: the outer 1.5-3 mm of the trunk.
    skin = float(rng.uniform(1.5, 3.0))
    x = grid.axis_mm(0)[None, :]
    y = grid.axis_mm(1)[:, None]
    for k in np.flatnonzero(ol.trunk):
        rho = np.sqrt(((x - ol.cx[k]) / ol.a[k]) ** 2 + ((y - ol.cy[k]) / ol.b[k]) ** 2)
        tissues[k][(rho <= 1.0) & (rho > 1.0 - skin / min(ol.a[k], ol.b[k]))] = Tissue.SKIN

    # Muscles: paraspinal behind the column, psoas from T12 to the pelvis.
    para = []
    for side in (-1, 1):
        pts = [_front(spine, zc[n], -(depth + 38.0 * p.scale), side * 28.0 * p.scale)
               for n in ("T1", "T6", "T12", "L3", "L5")]
        para += _tube(pts, float(rng.uniform(17.0, 24.0)) * g)
    _paint(tissues, grid, para, Tissue.MUSCLE)
    psoas = []
    for side in (-1, 1):
        pts = [_front(spine, zc["T12"], 0.0, side * 22.0 * p.scale),
               _front(spine, zc["L3"], 5.0, side * 38.0 * p.scale),
               _front(spine, hip_z + 30.0, 25.0, side * 62.0 * p.scale)]
        psoas += _tube(pts, float(rng.uniform(12.0, 20.0)) * g)
    _paint(tissues, grid, psoas, Tissue.MUSCLE)

    # Kidneys at L1-L2, spleen on the left at T11-L1.
    eye = np.eye(3)
    for side in (-1, 1):
        zk = zc["L1"] + (8.0 if side < 0 else 0.0) * p.scale - 10.0  # the right one sits lower
        centre = _front(spine, zk, -5.0, side * float(rng.uniform(55.0, 75.0)) * p.scale)
        axes = np.array([rng.uniform(22.0, 30.0), rng.uniform(26.0, 34.0), rng.uniform(45.0, 60.0)]) * p.scale
        _paint(tissues, grid, [Ellipsoid(centre, eye, axes)], Tissue.KIDNEY)
    cx, cy, a, b = trunk_at(zc["T12"])
    spleen = Ellipsoid(np.array([cx + 0.55 * a, cy + 0.1 * b, zc["T12"]]), eye,
                       np.array([0.16 * a, 0.3 * b, float(rng.uniform(40.0, 60.0))]))
    _paint(tissues, grid, [spleen], Tissue.SPLEEN)

    # Bladder in front of the sacrum, bowel loops with gas in the abdomen.
    cx, cy, a, b = trunk_at(hip_z + 25.0)
    bladder = Ellipsoid(np.array([cx, cy - 0.55 * b, hip_z + 25.0]), eye,
                        np.array(rng.uniform(25.0, 45.0, 3)) * np.array([1.2, 0.9, 0.8]) * g)
    _paint(tissues, grid, [bladder], Tissue.BLADDER)
    lo, hi = hip_z + 50.0, zc["L1"]
    for _ in range(int(rng.integers(2, 5))):  # loops: random walks of short tubes
        z0 = float(rng.uniform(lo, hi))
        cx, cy, a, b = trunk_at(z0)
        pt = np.array([cx + rng.uniform(-0.5, 0.5) * a, cy - rng.uniform(0.3, 0.7) * b, z0])
        pts = [pt]
        for _ in range(int(rng.integers(4, 9))):
            pt = pt + rng.normal(0.0, 25.0, 3)
            pts.append(pt)
        loop = _tube(pts, float(rng.uniform(10.0, 18.0)) * g)
        _paint(tissues, grid, loop, Tissue.BOWEL)
        for q in pts[1::2]:
            if rng.random() < 0.5:
                _paint(tissues, grid, [Ellipsoid(q, eye, np.full(3, rng.uniform(5.0, 12.0)))], Tissue.GAS)

    # Aorta: arch over T4, down in front-left of the column, iliac bifurcation at L4.
    r_ao = float(rng.uniform(10.0, 14.0)) * p.scale
    ahead = depth + r_ao + 4.0
    desc = [_front(spine, zc[n], ahead, 12.0 * p.scale) for n in ("T4", "T8", "T12", "L2", "L4")]
    arch_top = _front(spine, zc["T3"] + 15.0, ahead + 25.0 * p.scale, 0.0)
    ascending = _front(spine, zc["T6"], ahead + 55.0 * p.scale, -10.0 * p.scale)
    aorta = _tube([ascending, arch_top, *desc], r_ao)
    for side in (-1, 1):  # common iliac arteries
        aorta += _tube([desc[-1], _front(spine, hip_z + 40.0, 30.0, side * 55.0 * p.scale)], 0.6 * r_ao)
    _paint(tissues, grid, aorta, Tissue.AORTA)
    r_cava = float(rng.uniform(9.0, 13.0)) * p.scale
    cava = [_front(spine, zc[n], depth + r_cava + 2.0, -22.0 * p.scale) for n in ("L4", "L1", "T11")]
    _paint(tissues, grid, _tube(cava, r_cava), Tissue.VENA_CAVA)

    # Table: a slab behind the back over the whole length, for diagnostic-CT look-alikes.
    if rng.random() < P_TABLE:
        gap, thick = float(rng.uniform(0.0, 15.0)), float(rng.uniform(8.0, 20.0))
        back = float(np.max(ol.cy[ol.trunk] + ol.b[ol.trunk])) if ol.trunk.any() else float(y.max())
        y_axis = grid.axis_mm(1)
        rows = (y_axis >= back + gap) & (y_axis <= back + gap + thick)
        tissues[:, rows, :] = np.where(tissues[:, rows, :] == Tissue.AIR, np.uint8(Tissue.TABLE),
                                       tissues[:, rows, :])

    extra: list[Shape] = []
    # Sternum: a flat bar in the front chest wall from T2 to T9.
    top, bottom = trunk_at(zc["T2"]), trunk_at(zc["T9"])
    extra.append(Capsule(np.array([top[0], top[1] - 0.85 * top[3], zc["T2"]]),
                         np.array([bottom[0], bottom[1] - 0.85 * bottom[3], zc["T9"]]), 8.0 * p.scale))
    return extra


def metal(spine: Spine, ol: Outline, grid: Grid, p: PhantomParams, rng: np.random.Generator) -> list[Shape]:
    """Surgical clips in the abdomen and, at times, a stent wire along the aorta."""
    names = {v.name: v for v in spine.vertebrae}
    z_axis = grid.axis_mm(2)
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(CLIPS[0], CLIPS[1] + 1))):
        z = float(rng.uniform(names["L5"].body.center[2], names["T10"].body.center[2]))
        cx, cy, a, b = (float(np.interp(z, z_axis, arr)) for arr in (ol.cx, ol.cy, ol.a, ol.b))
        c = np.array([cx + rng.uniform(-0.6, 0.6) * a, cy - rng.uniform(0.2, 0.8) * b, z])
        d = rng.normal(0.0, 1.0, 3)
        d *= float(rng.uniform(2.5, 5.0)) / float(np.linalg.norm(d))
        shapes.append(Capsule(c - d, c + d, float(rng.uniform(0.8, 1.5))))
    if rng.random() < P_STENT:
        depth = float(names["L1"].body.half_depth)
        pts = [_front(spine, float(names[n].body.center[2]), depth + 14.0, 12.0 * p.scale + 11.0)
               for n in ("T12", "L2", "L4")]
        shapes += _tube(pts, 1.0)
    return shapes
