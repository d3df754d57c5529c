"""Per-window latency of every inference engine this machine has, on one bundle.

Prints one JSON object: the machine (CPU model, GPU name), then for each engine kind
(TensorRT, ONNX Runtime's TensorRT provider, ONNX Runtime CUDA, OpenVINO CPU in FP32 and,
where the CPU has it, BF16 (``openvino-bf16``), ONNX Runtime CPU) and
batch size either its latency (median ms per call and per window over ``--repeats``
timed calls after warm-ups) or why it could not run here. ``--checkpoint`` adds
PyTorch eager on the same architecture (CPU, and CUDA when present) as the reference.
Ratios are against ONNX Runtime CPU measured in the same run.

    python tests/benchmarks/bench_engines.py [--bundle DIR] [--checkpoint best.pt]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from appliance.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from appliance.engines.select import AUTO_ORDER, EngineConfig, select_engine
from appliance.errors import WbspineError


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _time(call, batch: np.ndarray, repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        call(batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"ms_per_call": round(med * 1e3, 3), "ms_per_window": round(med * 1e3 / len(batch), 3),
            "min_ms_per_call": round(min(times) * 1e3, 3)}


def engine_rows(bundle, batches, repeats: int, warmup: int, rng) -> list[dict]:
    window = tuple(bundle.manifest.preprocessing.window_zyx)
    rows = []
    variants = [(k, EngineConfig(kind=k)) for k in AUTO_ORDER]
    variants.insert(AUTO_ORDER.index("openvino") + 1, ("openvino-bf16", EngineConfig(kind="openvino",
                                                                                      cpu_precision="bf16")))
    for kind, config in variants:
        for b in batches:
            row = {"engine": kind, "batch": b}
            try:
                sel = select_engine(bundle, replace(config, batch_size=b))
            except WbspineError as exc:
                rows.append(row | {"unavailable": str(exc)[:300]})
                break  # the same reason for every batch size
            x = rng.standard_normal((b, 1, *window)).astype(np.float32)
            try:
                rows.append(row | _time(sel.engine.run, x, repeats, warmup))
            finally:
                sel.engine.close()
    return rows


def torch_rows(checkpoint: Path, window, batches, repeats: int, warmup: int, rng) -> list[dict]:
    import torch

    from training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        net = model.to(dev)
        for b in batches:
            x = torch.from_numpy(rng.standard_normal((b, 1, *window)).astype(np.float32)).to(dev)

            def call(_, x=x, net=net, dev=dev):
                with torch.inference_mode():
                    y = net(x)
                    y = y[0] if isinstance(y, (list, tuple)) else y
                    if dev == "cuda":
                        torch.cuda.synchronize()
                return y

            rows.append({"engine": f"torch-eager-{dev}", "batch": b}
                        | _time(call, np.empty((b,)), repeats, warmup))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    ap.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint of the same architecture (reference)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    bundle = load_bundle(args.bundle)
    out = {"cpu": cpu_name(), "gpu": None, "bundle": f"{bundle.manifest.model.name} {bundle.manifest.model.version}",
           "window_zyx": list(bundle.manifest.preprocessing.window_zyx)}
    try:
        import torch

        out["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    rows = engine_rows(bundle, args.batch, args.repeats, args.warmup, rng)
    if args.checkpoint:
        rows += torch_rows(args.checkpoint, out["window_zyx"], args.batch, args.repeats, args.warmup, rng)
    ref = {r["batch"]: r["ms_per_window"] for r in rows if r["engine"] == "cpu" and "ms_per_window" in r}
    for r in rows:
        if "ms_per_window" in r and r["batch"] in ref:
            r["speedup_vs_ort_cpu"] = round(ref[r["batch"]] / r["ms_per_window"], 2)
    out["rows"] = rows
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
