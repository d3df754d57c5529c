"""Ground truth of a phantom, computed from the planted geometry with the project's
definitions (:mod:`appliance.measure.definitions`).

The keys match the measurements JSON (``wbspine.measurements/1``) so a measurement can
be compared with its truth key by key; truth adds what only a generator knows
(planted parameters, plane points, body axes, voxel counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.measure import definitions as d
from appliance.phantom.params import PhantomParams
from appliance.phantom.skeleton import Skeleton
from appliance.phantom.spine import Spine

TRUTH_SCHEMA = "wbspine.phantom-truth/1"


@dataclass(frozen=True)
class BodyStats:
    """What the rasteriser measured of one body's voxels."""

    centroid_mm: np.ndarray
    voxels: int


def _r(v, nd: int = 6):
    return [round(float(x), nd) for x in np.asarray(v).ravel()]


def compute_truth(p: PhantomParams, spine: Spine, skel: Skeleton, stats: dict[str, BodyStats]) -> dict:
    verts = spine.vertebrae
    names = [v.name for v in verts]
    by = {v.name: v.body for v in verts}
    sup = [d.coronal_tilt_deg(v.body.sup_normal) for v in verts]
    inf = [d.coronal_tilt_deg(v.body.inf_normal) for v in verts]
    centroids = np.array([stats[n].centroid_mm for n in names])
    curves = d.coronal_curves(names, sup, inf, centroids)
    heads = {h.side: h.sphere for h in skel.heads}
    hip_c = 0.5 * (heads["left"].center + heads["right"].center)
    hip_left = heads["left"].center - heads["right"].center
    s1_c, s1_n = spine.s1_center_mm, spine.s1_normal
    return {
        "schema": TRUTH_SCHEMA,
        "generator": "wbspine phantom",
        "seed": p.seed,
        "size": p.size,
        "cobb": curves[0].as_dict(),
        "curves": [c.as_dict() for c in curves],
        "thoracic_kyphosis_deg": d.kyphosis_deg(by["T1"].sup_normal, by["T12"].inf_normal),
        "thoracic_kyphosis_t4_t12_deg": d.kyphosis_deg(by["T4"].sup_normal, by["T12"].inf_normal),
        "lumbar_lordosis_deg": d.lordosis_deg(by["L1"].sup_normal, by["L5"].inf_normal),
        "lumbar_lordosis_l1_s1_deg": d.lordosis_deg(by["L1"].sup_normal, s1_n),
        "sacral_slope_deg": d.sacral_slope_deg(s1_n),
        "pelvic_tilt_deg": d.pelvic_tilt_deg(s1_c, hip_c),
        "pelvic_incidence_deg": d.pelvic_incidence_deg(s1_c, s1_n, hip_c),
        "vertebral_rotation_deg": {v.name: d.axial_rotation_deg(v.body.left, hip_left) for v in verts},
        "vertebrae": [
            {
                "name": v.name,
                "centroid_mm": _r(stats[v.name].centroid_mm, 3),
                "superior_normal": _r(v.body.sup_normal),
                "inferior_normal": _r(v.body.inf_normal),
                "superior_point_mm": _r(v.body.sup_point, 3),
                "inferior_point_mm": _r(v.body.inf_point, 3),
                "superior_coronal_tilt_deg": sup[k],
                "inferior_coronal_tilt_deg": inf[k],
                "left_axis": _r(v.body.left),
                "half_width_mm": v.body.half_width,
                "half_depth_mm": v.body.half_depth,
                "planted_rotation_deg": v.rotation_deg,
                "voxels": stats[v.name].voxels,
            }
            for k, v in enumerate(verts)
        ],
        "femoral_heads": [
            {"side": side, "center_mm": _r(heads[side].center, 3), "radius_mm": heads[side].radius}
            for side in ("right", "left")
        ],
        "s1_plate": {"center_mm": _r(s1_c, 3), "normal": _r(s1_n)},
        "hip_axis": {"center_mm": _r(hip_c, 3), "left_direction": _r(hip_left / np.linalg.norm(hip_left))},
        "planted": p.as_dict(),
        "sagittal_balance": spine.balance,
        "definitions": "appliance.measure.definitions (LPS mm; endplate normals point superiorly)",
        "warnings": [],
    }
