"""``wbspine train``, ``wbspine dataset ...`` and ``wbspine evaluate``.

Handlers import torch (through :func:`training.torch_import.require_torch`) only when
they run, so ``wbspine --help`` never imports it. Multi-GPU/multi-node:
``torchrun --nproc-per-node N -m appliance.cli train --config FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from training.itksnap import LABEL_SUFFIXES, LAYOUTS  # light: re, pathlib, appliance.labels
from training.torch_import import require_torch

_CONFIGS_HELP = """\
configs (training/configs/):
  cpu_quick.toml      minutes on 2 CPU cores: check a dataset end to end, or fine-tune the
                      shipped model with --init-from appliance/models/default
  default_model.toml  the shipped default model's recipe: ~5 min on one GPU
                      (training/gpu_default_model.sh), about a day on 2 CPU cores
  default.toml        the paper's full schedule (JoVE 67781: Adam 1e-5, 500 epochs; GPU)

example:
  wbspine train --config training/configs/cpu_quick.toml --init-from appliance/models/default \\
      --set data.dataset=DS --out runs/site
"""
_SET_HELP = "override a config value, e.g. --set optim.lr=1e-4 --set train.epochs=50 (repeatable)"


def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the residual 3D U-Net (JoVE 67781) on a dataset folder",
        description="Train with the paper's defaults (Adam 1e-5, lr x0.8/100 epochs, deep\n"
                    "supervision alpha 0.8 x0.8/30 epochs, 500 epochs) unless the config or\n"
                    "--set says otherwise. Writes last.pt/best.pt, log.csv, TensorBoard logs.\n"
                    "Step by step from ITK-SNAP files to a bundle: training/README.md.",
        epilog=_CONFIGS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="TOML config (default: built-in defaults; see "
                                               "training/configs/default.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=_SET_HELP)
    p.add_argument("--out", type=Path, help="run folder (same as --set run.out=...)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (same config)")
    p.add_argument("--init-from", type=Path, metavar="BUNDLE_OR_CHECKPOINT",
                   help="fine-tune: start from trained weights instead of a random init, e.g. "
                        "appliance/models/default (a bundle with a 'weights' file) or a run's best.pt. "
                        "The config's model settings and labels must be the source's (a mismatch is "
                        "refused with the differing keys/shapes; for the default model use "
                        "--config training/configs/default_model.toml). Lowers optim.lr tenfold unless "
                        "--set optim.lr=... is given (--set train.init_from=PATH alone keeps the lr). Recorded in the config as train.init_from")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and hash, then stop")
    p.set_defaults(handler=run_train)


def _explicit(overrides: list[str], key: str) -> bool:
    return any(item.partition("=")[0].strip() == key for item in overrides)


def _config(args):
    from training.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "out", None) is not None:
        overrides.append(f'run.out="{args.out}"')
    init_from = getattr(args, "init_from", None)
    if init_from is not None:
        from training.init_from import FINE_TUNE_LR_FACTOR

        overrides.append(f'train.init_from="{init_from}"')
        if not _explicit(overrides, "optim.lr"):
            lr = load_config(args.config, overrides).optim.lr
            overrides.append(f"optim.lr={lr * FINE_TUNE_LR_FACTOR!r}")
    return load_config(args.config, overrides)


def run_train(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.print_config:
        print(json.dumps(json.loads(config.model_dump_json()) | {"config_hash": config.hash}, indent=2))
        return 0
    require_torch("wbspine train")
    from training.loop import train

    result = train(config, resume=args.resume)
    print(f"run: {result.out}  best validation score: {result.best_score}")
    return 0


_IMPORT_DESCRIPTION = """\
Import annotated cases into a training dataset. Every case is checked before anything
is written; a refusal names the case and the reason and leaves the dataset untouched.

Accepted layouts (detected; --layout forces one):
  pairs    SRC/CASE.nii.gz + SRC/CASE_seg.nii.gz (also .nii .nrrd .mha .mhd; segmentation
           suffixes _seg -label _label _labels -seg _segmentation). The image may be a
           DICOM folder SRC/CASE/ instead.
  folders  SRC/CASE/ holding image.* (or img.*, ct.*, or a DICOM series subfolder) and
           labels.* (or label.*, seg.*, segmentation.*, *_seg.*). Folders written by
           'wbspine phantom --out SRC/CASE' are in this layout.
  case     SRC itself is one such case folder (case id = folder name).
DICOM series are read as one CT volume and stored as NIfTI; the label map must be on the
image's grid (size, spacing, origin, direction), as ITK-SNAP saves it.

Label values: --map SRC=TARGET (TARGET 1 vertebral_bodies, 2 pelvis, 3 femoral_heads,
0 background), --labels-file FILE (ITK-SNAP label descriptions; names are mapped:
vertebra/vertebral/C2..C7/T1..T12/L1..L5 -> vertebral_bodies; pelvis/sacrum/S1..S5/ilium/
iliac/hip bone/coccyx -> pelvis; femoral head/femur -> femoral_heads; names with disc,
process, lamina, pedicle, canal, cord, rib, ... and all others stay background and are
printed as 'unmapped: NAME (value V)'), or --project-labels. --map wins per value.

Refused: a case whose mapped labels are empty ('mapping matches no voxel'), image and
label on different grids, a --map entry that matches no voxel in any case, an unknown
--annotated name, an --annotated structure that a case lacks.
"""
_IMPORT_EPILOG = """\
examples:
  wbspine dataset import SRC --out DS --labels-file SRC/labels.txt --split train
  wbspine dataset import SRC --out DS --map 1=1 --map 2,3=2 --map 4=3 --split val
  wbspine dataset import PHANTOMS --out DS --project-labels --annotated vertebral_bodies pelvis
Prints one block per case (files, label values with voxel counts, value -> structure,
voxels per structure, annotated structures, split), then the dataset summary.
"""


def register_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="build training datasets (phantoms, ITK-SNAP folders, "
                                       "the TotalSegmentator example CT)")
    verbs = p.add_subparsers(dest="dataset_command", metavar="VERB")
    verbs.required = True
    ph = verbs.add_parser("from-phantoms", help="seeded synthetic studies → a dataset")
    ph.add_argument("--out", required=True, type=Path)
    ph.add_argument("--n", type=int, default=20, help="number of phantoms")
    ph.add_argument("--seed", type=int, default=0, help="first seed (seeds counted up from it; refused seeds are skipped)")
    ph.add_argument("--size", choices=("small", "full"), default="small")
    ph.add_argument("--val", type=float, default=0.2, help="fraction for validation")
    ph.add_argument("--test", type=float, default=0.2, help="fraction for test")
    ph.add_argument("--workers", type=int, default=1,
                    help="processes generating phantoms in parallel (full size: ~2.6 GB each)")
    ph.add_argument("--partial", action="store_true",
                    help="erase pelvis/femoral heads from training cases at the paper's Table 2 rates")
    ph.add_argument("--anatomy", choices=("classic", "rich"), default="classic",
                    help="rich: organs, vessels, muscles, bowel, table and metal too, and a tissue map "
                         "per case for domain-randomised training ([synth] in the config)")
    ph.set_defaults(handler=run_from_phantoms)
    im = verbs.add_parser(
        "import", help="import your own annotated cases (ITK-SNAP files, DICOM, label descriptions)",
        description=_IMPORT_DESCRIPTION, epilog=_IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    im.add_argument("src", type=Path, help="folder with the cases (layouts above)")
    im.add_argument("--out", required=True, type=Path, help="dataset folder (created, or added to)")
    im.add_argument("--map", dest="mapping", action="append", default=[], metavar="SRC[,SRC]=TARGET",
                    help="label mapping to 1 vertebral_bodies, 2 pelvis, 3 femoral_heads, e.g. --map 1=1 "
                         "--map 25,26=2 (repeatable; unmapped values -> background; overrides --labels-file "
                         "per value; an entry whose values occur in no case is refused)")
    im.add_argument("--labels-file", type=Path, metavar="FILE",
                    help="ITK-SNAP label descriptions (Segmentation > Export Label Descriptions): label "
                         "names are mapped to structures (rules below); default: the one such *.txt in SRC, "
                         "when no --map is given")
    im.add_argument("--project-labels", action="store_true",
                    help="the label maps already use 1 vertebral_bodies, 2 pelvis, 3 femoral_heads "
                         "(e.g. folders written by wbspine phantom)")
    im.add_argument("--layout", choices=LAYOUTS, help="force a layout (default: detected)")
    im.add_argument("--label-suffix", metavar="SUFFIX",
                    help="only this segmentation suffix (default: any of " + ", ".join(LABEL_SUFFIXES) + ")")
    im.add_argument("--split", choices=("train", "val", "test"), default="train",
                    help="split of EVERY case imported by this command (default train); import held-out "
                         "cases with a second command and --split val or test")
    im.add_argument("--annotated", nargs="+", metavar="STRUCTURE",
                    help="structures drawn in every case, among vertebral_bodies, pelvis, femoral_heads "
                         "(default: per case, those with voxels after mapping). A named structure missing "
                         "from a case is refused; other structures are erased")
    im.add_argument("--pseudo-labels", action="store_true", help="labels are another model's output")
    im.set_defaults(handler=run_import)
    ts = verbs.add_parser("import-totalseg", help="add the TotalSegmentator example CT "
                                                  "(pseudo-labels) to a dataset")
    ts.add_argument("--out", required=True, type=Path)
    ts.add_argument("--src", type=Path, help="folder of the example (default ../shared/data/...)")
    ts.add_argument("--split", choices=("train", "val", "test"), default="train")
    ts.set_defaults(handler=run_import_totalseg)


def _summary(dataset) -> None:
    for split in ("train", "val", "test"):
        cases = dataset.split(split)
        print(f"{split}: {len(cases)} cases" + (f" ({sum(c.pseudo_labels for c in cases)} pseudo-labelled)"
                                                if any(c.pseudo_labels for c in cases) else ""))
    print(f"manifest: {dataset.root / 'dataset.json'}")


def run_from_phantoms(args: argparse.Namespace) -> int:
    from training.dataset import from_phantoms

    _summary(from_phantoms(args.out, args.n, args.seed, args.size, val_fraction=args.val,
                           test_fraction=args.test, partial=args.partial,
                           workers=args.workers, anatomy=args.anatomy))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from training.importer import format_plan, plan_import, write_import

    plan = plan_import(args.src, args.mapping, labels_file=args.labels_file, project_labels=args.project_labels,
                       layout=args.layout, label_suffix=args.label_suffix, annotated=args.annotated)
    print(format_plan(plan, args.split))
    print()
    _summary(write_import(plan, args.out, split=args.split, pseudo_labels=args.pseudo_labels))
    return 0


def run_import_totalseg(args: argparse.Namespace) -> int:
    from training.totalseg import DEFAULT_SRC, import_totalseg

    _summary(import_totalseg(args.out, args.src or DEFAULT_SRC, split=args.split))
    print("note: this case's labels are TotalSegmentator outputs (pseudo-labels), not manual annotation")
    return 0


def register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Table-3 report (Dice, VS, Recall) of a checkpoint on held-out cases")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--dataset", type=Path, help="dataset folder (default: the one it was trained on)")
    p.add_argument("--split", choices=("val", "test", "train"), default="test")
    p.add_argument("--out", required=True, type=Path, help="folder for report.md and report.json")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (auto: CUDA when present)")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    require_torch("wbspine evaluate")
    from training import dataset as ds
    from training.checkpoint import model_from_checkpoint
    from training.config import Config
    from training.data import prepare_split
    from training.distributed import DistContext, resolve_device
    from training.evaluate import evaluate_cases, fmt, write_report

    from appliance.errors import TrainingError

    model, ckpt = model_from_checkpoint(args.checkpoint)
    config = Config.model_validate(ckpt["training_config"])
    dataset = ds.load(args.dataset or config.data.dataset)
    cases = dataset.split(args.split)
    if not cases:  # before any resampling or inference: a report of nothing is no report
        counts = ", ".join(f"{s}: {len(dataset.split(s))}" for s in ("train", "val", "test"))
        raise TrainingError(f"split {args.split!r} of {dataset.root} has no cases ({counts})")
    prepared = prepare_split(dataset, args.split, config.data.working_spacing_mm, dataset.root / "cache",
                             workers=os.cpu_count() or 1)
    device = resolve_device(args.device, DistContext())
    per_case = evaluate_cases(model.to(device), dataset, cases, prepared, config, native_grid=True, device=device)
    data = write_report(args.out, per_case, dataset.split("train"),
                        title=f"{args.checkpoint.name} on {dataset.root.name}/{args.split}")
    for name, e in data["table3"].items():
        print(f"{name}: n={e['test']} dice={fmt(e['dice'])} vs={fmt(e['volume_similarity'])} "
              f"recall={fmt(e['recall'])}" + ("  (no case annotates it)" if not e["test"] else ""))
    print(f"report: {args.out / 'report.md'}")
    return 0
