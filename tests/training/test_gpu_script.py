"""training/gpu_default_model.sh end to end, on the CPU with a tiny config: the dataset is
generated in parallel, training stops at its time limit or its last epoch, and best.pt,
the held-out report and the engine table come out (the lent-GPU run used this script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = " ".join(f"--set {kv}" for kv in (
    "data.working_spacing_mm=[5.0,5.0,5.0]", "data.patch_xy=32", "data.windows_per_case=2", "model.width=4",
    "train.epochs=2", "train.batch_size=2", "train.val_every=1", "data.inference_overlap_slices=0"))


@pytest.mark.slow
def test_gpu_default_model_script_runs_on_cpu(tmp_path):
    env = {**os.environ, "PY": sys.executable, "DEVICE": "cpu", "N": "10", "SIZE": "small",
           "WORKERS": "2", "DATA": str(tmp_path / "ds"), "EXTRA": TINY,
           "BENCH_ARGS": "--batch 1 --repeats 2 --warmup 0", "PYTHONPATH": str(REPO),
           "REAL_ARGS": "--scans chest-ct --seeds"}
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "training/gpu_default_model.sh", str(out), "900"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "generating 10 small phantoms with 2 processes" in proc.stdout
    manifest = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    phantoms = [c for c in manifest["cases"] if c["id"].startswith("phantom-")]
    assert phantoms and all(c.get("tissues") for c in phantoms)  # issue 17's recipe: rich anatomy
    assert json.loads((out / "run" / "config.json").read_text())["synth"]["probability"] > 0
    assert (out / "run" / "best.pt").is_file() and (out / "run" / "log.csv").is_file()
    report = json.loads((out / "heldout" / "report.json").read_text())
    assert set(report["table3"]) == {"vertebral_bodies", "pelvis", "femoral_heads"}
    engines = json.loads((out / "engines.json").read_text())
    cpu = [r for r in engines["rows"] if r["engine"] == "cpu"]
    assert cpu and cpu[0]["ms_per_window"] > 0
    assert any(r["engine"] == "torch-eager-cpu" for r in engines["rows"])
    assert all("unavailable" in r or "ms_per_window" in r for r in engines["rows"])
    real = json.loads((out / "real.json").read_text())  # the held-out real scan, scored
    assert "real scan benchmark failed" not in proc.stdout
    assert {r["scan"] for r in real["rows"]} == {"chest-ct"}
