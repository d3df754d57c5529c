"""How much of each angle a label map holds at all (run by hand, not in CI).

    PYTHONPATH=. python tests/benchmarks/bench_measure_limit.py [--studies 20] [--size small] [--json out.json]

For each phantom of ``bench_measure.py`` (same planted values) and each endplate that
enters a sagittal parameter (T1, T4 superior; T12, L5 inferior; L1 superior; the S1
plate), every other surface is kept as planted and the question is which planes could
replace that plate and leave the rasterised label map bit for bit the same. A voxel is
bone when its centre is inside, so each voxel the plate decides is one linear
constraint on the plane, and the sagittal tilt range of all such planes (any
orientation, any offset) is two linear programs: an exact interval. Any two phantoms
whose plates lie in it give ``measure`` the same input, so no method can be closer than
half the interval's width to both. For an angle between two plates (kyphosis, lordosis)
the bound is half the sum of both widths; for the sacral slope and pelvic incidence,
half the S1 plate's width. Axial rotation: each body turned about its own axis (a
search in 0.05° steps, centre fixed, so a lower bound). Also printed: ``measure``'s
error on the study itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from scipy.optimize import linprog

from appliance.measure.api import measure
from appliance.phantom.generate import _grid
from appliance.phantom.params import draw_params
from appliance.phantom.shapes import Clipped, VertebralBody
from appliance.phantom.skeleton import build_skeleton
from appliance.phantom.spine import build_spine

from appliance.phantom import generate_study
from bench_measure import overrides  # the script's own folder is on sys.path

STEP_DEG = 0.05
SEARCH_DEG = 20.0
PLATES = [("T1", "sup"), ("T4", "sup"), ("T12", "inf"), ("L1", "sup"), ("L5", "inf"), ("S1", "plate")]
ANGLES = {  # key: (the plates it is measured between, measurement key)
    "TK": ((("T1", "sup"), ("T12", "inf")), "thoracic_kyphosis_deg"),
    "TK4": ((("T4", "sup"), ("T12", "inf")), "thoracic_kyphosis_t4_t12_deg"),
    "LL": ((("L1", "sup"), ("L5", "inf")), "lumbar_lordosis_deg"),
    "LLS1": ((("L1", "sup"), ("S1", "plate")), "lumbar_lordosis_l1_s1_deg"),
    "SS": ((("S1", "plate"),), "sacral_slope_deg"),
    "PI": ((("S1", "plate"),), "pelvic_incidence_deg"),
}


def _tilt_range(pts: np.ndarray, inside: np.ndarray, inside_is_below: bool) -> tuple[float, float]:
    """Sagittal tilt range (degrees) of all planes z-normalised as n = (a, b, 1) that put
    exactly the ``inside`` points on the inside (below the plane when
    ``inside_is_below``, as for a superior endplate) — one linear program per end."""
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    sign = np.where(inside == inside_is_below, 1.0, -1.0)  # +1: need a·x + b·y + z − d < 0
    # sign·(a·x + b·y − d) ≤ −sign·z − tiny (strict side for the rasteriser's "sdf < 0")
    a_ub = sign[:, None] * np.c_[x, y, -np.ones_like(x)]
    b_ub = -sign * z - np.where(sign > 0, 1e-7, 0.0)
    ends = []
    for goal in (1.0, -1.0):
        res = linprog([0.0, goal, 0.0], A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * 3, method="highs")
        if not res.success:
            raise RuntimeError(f"no plane reproduces the map: {res.message}")
        ends.append(float(np.degrees(np.arctan(res.x[1]))))
    return min(ends), max(ends)


def _points(grid, lo_mm, hi_mm) -> np.ndarray:
    """(n, 3) LPS mm of the voxel centres in the box."""
    _, (x, y, z) = grid.box(lo_mm, hi_mm)
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1).reshape(-1, 3)


def plate_intervals(seed: int, size: str, pins: dict) -> dict:
    """For each plate of ``PLATES``: the sagittal tilt range, relative to the planted
    tilt, of every plane (any orientation, any offset) that leaves the label map as it
    is with all other surfaces fixed; and the same for each body's axial rotation."""
    p = draw_params(seed, size, **pins)
    spine = build_spine(p)
    skel = build_skeleton(spine, p)
    grid, _ = _grid(p, spine, skel)
    out = {}
    for name, side in PLATES:
        if name == "S1":
            s_pt, n0 = spine.s1_center_mm, spine.s1_normal
            los, his = zip(*(sh.bbox_mm() for sh in skel.pelvis))
            pts = _points(grid, np.min(los, axis=0), np.max(his, axis=0))
            coords = (pts[:, 0], pts[:, 1], pts[:, 2])
            other = np.zeros(len(pts), bool)  # in a pelvis part the plate does not cut
            rest = np.zeros(len(pts), bool)  # in a part the plate cuts, but for the plate
            for sh in skel.pelvis:
                if isinstance(sh, VertebralBody) and np.allclose(sh.sup_point, s_pt):
                    free = dataclasses.replace(sh, sup_point=sh.sup_point + 1e6 * sh.sup_normal)
                    rest |= free.sdf(coords) < 0
                elif isinstance(sh, Clipped) and np.allclose(sh.point, s_pt):
                    rest |= sh.shape.sdf(coords) < 0
                else:
                    other |= sh.sdf(coords) < 0
            use = rest & ~other
            p0, inside, below_is_inside = s_pt, (pts[use] - s_pt) @ n0 < 0, True
        else:
            body = spine.by_name(name).body
            key = "sup" if side == "sup" else "inf"
            n0, p0 = getattr(body, f"{key}_normal"), getattr(body, f"{key}_point")
            blo, bhi = body.bbox_mm()
            pts = _points(grid, blo - 3.0, bhi + 3.0)
            far = 1e6 * n0 if key == "sup" else -1e6 * n0  # the plate moved out of the way
            free = dataclasses.replace(body, **{f"{key}_point": p0 + far})
            use = free.sdf((pts[:, 0], pts[:, 1], pts[:, 2])) < 0
            d = (pts[use] - p0) @ n0
            below_is_inside = key == "sup"
            inside = d < 0 if below_is_inside else d > 0
        lo, hi = _tilt_range(pts[use] - p0, inside, inside_is_below=below_is_inside)
        t0 = np.degrees(np.arctan2(n0[1], n0[2]))
        out[f"{name} {side}"] = (lo - t0, hi - t0)
    for v in spine.vertebrae:  # axial rotation: the whole body turned about its own axis
        if v.name.startswith("C"):
            continue
        b = v.body
        lo, hi = b.bbox_mm()
        box = grid.box(lo - 3.0, hi + 3.0)
        axis = np.cross(b.left, b.posterior)

        def raster_rot(deg, b=b, box=box, axis=axis):
            a = np.radians(deg)
            left = np.cos(a) * b.left + np.sin(a) * np.cross(axis, b.left)
            return dataclasses.replace(b, left=left, posterior=np.cross(axis, left)).sdf(box[1]) < 0

        ref = raster_rot(0.0)
        ends = []
        for sign in (-1.0, 1.0):
            deg = 0.0
            while deg < SEARCH_DEG and np.array_equal(raster_rot(sign * (deg + STEP_DEG)), ref):
                deg += STEP_DEG
            ends.append(sign * deg)
        out[f"{v.name} rotation"] = (ends[0], ends[1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--size", choices=("small", "full"), default="small")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    print("seed  " + "  ".join(f"{k:>12}" for k in ANGLES) + f"  {'rotation':>20}   (bound, |error|; rotation: bound, level, worst error)")
    for i in range(args.studies):
        pins = overrides(i, args.studies)
        study = generate_study(i, args.size, **pins)
        m = measure(study.labels.array, study.labels.affine)
        iv = plate_intervals(i, args.size, pins)
        row = {"seed": i, "intervals": iv, "angles": {}}
        cells = []
        for k, (plates, key) in ANGLES.items():
            widths = [iv[f"{n} {s}"][1] - iv[f"{n} {s}"][0] for n, s in plates]
            bound = 0.5 * sum(widths)
            err = m[key] - study.truth[key]
            row["angles"][k] = {"bound": bound, "error": err}
            cells.append(f"{bound:5.2f} {abs(err):5.2f}")
        rot = {k.split()[0]: 0.5 * (b - a) for k, (a, b) in iv.items() if k.endswith("rotation")}
        worst = max(rot, key=rot.get)
        rot_err = max(abs(m["vertebral_rotation_deg"][n] - study.truth["vertebral_rotation_deg"][n])
                      for n in rot if m["vertebral_rotation_deg"].get(n) is not None)
        row["rotation"] = {"bound_max": rot[worst], "level": worst, "error_max": rot_err}
        cells.append(f"{rot[worst]:5.2f} {worst:>3} {rot_err:5.2f}")
        rows.append(row)
        print(f"{i:4d}  " + "  ".join(f"{c:>12}" for c in cells[:-1]) + f"  {cells[-1]:>20}", flush=True)
    summary = {}
    for k in ANGLES:
        b = np.array([r["angles"][k]["bound"] for r in rows])
        e = np.array([abs(r["angles"][k]["error"]) for r in rows])
        summary[k] = {"bound_max": float(b.max()), "bound_mean": float(b.mean()),
                      "studies_bound_over_2deg": int((b > 2.0).sum()), "error_max": float(e.max())}
    rb = np.array([r["rotation"]["bound_max"] for r in rows])
    summary["rotation"] = {"bound_max": float(rb.max()), "bound_mean": float(rb.mean()),
                           "studies_bound_over_2deg": int((rb > 2.0).sum()),
                           "error_max": float(max(r["rotation"]["error_max"] for r in rows))}
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
