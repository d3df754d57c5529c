"""The rest of the skeleton: discs, posterior elements, ribs, pelvis, femora, humeri.

Only vertebral bodies, the pelvis (with sacrum) and the femoral heads are labelled, as
in JoVE 67781; everything else here is bone or disc in the *image* only, so a network
must learn to leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.labels import LEVELS
from appliance.phantom.params import PhantomParams
from appliance.phantom.shapes import (
    Capsule,
    Clipped,
    CupShell,
    Shape,
    Slab,
    Sphere,
    VertebralBody,
    unit,
)
from appliance.phantom.spine import Spine

X = np.array([1.0, 0.0, 0.0])
Y = np.array([0.0, 1.0, 0.0])
Z = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class FemoralHead:
    side: str  # "left" (+x) or "right"
    sphere: Sphere


@dataclass(frozen=True)
class Skeleton:
    discs: tuple[Shape, ...]
    unlabelled_bone: tuple[Shape, ...]  # posterior elements, ribs, femoral necks/shafts, humeri
    pelvis: tuple[Shape, ...]
    heads: tuple[FemoralHead, ...]
    hip_center_mm: np.ndarray
    ischium_z_mm: float
    femoral_shafts: tuple[Capsule, ...]
    humeri: tuple[Capsule, ...]


def discs(spine: Spine) -> list[Shape]:
    """Each disc fills the gap between the inferior endplate above and the superior below."""
    out: list[Shape] = []
    bodies = [v.body for v in spine.vertebrae]
    for upper, lower in zip(bodies[:-1], bodies[1:]):
        out.append(_disc(upper, lower.sup_point, lower.sup_normal, lower))
    l5 = bodies[-1]
    out.append(_disc(l5, spine.s1_center_mm, spine.s1_normal, l5))
    return out


def _disc(upper: VertebralBody, low_point, low_normal, lower: VertebralBody) -> VertebralBody:
    return VertebralBody(
        center=0.5 * (upper.inf_point + low_point), left=upper.left, posterior=upper.posterior,
        half_width=0.5 * (upper.half_width + lower.half_width) * 1.02,
        half_depth=0.5 * (upper.half_depth + lower.half_depth) * 1.02,
        sup_point=upper.inf_point, sup_normal=upper.inf_normal,
        inf_point=low_point, inf_normal=low_normal, notch=True,
    )


def posterior_elements(spine: Spine, scale: float) -> list[Shape]:
    """Pedicles, laminae, spinous and transverse processes of every vertebra."""
    out: list[Shape] = []
    for v in spine.vertebrae:
        b = v.body
        cervical = v.name.startswith("C")
        canal = (8.0 if cervical else 9.0 if v.name.startswith("T") else 11.0) * scale
        r = (2.5 if cervical else 3.5 if v.name.startswith("T") else 4.5) * scale
        axis = unit(np.cross(b.left, b.posterior))
        roots = [b.center + side * 0.55 * b.half_width * b.left + 0.75 * b.half_depth * b.posterior
                 for side in (-1, 1)]
        ends = [root + (0.5 * b.half_depth + canal) * b.posterior for root in roots]
        arch = b.center + (b.half_depth + 2.0 * canal) * b.posterior
        out += [Capsule(roots[k], ends[k], r) for k in range(2)]
        out += [Capsule(ends[k], arch, r * 0.9) for k in range(2)]
        spinous = arch + (18.0 if cervical else 30.0) * scale * unit(b.posterior - 0.6 * axis)
        out.append(Capsule(arch, spinous, r * 1.1))
        span = (b.half_width + (12.0 if cervical else 20.0) * scale)
        for k, side in enumerate((-1, 1)):
            tip = ends[k] + side * span * b.left - 4.0 * scale * b.posterior
            out.append(Capsule(ends[k], tip, r * 0.9))
    return out


def ribs(spine: Spine, p: PhantomParams) -> list[Shape]:
    """Twelve pairs of ribs: elliptic arcs from the transverse processes, sloping down."""
    out: list[Shape] = []
    s = p.scale
    for v in spine.vertebrae:
        if not v.name.startswith("T"):
            continue
        k = LEVELS.index(v.name) - LEVELS.index("T1")
        b = v.body
        lateral = (60.0 + 60.0 * np.sin(np.pi * (k + 2) / 16.0)) * s * p.girth
        depth = (55.0 + 40.0 * np.sin(np.pi * (k + 2) / 16.0)) * s * p.girth
        start_y = b.center[1] + b.half_depth + 12.0 * s
        centre = np.array([b.center[0], start_y - depth, b.center[2]])
        reach = np.radians(150.0 if k < 9 else 95.0 - 15.0 * (k - 9))
        for side in (-1, 1):
            angles = np.linspace(0.0, reach, 7)
            pts = [centre + np.array([side * lateral * np.sin(a), depth * np.cos(a), -35.0 * s * a / np.pi])
                   for a in angles]
            out += [Capsule(a, b2, 4.0 * s) for a, b2 in zip(pts[:-1], pts[1:])]
    return out


def pelvis_and_femora(spine: Spine, p: PhantomParams) -> tuple[list[Shape], list[FemoralHead],
                                                                 np.ndarray, list[Shape], float,
                                                                 list[Capsule]]:
    """Sacrum, iliac wings, acetabula, pubic and ischial rami (label 2); femoral heads
    (label 3) placed from PI and PT; femoral necks, trochanters and shafts (unlabelled).

    Hip-axis centre H = S + D·(0, −sin PT, −cos PT) with S the S1 plate centre, so the
    planted pelvic tilt is exact; the S1 plate normal makes the sacral slope SS = PI − PT.
    """
    s = p.scale
    S, n = spine.s1_center_mm, spine.s1_normal
    down = -n  # from the plate into the sacrum
    post = unit(np.cross(X, down))  # in the plate, pointing posteriorly
    if post[1] < 0:
        post = -post
    pt = np.radians(p.pelvic_tilt_deg)
    hip = S + 100.0 * s * np.array([0.0, -np.sin(pt), -np.cos(pt)])
    radius = 23.5 * s
    gap = 2.5 * s
    heads = [FemoralHead(name, Sphere(hip + side * 88.0 * s * X, radius))
             for name, side in (("right", -1), ("left", 1))]

    plate_cut = (S, n)  # nothing of the sacrum rises above the S1 plate
    s1 = VertebralBody(center=S + 14.0 * s * down, left=X, posterior=post, half_width=25.0 * s,
                       half_depth=17.0 * s, sup_point=S, sup_normal=n,
                       inf_point=S + 28.0 * s * down, inf_normal=n, notch=False)
    pelvis: list[Shape] = [s1]
    chain = [S + (20.0 + 18.0 * k) * s * down + 1.6 * k * k * s * post for k in range(6)]
    radii = np.linspace(17.0, 6.0, 6) * s
    pelvis += [Capsule(a, b, r) for a, b, r in zip(chain[:-1], chain[1:], radii[1:])]
    for side in (-1, 1):
        si = S + 22.0 * s * down + side * 50.0 * s * X + 8.0 * s * post
        pelvis.append(Clipped(Capsule(S + 12.0 * s * down + side * 15.0 * s * X, si, 14.0 * s), *plate_cut))
        flare = unit(side * 0.55 * X - 0.8 * Y)
        wing_c = si + 35.0 * s * flare + 32.0 * s * Z
        pelvis.append(Slab(wing_c, unit(np.cross(Z, flare)), flare, Z, 55.0 * s, 48.0 * s, 4.5 * s))
        head_c = hip + side * 88.0 * s * X
        pole = unit(-side * 0.55 * X + 0.8 * Z + 0.2 * Y)
        cup_outer = radius + gap + 6.0 * s
        pelvis.append(CupShell(head_c, radius + gap, cup_outer, pole))
        roof = head_c + pole * (cup_outer - 2.0 * s)
        pelvis.append(Capsule(wing_c - 40.0 * s * Z, roof, 13.0 * s))
        pelvis.append(Capsule(si, wing_c - 30.0 * s * Z, 12.0 * s))
        symphysis = np.array([0.0, hip[1] - 45.0 * s, hip[2] - 22.0 * s])
        pubic_root = head_c + cup_outer * unit(-side * 0.5 * X - 0.7 * Y - 0.2 * Z)
        pelvis.append(Capsule(pubic_root, symphysis + side * 4.0 * s * X, 8.5 * s))
        ischial_root = head_c + cup_outer * unit(-side * 0.2 * X + 0.5 * Y - 0.8 * Z)
        tuber = head_c + np.array([-side * 12.0, 18.0, -58.0]) * s
        pelvis.append(Capsule(ischial_root, tuber, 11.0 * s))
        pelvis.append(Capsule(tuber, symphysis + np.array([side * 6.0, 0.0, -14.0]) * s, 6.5 * s))

    femora: list[Shape] = []
    shafts: list[Capsule] = []
    for side in (-1, 1):
        head_c = hip + side * 88.0 * s * X
        neck_dir = unit(side * 0.8 * X - 0.55 * Z - 0.1 * Y)
        trochanter = head_c + 52.0 * s * neck_dir
        femora.append(Capsule(head_c, trochanter, 14.0 * s))
        femora.append(Sphere(trochanter + side * 8.0 * s * X + 8.0 * s * Z, 17.0 * s))
        shaft = Capsule(trochanter, trochanter + np.array([-side * 25.0, 5.0, -420.0]) * s, 13.5 * s)
        femora.append(shaft)
        shafts.append(shaft)
    ischium_z = float(hip[2] - 58.0 * s)
    return pelvis, heads, hip, femora, ischium_z, shafts


def humeri(spine: Spine, p: PhantomParams) -> list[Capsule]:
    """Arms raised beside the head (the patient holds an overhead support)."""
    t1 = spine.by_name("T1").body
    out: list[Capsule] = []
    for side in (-1, 1):
        base = t1.center + np.array([side * 95.0, -10.0, 10.0]) * p.scale * p.girth
        out.append(Capsule(base, base + np.array([side * 15.0, -5.0, 300.0]) * p.scale, 11.0 * p.scale))
    return out


def build_skeleton(spine: Spine, p: PhantomParams) -> Skeleton:
    pelvis, heads, hip, femora, ischium_z, shafts = pelvis_and_femora(spine, p)
    arms = humeri(spine, p)
    bone = posterior_elements(spine, p.scale) + ribs(spine, p) + femora + arms
    return Skeleton(tuple(discs(spine)), tuple(bone), tuple(pelvis), tuple(heads), hip, ischium_z,
                    tuple(shafts), tuple(arms))
