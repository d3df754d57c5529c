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


def test_evaluate_on_an_empty_split_fails_with_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import torch

    from appliance.cli import main
    from training import checkpoint as ckpt_mod
    from training import data
    from training.config import Config
    from training.dataset import from_phantoms
    from training.model import build_model

    dataset = from_phantoms(tmp_path / "d", 2, seed=9, size="small", val_fraction=0.5, test_fraction=0.0)
    config = Config.model_validate({"data": {"dataset": str(dataset.root), "working_spacing_mm": [5.0, 5.0, 5.0],
                                             "patch_xy": 32}, "model": {"width": 4}})
    model = build_model(config.semantic_dict()["model"], config.num_classes)
    opt = torch.optim.Adam(model.parameters())
    ckpt = ckpt_mod.build_checkpoint(config, model, optimizer=opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1),
                                     scaler=None, epoch=0, alpha=0.8, best_score=None, validation={}, history=[])
    path = ckpt_mod.save(ckpt, tmp_path / "last.pt")
    monkeypatch.setattr(data, "prepare_split", lambda *a, **k: pytest.fail("resampled an empty split"))
    capsys.readouterr()
    assert main(["evaluate", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"wbspine evaluate: error: split 'test' of {dataset.root} has no cases (train: 1, val: 1, test: 0)"
    assert not (tmp_path / "r").exists()
