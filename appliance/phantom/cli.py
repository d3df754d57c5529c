"""``wbspine phantom``: write a synthetic study and print its planted truth."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantom",
        help="generate a synthetic weight-bearing CBCT study with exact ground truth",
        description="Write image.nii.gz, labels.nii.gz (0 background, 1 vertebral bodies, "
                    "2 pelvis incl. sacrum, 3 femoral heads), truth.json and a DICOM CT "
                    "series (dicom/) of a synthetic standing whole-spine study.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed → identical files)")
    p.add_argument("--size", choices=("small", "full"), default="small",
                   help="small: 2.5 mm voxels for tests; full: the protocol's 0.68×0.68×1 mm grid")
    p.add_argument("--cobb-deg", type=float, help="pin the major coronal Cobb angle")
    p.add_argument("--kyphosis-deg", type=float, help="pin thoracic kyphosis T1–T12")
    p.add_argument("--lordosis-deg", type=float, help="pin lumbar lordosis L1–L5")
    p.add_argument("--pelvic-incidence-deg", type=float, help="pin pelvic incidence")
    p.add_argument("--pelvic-tilt-deg", type=float, help="pin pelvic tilt")
    p.add_argument("--max-rotation-deg", type=float, help="pin the apical axial rotation (signed)")
    p.add_argument("--anatomy", choices=("classic", "rich"), default="classic",
                   help="rich: add organs, vessels, muscles, bowel, skin, table and metal")
    p.add_argument("--tissues", action="store_true", help="also write the tissue map tissues.nii.gz")
    p.add_argument("--no-dicom", action="store_true", help="skip the DICOM series")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from appliance.phantom.generate import generate_study, write_study
    from appliance.phantom.report import print_truth

    overrides = {
        "cobb_deg": args.cobb_deg,
        "kyphosis_deg": args.kyphosis_deg,
        "lordosis_deg": args.lordosis_deg,
        "pelvic_incidence_deg": args.pelvic_incidence_deg,
        "pelvic_tilt_deg": args.pelvic_tilt_deg,
        "max_rotation_deg": args.max_rotation_deg,
    }
    start = time.perf_counter()
    study = generate_study(args.seed, args.size, anatomy=args.anatomy,
                           **{k: v for k, v in overrides.items() if v is not None})
    paths = write_study(study, args.out, dicom=not args.no_dicom, tissues=args.tissues)
    print_truth(study.truth, paths, time.perf_counter() - start)
    return 0
