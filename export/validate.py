"""Validate a bundle the way the box will run it, and record the result in the bundle.

Each case is segmented by the appliance itself (:func:`appliance.inference.segment`:
crop, tracking sliding window on ONNX Runtime, cleanup, label-aware resampling) and
scored on the case's own grid against its label map with the paper's Table-3 metrics
(:mod:`appliance.metrics`). ``record`` writes the table into ``manifest.validation``,
appends the report to ``MODEL_CARD.md`` and rewrites the file hashes, so the card and
manifest describe what ships, not what the training loop saw.

Run: ``python -m export.validate BUNDLE --dataset DS [--split test] [--case ID ...] [--record]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from appliance.bundle import MANIFEST_NAME, StructureMetrics, Validation, load_bundle
from appliance.engines.select import EngineConfig
from appliance.errors import ExportError, WbspineError
from export.bundle_writer import rewrite_manifest


#: First line of the section :func:`record` writes at the end of the model card.
RECORD_HEADING = "# Validation through the appliance"


def validate_bundle(bundle_dir: str | Path, dataset_dir: str | Path, splits: tuple[str, ...] = ("test",),
                    case_ids: tuple[str, ...] = (), engine: EngineConfig = EngineConfig()) -> tuple[dict, str]:
    """(report dict, markdown) of the bundle on ``splits`` plus the named cases, through the
    engine the appliance picks for ``engine`` (the report names it)."""
    from appliance.engines.select import select_engine
    from appliance.inference import InferenceConfig, segment
    from appliance.volume import read_nifti
    from training import dataset as ds
    from training.evaluate import case_metrics, report

    bundle = load_bundle(bundle_dir)
    data = ds.load(dataset_dir)
    cases = [c for c in data.cases if c.split in splits or c.id in case_ids]
    missing = set(case_ids) - {c.id for c in data.cases}
    if missing:
        raise ExportError(f"no case {sorted(missing)} in {dataset_dir}")
    if not cases:
        raise ExportError(f"no case in split(s) {splits} of {dataset_dir}")
    runner = select_engine(bundle, engine).engine
    print(f"engine: {runner.name}", file=sys.stderr, flush=True)
    per_case = {}
    for case in cases:
        image = read_nifti(data.path(case.image))
        reference = read_nifti(data.path(case.label))
        t = time.perf_counter()
        seg = segment(image, bundle, runner.run, InferenceConfig())
        if not seg.labels.same_geometry(reference):
            raise ExportError(f"case {case.id}: label map and image grids differ")
        per_case[case.id] = {"pseudo_labels": case.pseudo_labels, "seen_in_training": case.split == "train",
                             "seconds": round(time.perf_counter() - t, 1),
                             "metrics": case_metrics(seg.labels.array, reference.array, list(case.annotated))}
        print(f"{case.id}: " + ", ".join(f"{k} Dice {m['dice']:.3f}" for k, m in per_case[case.id]["metrics"].items()
                                         if m["dice"] is not None), file=sys.stderr, flush=True)
    held_out = {k: v for k, v in per_case.items() if not v["seen_in_training"]}
    result, md = report(held_out or per_case, data.split("train"),
                        title=f"{RECORD_HEADING[2:]} ({', '.join(splits)} split of "
                              f"{Path(dataset_dir).name}, on each case's own grid)")
    md = md.rstrip("\n") + f"\n\nEngine: `{runner.name}`.\n"
    seen = {k: v for k, v in per_case.items() if v["seen_in_training"]}
    if seen and held_out:
        extra, extra_md = report(seen, (), title="Cases seen in training (not held out)")
        result["seen_in_training"] = extra
        md += "\n" + extra_md.replace("# ", "## ", 1)
    result["per_case_all"] = per_case
    result["engine"] = runner.name
    runner.close()
    return result, md


def record(bundle_dir: str | Path, result: dict, markdown: str, dataset_label: str) -> Path:
    """Write the held-out table into the manifest and the card; rehash; verify."""
    root = Path(bundle_dir)
    bundle = load_bundle(root)
    structures = {name: StructureMetrics(dice=e["dice"], volume_similarity=e["volume_similarity"],
                                         recall=e["recall"], cases=int(e["test"]))
                  for name, e in result["table3"].items() if e["dice"] is not None}
    card = bundle.path("model_card")
    if card is None:
        raise ExportError("the bundle has no model card to record the validation in")
    text = card.read_text()
    cut = text.find("\n" + RECORD_HEADING)
    if cut >= 0:  # recorded before: replace that section (it runs to the end of the card)
        text = text[:cut + 1].rstrip("\n") + "\n"
    card.write_text(text + "\n" + markdown)
    return rewrite_manifest(root, bundle.manifest,
                            validation=Validation(dataset=dataset_label, structures=structures,
                                                  gate=bundle.manifest.validation.gate))  # export's decision stays on record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.validate", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--split", action="append", dest="splits", help="dataset split(s) to score (default: test)")
    p.add_argument("--case", action="append", default=[], help="also score this case id (e.g. the real CT)")
    p.add_argument("--threads", type=int)
    p.add_argument("--engine", default="auto", help="engine kind as for `wbspine infer` (default auto)")
    p.add_argument("--cpu-precision", default="f32", choices=("f32", "bf16"), help="OpenVINO precision")
    p.add_argument("--record", action="store_true", help=f"write the result into {MANIFEST_NAME} and the card")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = p.parse_args(argv)
    splits = tuple(args.splits or ["test"])
    try:
        engine = EngineConfig(kind=args.engine, threads=args.threads, cpu_precision=args.cpu_precision)
        result, md = validate_bundle(args.bundle, args.dataset, splits, tuple(args.case), engine)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        if args.record:
            record(args.bundle, result, md, f"{args.dataset.name}: {', '.join(splits)} split, appliance pipeline")
    except WbspineError as exc:
        print(f"validate: error: {exc}", file=sys.stderr)
        return 2
    print(md)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
