"""Checkpoints: exact resume after an interruption, and what export needs."""

from __future__ import annotations

import pytest

import torch  # the train extra; `make test` installs it

from training import checkpoint as ckpt_io
from training.loop import train


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_interruption_continues_with_identical_state(tiny_config):
    straight = train(tiny_config("straight"))
    cfg = tiny_config("interrupted")
    first = train(cfg, max_epochs=1)
    assert len(first.history) == 1 and not _same_weights(first.state_dict, straight.state_dict)
    resumed = train(cfg, resume=True)
    assert _same_weights(resumed.state_dict, straight.state_dict)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    a = ckpt_io.load(straight.out / "last.pt")
    b = ckpt_io.load(resumed.out / "last.pt")
    assert a["epoch"] == b["epoch"] == 1
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    assert a["scheduler"] == b["scheduler"] and a["alpha"] == b["alpha"]


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    import random

    import numpy as np

    state = ckpt_io.rng_state()
    first = (random.random(), np.random.random(), torch.rand(1).item())
    ckpt_io.save({"rng": state}, tmp_path / "s.pt")
    ckpt_io.set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.random(), torch.rand(1).item()) == first


def test_resume_refuses_another_config(tiny_config):
    from appliance.errors import TrainingError

    train(tiny_config("run"), max_epochs=1)
    with pytest.raises(TrainingError, match="same config"):
        train(tiny_config("run", **{"optim.lr": 5e-4}), resume=True)


def test_checkpoint_holds_what_export_needs(tiny_config):
    result = train(tiny_config("export", **{"train.epochs": 1}))
    ckpt = ckpt_io.load(result.out / "last.pt")  # weights_only load: no pickled objects
    assert ckpt["label_map"] == {0: "background", 1: "vertebral_bodies", 2: "pelvis", 3: "femoral_heads"}
    assert ckpt["working_spacing_mm"] == [5.0, 5.0, 5.0]
    assert ckpt["window"]["slices"] == 16 and ckpt["orientation"] == "LPS"
    assert ckpt["normalization"]["t"] == 2000.0 and ckpt["normalization"]["offset"] == 1000.0
    assert len(ckpt["config_hash"]) == 16 and ckpt["training_config"]["optim"]["lr"] == 1e-3
    assert "table3" in ckpt["validation"] and (result.out / "best.pt").exists()
    model, _ = ckpt_io.model_from_checkpoint(result.out / "best.pt")
    assert not model.training
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 16, 32, 32))
    assert out.shape == (1, 4, 16, 32, 32)
    assert (result.out / "log.csv").read_text().count("\n") == 2


def test_time_limit_stops_between_epochs_and_resume_finishes_the_run(tiny_config):
    """run.time_limit_s (a lent GPU's or a batch job's budget) ends the call after the
    last epoch that fits; the checkpoint is whole and --resume reaches the same weights."""
    straight = train(tiny_config("straight3", **{"train.epochs": 3}))
    cfg = tiny_config("limited", **{"train.epochs": 3, "run.time_limit_s": 1e-3})
    cut = train(cfg)
    assert len(cut.history) == 1  # the first epoch always runs; the second would not fit
    assert ckpt_io.load(cut.out / "last.pt")["epoch"] == 0
    resumed = train(tiny_config("limited", **{"train.epochs": 3}), resume=True)  # run.* is not hashed
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert _same_weights(resumed.state_dict, straight.state_dict)
