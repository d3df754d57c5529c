"""Measurements on the default model's own masks of phantoms (run by hand, not in CI).

    PYTHONPATH=. python tests/benchmarks/bench_model_masks.py [--studies 20] [--size small]
        [--bundle DIR] [--cache DIR] [--json out.json]

The masks a real study gets are the model's, not the generator's: study i is pinned as in
``bench_measure.py`` (same seeds, same planted values), segmented by the shipped default
bundle through the appliance path (``appliance.inference.segment``), then measured. Each
row gives the signed error of every angle against the planted truth and whether an error
over the limit (2°) came with a stated bound (the ``±X°`` of its uncertainty warning) that covers it, or a null with
reasons. The number that must stay 0 is ``n_over_limit_unannounced``: a model mask may
leave an angle wrong, but never silently. ``--cache`` keeps the segmented masks (npz) so a
change of the measurement code can be re-scored without re-running the network.
Exit status 1 when any error over the limit is unannounced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_measure import ANGLES, _value, overrides, stated_bound, stated_rotation_bounds  # noqa: E402

from appliance.errors import PhantomError  # noqa: E402
from appliance.measure.api import measure  # noqa: E402
from appliance.metrics import overlap  # noqa: E402
from appliance.phantom import generate_study  # noqa: E402

LIMIT_DEG = 2.0


def _segmenter(bundle_dir: Path | None = None):
    from appliance.bundle import DEFAULT_BUNDLE_DIR, load_bundle
    from appliance.engines.select import EngineConfig, select_engine
    from appliance.inference import segment

    bundle = load_bundle(bundle_dir or DEFAULT_BUNDLE_DIR)
    engine = select_engine(bundle, EngineConfig()).engine

    def run(image):
        return segment(image, bundle, engine.run).labels.array

    return run


def model_mask(seed: int, size: str, pins: dict, cache: Path | None, segmenter, tag: str = ""):
    """(study, model label map) for a pinned phantom, the mask read from ``cache`` if there;
    ``tag`` names the bundle in the cache key (empty: the default bundle, as before)."""
    study = generate_study(seed, size, **pins)
    # the pins depend on --studies (bench_measure.overrides spreads the ranges over n)
    key = hashlib.sha256(json.dumps(pins, sort_keys=True).encode()).hexdigest()[:10]
    path = None if cache is None else cache / f"{tag + '-' if tag else ''}{size}-{seed}-{key}.npz"
    if path is not None and path.exists():
        return study, np.load(path)["labels"]
    labels = segmenter()(study.image)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, labels=labels)
    return study, labels


def _angle(m: dict, short: str, key: str | None):
    """(value, stated ± bound or None, warnings) of one angle in a measurement result;
    the bound is read from the uncertainty warning (``bench_measure.stated_bound``)."""
    value = _value(m, key)
    return value, stated_bound(m["warnings"], short), [] if value is not None else list(m["warnings"])


def evaluate(study, labels: np.ndarray) -> dict:
    t = time.perf_counter()
    m = measure(labels, study.labels.affine)
    seconds = time.perf_counter() - t
    truth = study.truth
    dice = {k: overlap(labels, study.labels.array, k).dice for k in (1, 2, 3)}
    row: dict = {"seed": study.params.seed, "seconds": seconds, "dice": dice,
                 "levels": [v["name"] for v in m["vertebrae"]], "warnings": list(m["warnings"]), "angles": {}}
    for short, key in ANGLES.items():
        got, bound, reasons = _angle(m, short, key)
        want = _value(truth, key)
        row["angles"][short] = {"error": None if got is None else got - want, "bound": bound,
                                "null_reasons": reasons if got is None else []}
    rot = {}
    bounds = stated_rotation_bounds(m["warnings"])
    for name, want in truth["vertebral_rotation_deg"].items():
        got = m["vertebral_rotation_deg"].get(name)
        if got is not None:
            rot[name] = {"error": got - want, "bound": bounds.get(name)}
    row["rotation"] = rot
    return row


def _unannounced(a: dict) -> bool:
    return a["error"] is not None and abs(a["error"]) > LIMIT_DEG and (a["bound"] or 0.0) < abs(a["error"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--size", choices=("small", "full"), default="small")
    ap.add_argument("--cache", type=Path, default=None, help="folder for the segmented masks (npz)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped one)")
    args = ap.parse_args(argv)
    segmenter_cache: list = []
    tag = ""
    if args.bundle is not None:
        from appliance.bundle import load_bundle

        m = load_bundle(args.bundle).manifest.model
        tag = f"{m.name}-{m.version}"

    def segmenter():
        if not segmenter_cache:
            segmenter_cache.append(_segmenter(args.bundle))
        return segmenter_cache[0]

    rows = []
    print("seed " + " ".join(f"{k:>6}" for k in ANGLES) + "  rotmax  dice(vb/pel/fh)   levels")
    for i in range(args.first, args.first + 3 * args.studies):
        if len(rows) == args.studies:
            break
        pins = overrides(i, args.studies)
        for seed in (i, i + 100, i + 200):
            try:
                study, labels = model_mask(seed, args.size, pins, args.cache, segmenter, tag)
                break
            except PhantomError:
                continue
        else:
            continue
        row = evaluate(study, labels)
        rows.append(row)
        cells = []
        for k in ANGLES:
            a = row["angles"][k]
            cell = "  —  " if a["error"] is None else f"{a['error']:+5.2f}"
            cells.append(f"{cell}{'!' if _unannounced(a) else ' '}")
        rmax = max(row["rotation"].values(), key=lambda r: abs(r["error"]), default=None)
        rot = "  —  " if rmax is None else f"{rmax['error']:+5.2f}{'!' if _unannounced(rmax) else ' '}"
        d = row["dice"]
        print(f"{row['seed']:4d} " + " ".join(cells) + f" {rot}  "
              f"{d.get(1, 0):.3f}/{d.get(2, 0):.3f}/{d.get(3, 0):.3f}  {row['levels'][0]}..{row['levels'][-1]}",
              flush=True)
    summary: dict = {"size": args.size, "studies": len(rows), "limit_deg": LIMIT_DEG}
    for k in list(ANGLES) + ["rotation"]:
        items = [a for r in rows for a in (r["rotation"].values() if k == "rotation" else [r["angles"][k]])]
        errs = np.array([abs(a["error"]) for a in items if a["error"] is not None])
        summary[k] = {"max_abs": float(errs.max()) if errs.size else None,
                      "n_over_limit": int((errs > LIMIT_DEG).sum()),
                      "n_over_limit_unannounced": sum(_unannounced(a) for a in items),
                      "n_null": sum(a["error"] is None for a in items)}
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1, default=str) + "\n")
    return 0 if all(v["n_over_limit_unannounced"] == 0 for v in summary.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
