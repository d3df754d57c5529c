"""Measurement accuracy and speed on phantoms with planted truth (run by hand, not in CI).

    PYTHONPATH=. python tests/benchmarks/bench_measure.py [--studies 20] [--size full] [--json out.json]

Study i pins its planted values on a deterministic spread of the issue's ranges: Cobb
0–60°, kyphosis 10–60°, lordosis 20–70°, pelvic incidence 35–85°, apical rotation
±20° (seed i, or i + 100, i + 200 when the phantom cannot fit those values; study
indices go on past ``--studies`` until that many studies succeeded). Prints one row per study (signed errors in degrees, the worst
rotation error over T1–L5, whether the end vertebrae match when Cobb ≥ 10°, and the
seconds ``measure`` took), then the summary as JSON (and everything to ``--json``): per
angle also how many studies carried an uncertainty warning for it and how many errors
over the limit came *without* a warning whose stated ± covers them (the number that
must stay 0: a coarse mask may leave an angle open, but never silently).
Exit status 1 when any error exceeds the issue's limit (1° / 1.5° rotation on ``full``).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from appliance.errors import PhantomError
from appliance.measure.api import measure
from appliance.phantom import generate_study

ANGLES = {
    "cobb": None, "TK": "thoracic_kyphosis_deg", "TK4": "thoracic_kyphosis_t4_t12_deg",
    "LL": "lumbar_lordosis_deg", "LLS1": "lumbar_lordosis_l1_s1_deg", "SS": "sacral_slope_deg",
    "PT": "pelvic_tilt_deg", "PI": "pelvic_incidence_deg",
}
LIMITS = {"full": (1.0, 1.5), "small": (2.0, 2.0)}  # (angles, rotation) from issue 6
#: How the uncertainty warnings (appliance.measure.spinal.uncertainty_warning) name each angle.
WARNED_AS = {"cobb": "Cobb angle", "TK": "thoracic kyphosis (T1–T12)", "TK4": "thoracic kyphosis (T4–T12)",
             "LL": "lumbar lordosis (L1–L5)", "LLS1": "lumbar lordosis (L1–S1)", "SS": "sacral slope",
             "PI": "pelvic incidence"}


def stated_bound(warnings: list[str], short: str) -> float | None:
    """The ±bound a measurement's uncertainty warning gives for angle ``short``, if any."""
    name = WARNED_AS.get(short)
    for w in warnings if name else []:
        found = re.search(r"±(\d+(?:\.\d+)?)°", w) if w.startswith(name + ":") else None
        if found:  # "Cobb angle: fewer than two named bodies" and the like state no bound
            return float(found.group(1))
    return None


def stated_rotation_bounds(warnings: list[str]) -> dict[str, float]:
    for w in warnings:
        if w.startswith("vertebral rotation: the voxels"):
            return {lvl: float(b) for lvl, b in re.findall(r"([CTL]\d+) ±(\d+(?:\.\d+)?)°", w)}
    return {}


def spread(i: int, n: int, k: int, lo: float, hi: float) -> float:
    """Value i of n on [lo, hi], visiting the range in a k-strided order."""
    return lo + (hi - lo) * ((i * k) % n) / max(n - 1, 1)


def overrides(i: int, n: int) -> dict[str, float]:
    return {
        "cobb_deg": spread(i, n, 1, 0.0, 60.0),
        "kyphosis_deg": spread(i, n, 7, 10.0, 60.0),
        "lordosis_deg": spread(i, n, 11, 20.0, 70.0),
        "pelvic_incidence_deg": spread(i, n, 13, 35.0, 85.0),
        "max_rotation_deg": spread(i, n, 3, -20.0, 20.0),
    }


def _value(m: dict, key: str | None) -> float | None:
    return (m["cobb"] or {}).get("angle_deg") if key is None else m[key]


def evaluate(seed: int, size: str, pins: dict[str, float]) -> dict:
    study = generate_study(seed, size, **pins)
    start = time.perf_counter()
    m = measure(study.labels.array, study.labels.affine)
    seconds = time.perf_counter() - start
    truth = study.truth
    row: dict = {"seed": seed, "planted": pins, "seconds": seconds, "warnings": m["warnings"]}
    row["stated"] = {}
    for short, key in ANGLES.items():
        got, want = _value(m, key), _value(truth, key)
        row[short] = None if got is None else got - want
        row["stated"][short] = stated_bound(m["warnings"], short)
    rot = {n: abs(m["vertebral_rotation_deg"][n] - v) for n, v in truth["vertebral_rotation_deg"].items()
           if not n.startswith("C") and m["vertebral_rotation_deg"].get(n) is not None}
    row["rot_max"] = max(rot.values()) if rot else None
    worst = max(rot, key=rot.get) if rot else None
    row["stated"]["rot_max"] = stated_rotation_bounds(m["warnings"]).get(worst)
    if truth["cobb"]["angle_deg"] >= 10.0:
        row["ends_ok"] = all(m["cobb"][e] == truth["cobb"][e] for e in ("upper_end_vertebra", "lower_end_vertebra"))
    else:
        row["ends_ok"] = None
    return row


def _fmt(v) -> str:
    return "  —  " if v is None else f"{v:+5.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--first", type=int, default=0, help="index of the first study")
    ap.add_argument("--size", choices=("small", "full"), default="full")
    ap.add_argument("--json", type=Path, default=None, help="also write rows and summary here")
    args = ap.parse_args(argv)
    rows, skipped = [], []
    print("seed " + " ".join(f"{k:>6}" for k in ANGLES) + "  rotmax ends  sec")
    for i in range(args.first, args.first + 3 * args.studies):
        if len(rows) == args.studies:
            break
        pins = overrides(i, args.studies)
        row = None
        for seed in (i, i + 100, i + 200):  # another body size may fit the grid
            try:
                row = evaluate(seed, args.size, pins)
                break
            except PhantomError as exc:
                skipped.append({"seed": seed, "planted": pins, "reason": str(exc)})
                print(f"{seed:4d} skipped: {exc}")
        if row is None:
            continue
        rows.append(row)
        ends = "  — " if row["ends_ok"] is None else (" ok " if row["ends_ok"] else "FAIL")
        print(f"{row['seed']:4d} " + " ".join(f"{_fmt(row[k]):>6}" for k in ANGLES)
              + f"  {_fmt(row['rot_max'])} {ends} {row['seconds']:5.2f}", flush=True)
    angle_limit, rot_limit = LIMITS[args.size]
    summary: dict = {"size": args.size, "studies": len(rows), "skipped": len(skipped)}
    for k in list(ANGLES) + ["rot_max"]:
        vals = np.array([abs(r[k]) for r in rows if r[k] is not None])
        limit = rot_limit if k == "rot_max" else angle_limit
        over = [r for r in rows if r[k] is not None and abs(r[k]) > limit]
        summary[k] = {"max_abs": float(vals.max()) if vals.size else None,
                      "mean_abs": float(vals.mean()) if vals.size else None,
                      "n_over_limit": len(over), "limit": limit,
                      # over the limit with no warning whose stated ± covers the error
                      "n_over_limit_unannounced": sum((r["stated"][k] or 0.0) < abs(r[k]) for r in over),
                      "n_warned": sum(r["stated"][k] is not None for r in rows),
                      "missing": sum(r[k] is None for r in rows)}
    summary["ends_failed"] = sum(r["ends_ok"] is False for r in rows)
    summary["seconds_max"] = max((r["seconds"] for r in rows), default=None)
    summary["seconds_mean"] = float(np.mean([r["seconds"] for r in rows])) if rows else None
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows, "skipped": skipped}, indent=1) + "\n")
    return 0 if all(v["n_over_limit"] == 0 for k, v in summary.items() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
