"""The paper's schedules: lr × 0.8 every 100 epochs, alpha 0.8 × 0.8 every 30 epochs."""

from __future__ import annotations

import pytest

import torch  # the train extra; `make test` installs it

from training.config import load_config
from training.loop import alpha_at, lr_at


def test_schedule_values_match_the_paper():
    o = load_config().optim
    assert lr_at(0, o) == pytest.approx(1e-5) and lr_at(99, o) == pytest.approx(1e-5)
    assert lr_at(100, o) == pytest.approx(0.8e-5) and lr_at(250, o) == pytest.approx(0.64e-5)
    assert lr_at(499, o) == pytest.approx(1e-5 * 0.8 ** 4)
    assert alpha_at(0, o) == pytest.approx(0.8) and alpha_at(29, o) == pytest.approx(0.8)
    assert alpha_at(30, o) == pytest.approx(0.64) and alpha_at(95, o) == pytest.approx(0.8 ** 4)


def test_torch_scheduler_follows_the_same_schedule():
    o = load_config().optim
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=o.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, o.lr_step_epochs, o.lr_gamma)
    for epoch in range(500):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(epoch, o), rel=1e-9)
        opt.step()
        sched.step()


def test_training_logs_the_schedule(tiny_config):
    from training.loop import train

    cfg = tiny_config("sched", **{"optim.lr_step_epochs": 1, "optim.alpha_step_epochs": 1,
                                  "train.val_every": 100})
    result = train(cfg)
    history = result.history
    assert [h["lr"] for h in history] == pytest.approx([1e-3, 0.8e-3])
    assert [h["alpha"] for h in history] == pytest.approx([0.8, 0.64])
    import csv

    rows = list(csv.DictReader((result.out / "log.csv").open()))
    assert [float(r["alpha"]) for r in rows] == pytest.approx([0.8, 0.64])
    assert rows[0]["val_dice_vertebral_bodies"] == "nan" and rows[1]["val_dice_vertebral_bodies"] != "nan"
