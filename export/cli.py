"""``wbspine export CHECKPOINT --out BUNDLE_DIR``: checkpoint → verified model bundle."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a training checkpoint to a model bundle (ONNX, TensorRT, manifest)",
                       description="Export a checkpoint to ONNX (opset 17, dynamic batch), check parity "
                                   "with ONNX Runtime on phantom windows, optionally build a TensorRT "
                                   "engine, and write manifest.json + MODEL_CARD.md. Refuses a model whose lowest "
                                   "validation Dice of a structure is below the gate (export.min_val_dice, 0.5) "
                                   "unless --allow-weak. Needs the 'train' extra.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", required=True, type=Path, help="bundle folder (created; must be empty)")
    p.add_argument("--name", default="wbspine-resunet3d")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--description", default="Residual 3D U-Net, JoVE 67781 protocol")
    p.add_argument("--tensorrt", choices=("auto", "off", "require"), default="auto",
                   help="build a TensorRT engine when a GPU is present (auto), never, or fail without one")
    p.add_argument("--triton", type=Path, help="also write a Triton model repository here")
    p.add_argument("--max-abs-logit-diff", type=float, default=1e-3,
                   help="largest |ONNX - PyTorch| logit difference per unit of the largest |logit| (at least 1)")
    p.add_argument("--min-argmax-agreement", type=float, default=0.9999)
    p.add_argument("--no-fp16", action="store_true", help="do not add the FP16 ONNX variant for GPUs")
    p.add_argument("--card-extra", type=Path, help="markdown appended to the model card")
    p.add_argument("--allow-weak", action="store_true",
                   help="export even when the lowest validation Dice of a structure is below the gate (or no "
                        "validation was recorded); the manifest and model card record the override")
    p.add_argument("--min-val-dice", type=float, metavar="DICE",
                   help="the gate for this export (default: the training config's export.min_val_dice, 0.5)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from export.export import export_bundle
    from export.parity import ParityThresholds

    result = export_bundle(
        args.checkpoint, args.out, name=args.name, version=args.version, description=args.description,
        tensorrt=args.tensorrt, triton_dir=args.triton,
        thresholds=ParityThresholds(args.max_abs_logit_diff, args.min_argmax_agreement), fp16=not args.no_fp16,
        card_extra=args.card_extra.read_text() if args.card_extra else "",
        allow_weak=args.allow_weak, min_val_dice=args.min_val_dice,
    )
    print(json.dumps(result, indent=2))
    return 0
