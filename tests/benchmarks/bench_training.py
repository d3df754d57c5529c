"""Training throughput on this machine: windows/s and the share of time spent waiting for data.

Run by hand: ``PYTHONPATH=. python tests/benchmarks/bench_training.py [--workers 0 2]``.
Prints one JSON object. Builds a small phantom dataset in a temporary folder, trains
``--epochs`` epochs per setting and reports the last epoch (the first pays for worker
start-up). Also times the data pipeline alone (windows/s one process can produce).
Figures are only comparable on the same machine under the same load (load average is
reported: on a shared CPU other jobs take cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--spacing-mm", type=float, default=2.5)
    ap.add_argument("--patch-xy", type=int, default=96)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()

    import torch

    from training.config import load_config
    from training.data import WindowDataset, prepare_split
    from training.dataset import from_phantoms
    from training.loop import train

    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "torch": torch.__version__, "torch_threads_default": torch.get_num_threads(),
                                "load_average_before": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as tmp:
        data = from_phantoms(Path(tmp) / "ds", 4, seed=900, size="small", val_fraction=0.0, test_fraction=0.25)
        common = [f'data.dataset="{data.root}"',
                  f"data.working_spacing_mm=[{args.spacing_mm}, {args.spacing_mm}, {args.spacing_mm}]",
                  f"data.patch_xy={args.patch_xy}", "data.windows_per_case=8", f"model.width={args.width}",
                  f"train.batch_size={args.batch_size}", f"train.epochs={args.epochs}", "train.val_every=1000",
                  "run.progress=false"] + ([f"run.torch_threads={args.threads}"] if args.threads else [])
        cfg = load_config(None, common + [f'run.out="{tmp}/data"'])
        start = time.perf_counter()
        cases = prepare_split(data, "train", cfg.data.working_spacing_mm, data.root / "cache")
        prepare_s = time.perf_counter() - start
        wds = WindowDataset(cases, cfg, seed=0)
        start = time.perf_counter()
        n = 48
        for i in range(n):
            wds[(0, i)]
        result["data_pipeline_only"] = {"windows_per_s_one_process": round(n / (time.perf_counter() - start), 1),
                                        "prepare_cases_s": round(prepare_s, 2)}
        result["settings"] = {"window_zyx": [16, args.patch_xy, args.patch_xy], "spacing_mm": args.spacing_mm,
                              "width": args.width, "batch_size": args.batch_size,
                              "windows_per_epoch": len(wds)}
        for workers in args.workers:
            cfg = load_config(None, common + [f'run.out="{tmp}/run{workers}"', f"run.num_workers={workers}"])
            history = train(cfg).history
            last = history[-1]
            result[f"num_workers={workers}"] = {
                "windows_per_s": round(last["windows_per_s"], 2),
                "data_wait_share": round(last["data_wait_share"], 3),
                "epoch_s": round(last["seconds"], 1),
                "first_epoch_windows_per_s": round(history[0]["windows_per_s"], 2)}
    result["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
