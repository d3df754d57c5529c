"""Inference benchmark (issue 5): ours vs MONAI ``sliding_window_inference`` + PyTorch eager.

Run by hand (heavy; needs the ``train`` extra and ``monai``)::

    PYTHONPATH=. python tests/benchmarks/bench_inference.py [--bundle DIR | --checkpoint PT | --random] [--size full] [--slices N] [--skip-monai]

Prints one JSON object. Same weights on both sides. By default the model we ship: the
default bundle's trainable weights (``model.safetensors``) in PyTorch for MONAI, the
bundle itself (its ``model.onnx``, verified) for ours, window, spacing and t from its
manifest; ``--bundle DIR`` another bundle with weights. ``--checkpoint PT`` (e.g.
``runs/default-model/best.pt``) or ``--random`` (``training.model.ResUNet3d``, random
weights, seed 0) are exported to ONNX for ours. Both are timed from the loaded volume
to the label map on the input grid:

* ours: ``appliance.inference.segment`` (crop, streamed sliding window on the engine
  ``--engine`` picks — ``auto``: OpenVINO CPU when installed, ``cpu``: ONNX Runtime CPU —,
  cleanup, label-aware resampling back) in a child process that imports no torch,
  so ``peak_rss_mb`` is ours alone (the child's VmHWM; it holds the input volume);
* MONAI: same reorient/resample/normalise on the whole volume, ``sliding_window_inference``
  (overlap 0.5, Gaussian, sw_batch_size 4, whole volume at the working spacing), argmax,
  the same resampling back.

``label_dice_agreement``: per structure, ours vs MONAI on the input grid.
``raw_dice_agreement_in_crop``: the networks' raw argmax at the working spacing inside
our crop (where both ran the network): isolates engine + blending parity from crop and
cleanup. With *random* weights the network does not predict background in air, so the
first figure mostly measures how much random foreground MONAI paints outside the body;
it only becomes meaningful with trained weights (issue 4).
``parity_same_windows`` (``--parity``): ours with MONAI's exact windows (no crop, no
skipping, no cleanup) vs MONAI, raw argmax at the working spacing: ONNX Runtime + our
streamed blending against PyTorch + MONAI's blending, independent of the weights.
``achieved_gflops``: convolution FLOPs per window (counted with hooks on the torch model)
× windows run / time spent in the engine; ``matmul_gflops``: numpy float32 2048² matmul
in the same run, the CPU's practical peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WINDOW = (16, 160, 160)      # training.config: 16 slices [paper], patch_xy 160 [ours]
SPACING = (1.5, 1.5, 1.5)    # training.config working spacing
T = 2000.0                   # training.config inference_t
NUM_CLASSES = 4
WEIGHTS = "random, torch.manual_seed(0)"


def use_checkpoint(path: Path):
    """The checkpoint's model (eval) and its window, spacing and t for both sides."""
    global WINDOW, SPACING, T, WEIGHTS
    from export.onnx_export import window_zyx
    from training.checkpoint import model_from_checkpoint

    model, ckpt = model_from_checkpoint(path)
    WINDOW = tuple(window_zyx(ckpt))
    SPACING = tuple(float(s) for s in ckpt["working_spacing_mm"])
    T = float(ckpt["normalization"]["t"])
    WEIGHTS = f"checkpoint {path.name}, config {ckpt.get('config_hash')}"
    return model.eval()


def use_bundle(path: Path):
    """The bundle's network in PyTorch (eval) from its ``weights`` file; window, spacing
    and t from its manifest. The deep-supervision heads the file may lack act only in
    training, so they stay at their random init."""
    global WINDOW, SPACING, T, WEIGHTS, NUM_CLASSES
    from appliance.bundle import load_bundle
    from training.init_from import read_source
    from training.model import build_model

    source = read_source(path)  # verifies the bundle; refuses one without weights
    bundle = load_bundle(path)
    pre = bundle.manifest.preprocessing
    WINDOW, SPACING, T = tuple(pre.window_zyx), tuple(pre.working_spacing_mm), float(pre.normalization_t)
    NUM_CLASSES = bundle.manifest.io.num_classes
    model = build_model(source.model_config, NUM_CLASSES)
    model.load_state_dict({**model.state_dict(), **source.state_dict}, strict=True)
    WEIGHTS = (f"bundle {bundle.manifest.model.name} {bundle.manifest.model.version} "
               f"(weights sha256 {source.sha256[:12]})")
    return model.eval()


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def window_flops(model, window) -> float:
    """Multiply-add FLOPs (×2) of Conv3d/ConvTranspose3d layers for one window."""
    import torch

    total = [0.0]

    def conv(mod, inp, out):
        k = float(np.prod(mod.kernel_size))
        if isinstance(mod, torch.nn.ConvTranspose3d):
            total[0] += 2 * inp[0].numel() * mod.out_channels * k / mod.groups
        else:
            total[0] += 2 * out.numel() * (mod.in_channels / mod.groups) * k

    hooks = [m.register_forward_hook(conv) for m in model.modules()
             if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))]
    with torch.no_grad():
        model(torch.zeros(1, 1, *window))
    for h in hooks:
        h.remove()
    return total[0]


def make_bundle(root: Path, model) -> Path:
    import torch

    global_config = {"window": WINDOW, "spacing": SPACING, "t": T}
    from appliance.bundle import Manifest, config_hash, file_entry, write_manifest

    root.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, 1, *WINDOW)
    torch.onnx.export(model, (x,), str(root / "model.onnx"), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=17, dynamo=False)
    config = {"benchmark": True, "weights": WEIGHTS, **global_config}
    manifest = Manifest.model_validate({
        "schema_version": "wbspine.bundle/1",
        "model": {"name": "bench-random-resunet", "version": "0"},
        "created": "2026-01-01T00:00:00Z",
        "source": {"git_commit": "unknown"},
        "training": {"config": config, "config_sha256": config_hash(config)},
        "preprocessing": {"working_spacing_mm": SPACING, "window_zyx": WINDOW, "normalization_t": T},
        "io": {"input_name": "image", "output_name": "logits", "num_classes": NUM_CLASSES},
        "labels": [{"value": i, "name": n} for i, n in
                   enumerate(["background", "vertebral_bodies", "pelvis", "femoral_heads"])],
        "files": [file_entry(root, "model.onnx", "onnx").model_dump()],
    })
    write_manifest(root, manifest)
    return root


def save_volume(volume, path: Path) -> None:
    np.save(path / "image.npy", volume.array)
    (path / "geometry.json").write_text(json.dumps({
        "spacing_mm": volume.spacing_mm, "origin_mm": volume.origin_mm,
        "direction": np.asarray(volume.direction).tolist()}))


def load_volume(path: Path):
    from appliance.volume import Volume

    g = json.loads((path / "geometry.json").read_text())
    return Volume(np.load(path / "image.npy"), tuple(g["spacing_mm"]), tuple(g["origin_mm"]),
                  np.asarray(g["direction"]))


def vm_hwm_mb() -> float:
    """Peak resident set of *this* process image (VmHWM). Not ``ru_maxrss``: Linux carries
    the parent's peak over ``fork``/``exec`` into it, which made the child report the
    phantom generator's memory."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def child_ours(work: Path, threads: int | None, parity: bool, track: bool = True, kind: str = "auto") -> None:
    """Our pipeline, alone in this process (no torch imported)."""
    from appliance.bundle import load_bundle
    from appliance.engines.select import EngineConfig, select_engine
    from appliance.inference import InferenceConfig, segment

    image = load_volume(work)
    bundle = load_bundle(work / "bundle")
    engine = select_engine(bundle, EngineConfig(kind=kind, threads=threads)).engine
    engine_s = [0.0]

    def timed(batch):
        t = time.perf_counter()
        y = engine.run(batch)
        engine_s[0] += time.perf_counter() - t
        return y

    t0 = time.perf_counter()
    result = segment(image, bundle, timed, InferenceConfig(batch_size=4, keep_raw=True, track=track))
    ours_s = time.perf_counter() - t0
    peak_mb = vm_hwm_mb()
    np.save(work / "ours_labels.npy", result.labels.array)
    np.save(work / "ours_raw.npy", result.raw)
    if parity:  # same windows as MONAI: no crop, no empty-window skipping, no cleanup
        from appliance.crop import CropConfig
        from appliance.postprocess import PostprocessConfig
        full = segment(image, bundle, engine.run, InferenceConfig(
            crop=CropConfig(enabled=False), empty_below=None, postprocess=PostprocessConfig(enabled=False),
            keep_raw=True))
        np.save(work / "ours_raw_nocrop.npy", full.raw)
    assert "torch" not in sys.modules
    print(json.dumps({"ours_s": ours_s, "engine_s": engine_s[0], "engine": engine.name, "timing_s": result.timing_s,
                      "info": result.info, "peak_rss_mb": peak_mb}))


def monai_pipeline(image, model):
    """MONAI reference: whole volume at the working spacing, PyTorch eager."""
    import torch
    from monai.inferers import sliding_window_inference

    from appliance.postprocess import to_input_grid
    from appliance.preprocess import normalize, reorient, resample
    from appliance.volume import Volume

    t0 = time.perf_counter()
    canonical = image if np.allclose(image.direction, np.eye(3)) else reorient(image)
    work = resample(canonical, SPACING)
    x = normalize(work.array, T)
    with torch.no_grad():
        logits = sliding_window_inference(torch.from_numpy(x)[None, None], roi_size=WINDOW, sw_batch_size=4,
                                          predictor=model, overlap=0.5, mode="gaussian")
    raw = logits[0].argmax(0).numpy().astype(np.uint8)
    del logits
    labels = to_input_grid(Volume(raw, work.spacing_mm, work.origin_mm, work.direction), image)
    return time.perf_counter() - t0, labels, raw


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    s = int(a.sum()) + int(b.sum())
    return None if s == 0 else round(2 * int((a & b).sum()) / s, 4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="full", choices=("small", "full"))
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--slices", type=int, help="keep only N input slices (centred on the pelvis/lumbar region)")
    p.add_argument("--pad-to", type=int, help="add air slices on top up to N slices (memory check at 512²×900)")
    p.add_argument("--threads", type=int)
    p.add_argument("--skip-monai", action="store_true")
    p.add_argument("--parity", action="store_true",
                   help="also run ours without crop/skipping/cleanup and compare its raw argmax with MONAI's")
    p.add_argument("--bundle", type=Path, help="bundle with trainable weights for both sides "
                                              "(default: the shipped appliance/models/default)")
    p.add_argument("--checkpoint", type=Path, help="a training checkpoint's weights for both sides instead")
    p.add_argument("--random", action="store_true", help="random weights (seed 0) instead of the shipped model")
    p.add_argument("--no-track", action="store_true", help="ours without following the spine (appliance.tracking)")
    p.add_argument("--engine", default="auto", help="our engine kind (auto: OpenVINO when installed; cpu: ONNX Runtime)")
    p.add_argument("--child-ours", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_ours:
        child_ours(args.child_ours, args.threads, args.parity, not args.no_track, args.engine)
        return 0

    import torch

    from appliance.phantom import generate_study
    from appliance.volume import Volume
    from training.model import ResUNet3d

    if args.threads:
        torch.set_num_threads(args.threads)
    study = generate_study(args.seed, args.size)
    image = study.image
    if args.slices and args.slices < image.shape_zyx[0]:
        fg = np.flatnonzero((study.labels.array == 2).any(axis=(1, 2)))  # pelvis slices
        centre = int(fg.max()) if fg.size else image.shape_zyx[0] // 2
        z0 = max(0, min(centre - args.slices // 2, image.shape_zyx[0] - args.slices))
        image = Volume(image.array[z0:z0 + args.slices].copy(), image.spacing_mm,
                       tuple(image.index_to_lps(np.array([[0, 0, z0]], float))[0]), image.direction)
    if args.pad_to and args.pad_to > image.shape_zyx[0]:
        extra = np.full((args.pad_to - image.shape_zyx[0], *image.shape_zyx[1:]), -1024, image.array.dtype)
        image = Volume(np.concatenate([image.array, extra]), image.spacing_mm, image.origin_mm, image.direction)
    del study
    bundle_dir = None
    if args.checkpoint:
        model = use_checkpoint(args.checkpoint)
    elif args.random:
        torch.manual_seed(0)
        model = ResUNet3d(NUM_CLASSES).eval()
    else:
        from appliance.bundle import DEFAULT_BUNDLE_DIR

        bundle_dir = args.bundle or DEFAULT_BUNDLE_DIR
        model = use_bundle(bundle_dir)
    out: dict = {"card": "CPU", "cpus": len(os.sched_getaffinity(0)), "loadavg_before": os.getloadavg()[0],
                 "input_shape_zyx": list(image.shape_zyx), "voxels": int(np.prod(image.shape_zyx)),
                 "window_zyx": list(WINDOW), "working_spacing_mm": list(SPACING)}  # after --checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        save_volume(image, work)
        if bundle_dir is not None:  # ours runs the bundle as shipped
            shutil.copytree(bundle_dir, work / "bundle")
        else:
            make_bundle(work / "bundle", model)
        cmd = [sys.executable, __file__, "--child-ours", str(work)] + \
              (["--threads", str(args.threads)] if args.threads else []) + (["--parity"] if args.parity else []) + \
              (["--no-track"] if args.no_track else []) + ["--engine", args.engine]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return 1
        ours = json.loads(proc.stdout.strip().splitlines()[-1])
        ours_labels = np.load(work / "ours_labels.npy")
        ours_raw = np.load(work / "ours_raw.npy")
        nocrop = np.load(work / "ours_raw_nocrop.npy") if args.parity else None
    print(json.dumps({"ours": ours}), file=sys.stderr)
    w = ours["info"]["windows"]
    flops = window_flops(model, WINDOW)
    out.update({
        "ours_s": round(ours["ours_s"], 2), "ours_timing_s": {k: round(v, 2) for k, v in ours["timing_s"].items()},
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "windows": w["windows"], "windows_run": w["run"], "windows_skipped_empty": w["skipped_empty"],
        "crop": ours["info"]["crop"], "working_shape_zyx": ours["info"]["working_shape_zyx"],
        "tracking": ours["info"].get("tracking"), "weights": WEIGHTS,
        "gflop_per_window": round(flops / 1e9, 2),
        "engine": ours["engine"], "engine_s": round(ours["engine_s"], 2),
        "achieved_gflops": round(flops * w["run"] / ours["engine_s"] / 1e9, 2),
    })
    if not args.skip_monai:
        monai_s, monai_labels, monai_raw = monai_pipeline(image, model)
        from appliance.sliding_window import SlidingWindow
        monai_windows = len(SlidingWindow(WINDOW).plan(monai_raw.shape)[1])  # same plan as MONAI's (tested)
        crop = tuple(slice(a, b) for a, b in zip(ours["info"]["crop"]["start_zyx"], ours["info"]["crop"]["stop_zyx"]))
        names = {1: "vertebral_bodies", 2: "pelvis", 3: "femoral_heads"}
        out.update({
            "monai_s": round(monai_s, 2), "monai_windows": monai_windows,
            "speedup": round(monai_s / ours["ours_s"], 2),
            "label_dice_agreement": {n: dice(ours_labels == k, monai_labels == k) for k, n in names.items()},
            "raw_dice_agreement_in_crop": {n: dice(ours_raw == k, monai_raw[crop] == k) for k, n in names.items()},
            "raw_voxel_agreement_in_crop": round(float(np.mean(ours_raw == monai_raw[crop])), 5),
        })
        if nocrop is not None:
            out["parity_same_windows"] = {
                "voxel_agreement": round(float(np.mean(nocrop == monai_raw)), 6),
                "dice": {n: dice(nocrop == k, monai_raw == k) for k, n in names.items()}}
    out["matmul_gflops"] = round(matmul_gflops(), 1)
    out["network_fraction_of_matmul_peak"] = round(out["achieved_gflops"] / out["matmul_gflops"], 3)
    out["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
