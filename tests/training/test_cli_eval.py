"""CLI wiring (no torch at --help time) and the Table-3 report."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _parser():
    from training.cli import register_dataset, register_evaluate, register_train

    parser = argparse.ArgumentParser(prog="wbspine")
    sub = parser.add_subparsers(dest="command")
    for register in (register_train, register_dataset, register_evaluate):
        register(sub)
    return parser


def test_cli_module_does_not_import_torch():
    code = ("import sys, training.cli as c, argparse; p = argparse.ArgumentParser(); s = p.add_subparsers();"
            "c.register_train(s); c.register_dataset(s); c.register_evaluate(s);"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})


def test_dataset_from_phantoms_and_print_config(tmp_path, capsys):
    p = _parser()
    args = p.parse_args(["dataset", "from-phantoms", "--out", str(tmp_path / "d"), "--n", "3", "--seed", "9"])
    assert args.handler(args) == 0
    assert len(json.loads((tmp_path / "d" / "dataset.json").read_text())["cases"]) == 3
    capsys.readouterr()
    args = p.parse_args(["train", "--set", "optim.lr=1e-4", "--out", str(tmp_path / "r"), "--print-config"])
    assert args.handler(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 1e-4 and len(printed["config_hash"]) == 16


def test_table3_report_from_per_case_values(tmp_path):
    from appliance.metrics import structure_metrics

    import torch  # noqa: F401
    from training.evaluate import write_report

    ref = np.zeros((4, 4, 4), dtype=np.uint8)
    ref[:2] = 1
    pred = ref.copy()
    pred[0, 0, 0] = 0
    m = structure_metrics(pred, ref)
    per_case = {"a": {"pseudo_labels": False, "metrics": {"vertebral_bodies": m["vertebral_bodies"]}},
                "b": {"pseudo_labels": True, "metrics": {k: m[k] for k in ("vertebral_bodies", "pelvis")}}}
    data = write_report(tmp_path, per_case)
    assert data["table3"]["vertebral_bodies"]["test"] == 2
    assert data["table3"]["vertebral_bodies"]["dice"] == pytest.approx(2 * 31 / 63)
    assert data["table3"]["pelvis"]["dice"] is None  # absent from both: undefined, never 0 or 1
    md = (tmp_path / "report.md").read_text()
    assert "| vertebral_bodies | 0 | 2 |" in md and "pseudo-labels" in md


def test_sliding_window_with_an_oracle_predictor():
    import torch
    from training.evaluate import predict_labels

    class Threshold(torch.nn.Module):  # "x > 0.5 → class 1": the oracle
        def forward(self, x):
            return torch.cat([0.5 - x, x - 0.5], dim=1) * 50

    image = np.full((21, 13, 18), -1000.0, dtype=np.float32)
    image[5:17, 3:9, 4:12] = 1500.0
    pred = predict_labels(Threshold(), image, t=2000.0, window_slices=16, multiple_xy=8, overlap=8)
    assert pred.shape == image.shape
    assert np.array_equal(pred, (image > 0).astype(np.uint8))
    short = predict_labels(Threshold(), image[:9], t=2000.0, window_slices=16, overlap=0)
    assert np.array_equal(short, (image[:9] > 0).astype(np.uint8))
