"""``wbspine infer INPUT [--bundle DIR] --out DIR``: every result for one study.

Runs :func:`appliance.pipeline.process_study`: ``labels.nii.gz`` (uint8, on the input
grid: 0 background, 1 vertebral bodies, 2 pelvis incl. sacrum, 3 femoral heads),
``measurements.json`` (``wbspine.measurements/1``), ``timing.json`` (per stage, engine,
crop and window counts) and, for a DICOM series, ``seg.dcm``, ``sr.dcm``, key images and
STL (plain and DICOM Encapsulated STL). A NIfTI input has no DICOM source to reference,
so it gets the STL models but no DICOM objects. Heavy imports happen in the handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from appliance.bundle import DEFAULT_BUNDLE_DIR
    from appliance.engines.select import AUTO_ORDER

    p = sub.add_parser(
        "infer",
        help="segment a study (DICOM folder or NIfTI) into vertebral bodies, pelvis and femoral heads",
        description="Segment INPUT (a folder with one CT series, or a NIfTI file) with a model bundle, measure "
                    "it and write labels.nii.gz, measurements.json, timing.json and, for a DICOM series, "
                    "seg.dcm, sr.dcm, key images and STL models. "
                    f"Default bundle: {DEFAULT_BUNDLE_DIR}",
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="DICOM series folder or image file")
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID to use when the DICOM folder holds several "
                                               "(the error lists them)")
    p.add_argument("--bundle", type=Path, default=None, help=f"model bundle folder (default: {DEFAULT_BUNDLE_DIR})")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--engine", default="auto", choices=("auto", *AUTO_ORDER, "triton"),
                   help="inference engine (auto: TensorRT > ONNX Runtime CUDA > OpenVINO CPU > ONNX Runtime CPU; "
                        "cpu = ONNX Runtime CPU)")
    p.add_argument("--triton-url", help="Triton server (host:port) for --engine triton")
    p.add_argument("--threads", type=int, help="CPU threads for the CPU engines (default: all usable CPUs)")
    p.add_argument("--cpu-precision", default="f32", choices=("f32", "bf16"),
                   help="OpenVINO precision: f32 (default), or bf16 on CPUs with AMX/AVX512-BF16 (see the model card)")
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap in [0, 1) (default 0.5)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per engine call (default 4)")
    p.add_argument("--tta", action="store_true", help="left-right mirroring test-time augmentation (2× slower)")
    p.add_argument("--no-crop", action="store_true", help="infer the whole volume (no bony-region crop)")
    p.add_argument("--no-track", action="store_true",
                   help="plan every slab over its whole bony region instead of following the spine found below it")
    p.add_argument("--labels-only", action="store_true",
                   help="write labels.nii.gz, measurements.json and timing.json only (no SEG, SR, key images, STL)")
    p.add_argument("--no-column-check", action="store_true",
                   help="write every result even when no vertebral column is found (appliance.column; "
                        "for looking at what a model does, not for patients)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from appliance.bundle import DEFAULT_BUNDLE_DIR, load_bundle
    from appliance.crop import CropConfig
    from appliance.engines.select import EngineConfig
    from appliance.inference import InferenceConfig
    from appliance.pipeline import process_study

    bundle = load_bundle(args.bundle or DEFAULT_BUNDLE_DIR)
    config = InferenceConfig(overlap=args.overlap, batch_size=args.batch_size, tta_mirror=args.tta,
                             crop=CropConfig(enabled=not args.no_crop), track=not args.no_track)
    result = _with_progress(args, lambda progress: process_study(
        args.input, args.out, bundle, config=config, outputs=not args.labels_only, progress=progress,
        check_column=not args.no_column_check, series_uid=args.series,
        engine=EngineConfig(kind=args.engine, threads=args.threads, cpu_precision=args.cpu_precision,
                            triton_url=args.triton_url)))
    t = result.timing_s
    print(f"{len(result.paths)} files in {result.out_dir} (engine {result.info.get('engine')}, "
          f"{t.get('total_s', 0):.1f} s: load {t.get('load_s', 0):.1f}, preprocess {t['preprocess_s']:.1f}, "
          f"inference {t['inference_s']:.1f}, postprocess {t['postprocess_s']:.1f}, "
          f"measure {t.get('measure_s', 0):.1f}, outputs {t.get('outputs_s', 0):.1f})")
    for warning in result.measurements.get("warnings", []):
        print(f"warning: {warning}")
    return 0


def _with_progress(args: argparse.Namespace, work):
    if args.no_progress:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("windows"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task("infer", total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))
