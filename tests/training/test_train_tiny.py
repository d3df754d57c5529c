"""A tiny model trained for a short while on CPU learns the phantoms' vertebral bodies.

Set-up: 6 small phantoms (4 train, 1 val, 1 test), 5 mm working voxels, 32×32×16
windows, width 8, Adam at lr 2e-3 (the paper's 1e-5 is for 500 epochs; here 12
epochs of 64 windows), batch 4. Threshold chosen from observation on a 2-core CPU
shared with other jobs: held-out vertebral-body Dice 0.50-0.66 in trial runs (native
2.5 mm grid, after nearest-neighbour upsampling from 5 mm, which alone caps Dice well
below 1); asserted with margin at ``MIN_BODY_DICE``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import torch  # the train extra; `make test` installs it

MIN_BODY_DICE = 0.35


@pytest.mark.slow
def test_tiny_model_learns_vertebral_bodies(tmp_path):
    from training import dataset as ds
    from training.checkpoint import model_from_checkpoint
    from training.config import load_config
    from training.data import prepare_split
    from training.evaluate import evaluate_cases, write_report
    from training.loop import train

    data = ds.from_phantoms(tmp_path / "ds", 6, seed=500, size="small", val_fraction=1 / 6,
                            test_fraction=1 / 6)
    cfg = load_config(None, [
        f'data.dataset="{data.root}"', "data.working_spacing_mm=[5.0, 5.0, 5.0]", "data.patch_xy=32",
        "data.windows_per_case=16", "data.foreground_fraction=0.9", "data.inference_overlap_slices=0",
        "model.width=8", "optim.lr=2e-3", "train.epochs=12", "train.batch_size=4", "train.val_every=100",
        f'run.out="{tmp_path / "run"}"', "run.num_workers=0", "run.progress=false", "run.torch_threads=1"])
    start = time.perf_counter()
    result = train(cfg)
    train_s = time.perf_counter() - start
    losses = [h["loss"] for h in result.history]
    model, _ = model_from_checkpoint(result.out / "last.pt")
    test_cases = data.split("test")
    per_case = evaluate_cases(model, data, test_cases,
                              prepare_split(data, "test", cfg.data.working_spacing_mm, data.root / "cache"), cfg)
    report = write_report(tmp_path / "report", per_case, data.split("train"))
    dice = report["table3"]["vertebral_bodies"]["dice"]
    print(f"train {train_s:.0f} s, loss {losses[0]:.3f} → {losses[-1]:.3f}, held-out body Dice {dice:.3f}, "
          f"table3 {report['table3']}")
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), "the loss should fall"
    assert dice >= MIN_BODY_DICE
