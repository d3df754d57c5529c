"""Measurements with issue 18's organ-like blobs against the clean map (run by hand).

    PYTHONPATH=. python tests/benchmarks/bench_plausibility.py [--seeds 10] [--full] [--touching]

For each small phantom seed (and, with ``--full``, the full-size seed 4): measures the
clean map and the map with kidneys (pelvis) beside L1, a 9 cm sphere (femoral head) in
front of T8 and a 25 mm tube (vertebral body) along the front of T6–L3, 5 mm from the
bodies (``--touching``: also the variant whose tube touches them). Prints per map the
largest |Δ| of the angles and of the rotations (degrees), whether the level names
changed, the rejections by rule, and the seconds of ``plausible_labels`` and of
``measure`` (clean / with blobs); then a summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from appliance.measure.api import measure
from appliance.measure.plausibility import plausible_labels
from appliance.phantom import generate_study
from tests.appliance.measure.organ_blobs import add_issue_blobs
from tests.appliance.measure.test_api_phantom import _angles


def _timed(f, *args):
    t = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t


def compare(study, touching: bool) -> dict:
    labels, affine = study.labels.array, study.labels.affine
    dirty = add_issue_blobs(labels, affine, study.truth, touching=touching)
    (_, rejected), t_plaus = _timed(plausible_labels, dirty, affine)
    clean_m, t_clean = _timed(measure, labels, affine)
    dirty_m, t_dirty = _timed(measure, dirty, affine)
    a, b = _angles(clean_m), _angles(dirty_m)
    deltas = {k: abs(a[k] - b[k]) for k in a if k in b}
    missing = sorted(set(a) ^ set(b))
    angle = [v for k, v in deltas.items() if not k.startswith("rot_")]
    rot = [v for k, v in deltas.items() if k.startswith("rot_")]
    return {
        "max_angle_delta": max(angle, default=None), "max_rotation_delta": max(rot, default=None),
        "per_angle": {k: round(v, 3) for k, v in deltas.items() if not k.startswith("rot_")},
        "values_missing_or_new": missing,
        "names_changed": [v["name"] for v in clean_m["vertebrae"]] != [v["name"] for v in dirty_m["vertebrae"]],
        "rejected": dict(Counter(f"{r.label}:{r.rule}" for r in rejected)),
        "clean_rejected": len(clean_m["rejected"]),
        "seconds": {"plausible_labels": round(t_plaus, 3), "measure_clean": round(t_clean, 2),
                    "measure_blobs": round(t_dirty, 2)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--full", action="store_true", help="also the full-size seed 4")
    ap.add_argument("--touching", action="store_true", help="also the tube touching the bodies")
    args = ap.parse_args(argv)
    runs = [(s, "small") for s in range(1, args.seeds + 1)] + ([(4, "full")] if args.full else [])
    rows = []
    for seed, size in runs:
        study = generate_study(seed, size)
        for touching in (False, True) if args.touching else (False,):
            row = {"seed": seed, "size": size, "touching": touching, **compare(study, touching)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for touching in sorted({r["touching"] for r in rows}):
        sel = [r for r in rows if r["touching"] == touching]
        summary["touching" if touching else "separate"] = {
            "maps": len(sel),
            "max_angle_delta": max((r["max_angle_delta"] or 0.0) for r in sel),
            "max_rotation_delta": max((r["max_rotation_delta"] or 0.0) for r in sel),
            "maps_over_0.5": sum(max(r["max_angle_delta"] or 0, r["max_rotation_delta"] or 0) > 0.5 for r in sel),
            "names_changed": sum(r["names_changed"] for r in sel),
            "values_missing_or_new": sum(bool(r["values_missing_or_new"]) for r in sel),
            "rejected": dict(sum((Counter(r["rejected"]) for r in sel), Counter())),
            "clean_rejected": sum(r["clean_rejected"] for r in sel),
            "max_seconds": {k: max(r["seconds"][k] for r in sel) for k in sel[0]["seconds"]},
        }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
