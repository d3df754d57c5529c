"""``wbspine report LABELS.nii.gz --dicom SOURCE_DIR --out DIR [--measurements JSON]``:
DICOM SEG, TID 1500 SR, key images and STL models from an existing label map and the
series it was computed on.

Wire it into the main parser with ``appliance.outputs.cli.register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from appliance.errors import MissingExtraError, OutputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand; its handler is ``args.handler``."""
    p = sub.add_parser("report", help="DICOM SEG, SR, key images and STL from a label map",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("labels", type=Path, help="label map (NIfTI) on the grid of the DICOM series")
    p.add_argument("--dicom", required=True, type=Path, help="folder of the source DICOM series")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--measurements", type=Path, default=None,
                   help="measurements JSON (wbspine.measurements/1); measured from the labels if omitted")
    p.add_argument("--algorithm-name", default="wbspine", help="segmentation algorithm name (SEG/SR)")
    p.add_argument("--algorithm-version", default=None, help="its version (default: wbspine's)")
    p.add_argument("--max-triangles", type=int, default=200_000, help="triangle budget per STL model")
    p.add_argument("--no-stl", action="store_true", help="skip the STL models")
    p.set_defaults(handler=run)


def _measurements(args: argparse.Namespace, labels) -> dict:
    if args.measurements is not None:
        try:
            return json.loads(args.measurements.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise OutputError(f"cannot read measurements {args.measurements}: {exc}") from exc
    if importlib.util.find_spec("appliance.measure.api") is None:
        raise MissingExtraError("appliance.measure", "measure", "Measuring without --measurements")
    from appliance.measure.api import measure

    return measure(labels.array, labels.affine)


def run(args: argparse.Namespace) -> int:
    from appliance import __version__
    from appliance.outputs.algorithm import AlgorithmInfo
    from appliance.outputs.writer import write_outputs
    from appliance.volume import read_nifti

    labels = read_nifti(args.labels)
    algorithm = AlgorithmInfo(args.algorithm_name, args.algorithm_version or __version__)
    paths = write_outputs(labels, args.dicom, _measurements(args, labels), args.out, algorithm,
                          max_triangles=args.max_triangles, stl=not args.no_stl)
    for role, path in paths.items():
        print(f"{role:28s} {path}")
    return 0
