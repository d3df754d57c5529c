"""How much of a sagittal angle a label map holds at all (run by hand, not in CI).

    PYTHONPATH=. python tests/benchmarks/bench_measure_limit.py [--studies 20] [--size small] [--json out.json]

For each phantom of ``bench_measure.py`` (same planted values) and each endplate that
enters a sagittal parameter (T1, T4 superior; T12, L5 inferior; L1 superior; the S1
plate), the plate alone is turned in the sagittal plane about its planted centre, all
else kept, and the label map is rasterised again at the study's grid. The interval of
turns that leaves the label map *bit for bit identical* is printed. Any two phantoms
whose turns lie in that interval give the same input to ``measure``, so no method can
be closer than half the interval's width to both: for an angle between two plates
(kyphosis, lordosis) the bound is half the sum of both widths, for the sacral slope
and pelvic incidence half the S1 plate's width. (The interval is a lower bound on
the true ambiguity: moving a plate or turning it coronally as well leaves more
phantoms consistent with the same map.) Axial rotation likewise: each body turned
about its own axis. Also printed: ``measure``'s error on the study itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from appliance.measure.api import measure
from appliance.phantom.generate import _grid
from appliance.phantom.params import draw_params
from appliance.phantom.raster import union_sdf
from appliance.phantom.shapes import Clipped, VertebralBody
from appliance.phantom.skeleton import build_skeleton
from appliance.phantom.spine import build_spine

from bench_measure import overrides  # noqa: E402  (run from tests/benchmarks' parent with PYTHONPATH=.)

STEP_DEG = 0.05
SEARCH_DEG = 20.0
SHIFT_STEP_MM = 0.025
PLATES = [("T1", "sup"), ("T4", "sup"), ("T12", "inf"), ("L1", "sup"), ("L5", "inf"), ("S1", "plate")]
ANGLES = {  # key: (plates, measurement key, sign of each plate's tilt in the angle)
    "TK": ((("T1", "sup"), ("T12", "inf")), "thoracic_kyphosis_deg"),
    "TK4": ((("T4", "sup"), ("T12", "inf")), "thoracic_kyphosis_t4_t12_deg"),
    "LL": ((("L1", "sup"), ("L5", "inf")), "lumbar_lordosis_deg"),
    "LLS1": ((("L1", "sup"), ("S1", "plate")), "lumbar_lordosis_l1_s1_deg"),
    "SS": ((("S1", "plate"),), "sacral_slope_deg"),
    "PI": ((("S1", "plate"),), "pelvic_incidence_deg"),
}


def _turn(n: np.ndarray, deg: float) -> np.ndarray:
    """``n`` turned about the x (left) axis: its sagittal tilt grows by ``deg``."""
    a = np.radians(deg)
    r = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), np.sin(a)], [0.0, -np.sin(a), np.cos(a)]])
    return r @ n


def _interval(raster, n0: np.ndarray, shift: bool) -> tuple[float, float]:
    """Largest interval of turns around 0 that leaves ``raster(normal, shift_mm)``
    unchanged — with the plate kept through its centre, or (``shift``) also moved
    along its normal by whatever keeps the map (searched next to the last turn's)."""
    ref = raster(n0, 0.0)
    ends = []
    for sign in (-1.0, 1.0):
        deg, last = 0.0, 0.0
        while deg < SEARCH_DEG:
            n = _turn(n0, sign * (deg + STEP_DEG))
            tries = [0.0] if not shift else last + np.r_[0.0, np.repeat(np.arange(1, 41) * SHIFT_STEP_MM, 2)
                                                         * np.tile([1.0, -1.0], 40)]
            hit = next((t for t in tries if np.array_equal(raster(n, t), ref)), None)
            if hit is None:
                break
            deg, last = deg + STEP_DEG, hit
        ends.append(sign * deg)
    return ends[0], ends[1]


def plate_intervals(seed: int, size: str, pins: dict, shift: bool = True) -> dict:
    p = draw_params(seed, size, **pins)
    spine = build_spine(p)
    skel = build_skeleton(spine, p)
    grid, _ = _grid(p, spine, skel)
    out = {}
    for name, side in PLATES:
        if name == "S1":
            s_pt, n0 = spine.s1_center_mm, spine.s1_normal

            def raster(n, t, s_pt=s_pt, n0=n0):
                shapes = []
                for sh in skel.pelvis:  # only what the S1 plate cuts: the S1 body and the clipped parts
                    if isinstance(sh, VertebralBody) and np.allclose(sh.sup_point, s_pt):
                        shapes.append(dataclasses.replace(sh, sup_normal=n, sup_point=s_pt + t * n0))
                    elif isinstance(sh, Clipped) and np.allclose(sh.point, s_pt):
                        shapes.append(dataclasses.replace(sh, normal=n, point=s_pt + t * n0))
                    else:
                        shapes.append(sh)
                sl, dist = union_sdf(shapes, grid)
                return dist < 0
        else:
            body = spine.by_name(name).body
            n0 = body.sup_normal if side == "sup" else body.inf_normal
            key = "sup" if side == "sup" else "inf"
            lo, hi = body.bbox_mm()
            box = grid.box(lo - 3.0, hi + 3.0)

            def raster(n, t, body=body, key=key, box=box, n0=n0):
                point = getattr(body, f"{key}_point") + t * n0
                return dataclasses.replace(body, **{f"{key}_normal": n, f"{key}_point": point}).sdf(box[1]) < 0
        out[f"{name} {side}"] = _interval(raster, n0, shift)
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
    ap.add_argument("--no-shift", action="store_true", help="keep each plate through its planted centre")
    args = ap.parse_args(argv)
    from appliance.phantom import generate_study

    rows = []
    print("seed  " + "  ".join(f"{k:>12}" for k in ANGLES) + f"  {'rotation':>20}   (bound, |error|; rotation: bound, level, worst error)")
    for i in range(args.studies):
        pins = overrides(i, args.studies)
        study = generate_study(i, args.size, **pins)
        m = measure(study.labels.array, study.labels.affine)
        iv = plate_intervals(i, args.size, pins, not args.no_shift)
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
