"""``wbspine train --init-from``: fine-tuning starts from the bundle's trained weights, and a
network that is not the source's is refused with what differs (issues 17 and 22)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import torch  # the train extra; `make test` installs it

from appliance.bundle import DEFAULT_BUNDLE_DIR, config_hash, load_bundle
from appliance.errors import TrainingError

#: The default model's network (its manifest's training.config.model: width 8, the
#: default strides); the tiny recipe's other settings keep the run to seconds.
DEFAULT_WIDTH = {"model.width": 8}
#: The fine-tuning runs validate only at their last epoch (the loop always does).
FEW_STEPS = {"train.val_every": 100}


def _bundle_weights():
    from training.weights import load_weights

    return load_weights(DEFAULT_BUNDLE_DIR / "model.safetensors")[0]


def test_first_forward_pass_is_the_bundles_onnx_output(tiny_config):
    """The network --init-from builds computes what the shipped ONNX computes."""
    import onnxruntime as ort

    from training.init_from import initialise, read_source
    from training.model import build_model

    config = tiny_config(**DEFAULT_WIDTH, **{"train.init_from": f'"{DEFAULT_BUNDLE_DIR}"'})
    model = build_model(config.semantic_dict()["model"], config.num_classes)
    fresh = initialise(model, config, read_source(config.train.init_from))
    assert fresh == [f"heads.{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    x = np.random.default_rng(0).random((1, 1, 16, 128, 128), dtype=np.float32)
    with torch.no_grad():
        ours = model.eval()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(DEFAULT_BUNDLE_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"image": x})[0]
    assert np.abs(ours - reference).max() < 1e-3
    assert np.array_equal(ours.argmax(1), reference.argmax(1))


def test_fine_tuning_from_the_default_bundle_starts_at_its_weights_and_moves(tiny_config):
    from training.loop import train

    shipped = _bundle_weights()
    # lr 0: the loop's weights after its steps are exactly the bundle's (the init is real)
    still = train(tiny_config("still", **DEFAULT_WIDTH, **{"train.init_from": f'"{DEFAULT_BUNDLE_DIR}"',
                                                           "optim.lr": 0.0, "train.epochs": 1}, **FEW_STEPS))
    assert all(torch.equal(still.state_dict[k], v) for k, v in shipped.items())
    # a few real steps: finite loss, weights changed (and still near the bundle's)
    moved = train(tiny_config("moved", **DEFAULT_WIDTH, **{"train.init_from": f'"{DEFAULT_BUNDLE_DIR}"',
                                                           "optim.lr": 1e-4, "train.epochs": 2}, **FEW_STEPS))
    assert all(np.isfinite(row["loss"]) for row in moved.history)
    changed = [k for k, v in shipped.items() if not torch.equal(moved.state_dict[k], v)]
    assert len(changed) == len(shipped)
    # the run records where it started (config hash covers it)
    saved = json.loads((moved.out / "config.json").read_text())
    assert saved["train"]["init_from"] == str(DEFAULT_BUNDLE_DIR)


def test_a_different_width_is_refused_with_the_differing_keys(tiny_config):
    from training.loop import train

    with pytest.raises(TrainingError) as info:
        train(tiny_config(**{"train.init_from": f'"{DEFAULT_BUNDLE_DIR}"'}))  # tiny width 4
    message = str(info.value)
    assert "model.width: config 4, source 8" in message
    assert "encoders.0.0.conv1.weight: config (4, 1, 3, 3, 3), source (8, 1, 3, 3, 3)" in message


def test_same_shapes_but_another_norm_is_refused(tiny_config):
    """GroupNorm has InstanceNorm's parameter shapes: the config comparison catches it."""
    from training.init_from import initialise, read_source
    from training.model import build_model

    config = tiny_config(**DEFAULT_WIDTH, **{"model.norm": '"group"'})
    model = build_model(config.semantic_dict()["model"], config.num_classes)
    with pytest.raises(TrainingError, match="model.norm: config 'group', source 'instance'"):
        initialise(model, config, read_source(DEFAULT_BUNDLE_DIR))


def test_a_bundle_without_weights_is_refused_with_the_way_out(tmp_path):
    from training.init_from import read_source

    copy = tmp_path / "old"
    shutil.copytree(DEFAULT_BUNDLE_DIR, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["role"] != "weights"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "model.safetensors").unlink()
    with pytest.raises(TrainingError, match="no trainable weights.*export.recover"):
        read_source(copy)


def test_init_from_a_checkpoint_loads_every_tensor(tiny_config, tmp_path):
    from training import checkpoint as ckpt_io
    from training.init_from import initialise, read_source
    from training.model import build_model

    config = tiny_config()
    torch.manual_seed(1)
    trained = build_model(config.semantic_dict()["model"], config.num_classes)
    opt = torch.optim.Adam(trained.parameters())
    ckpt = ckpt_io.build_checkpoint(config, trained, optimizer=opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1),
                                    scaler=None, epoch=0, alpha=0.8, best_score=None, validation={}, history=[])
    path = ckpt_io.save(ckpt, tmp_path / "best.pt")
    torch.manual_seed(2)
    model = build_model(config.semantic_dict()["model"], config.num_classes)
    assert initialise(model, config, read_source(path)) == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.state_dict().items())


def test_cli_lowers_the_learning_rate_unless_given(capsys):
    from appliance.cli import main

    cfg = "training/configs/default_model.toml"
    assert main(["train", "--config", cfg, "--init-from", str(DEFAULT_BUNDLE_DIR), "--print-config"]) == 0
    lowered = json.loads(capsys.readouterr().out)
    assert main(["train", "--config", cfg, "--print-config"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert lowered["optim"]["lr"] == pytest.approx(base["optim"]["lr"] / 10)
    assert lowered["train"]["init_from"] == str(DEFAULT_BUNDLE_DIR) and base["train"]["init_from"] is None
    assert main(["train", "--config", cfg, "--init-from", str(DEFAULT_BUNDLE_DIR), "--set", "optim.lr=3e-4",
                 "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["optim"]["lr"] == 3e-4


def test_config_hash_of_a_config_without_init_from_is_unchanged():
    """Adding the field must not change the hash of configs written before it: the shipped
    bundle's training config validates and hashes to what its manifest records."""
    from training.config import Config

    recorded = load_bundle(DEFAULT_BUNDLE_DIR).manifest.training
    config = Config.model_validate(recorded.config)
    assert config_hash(config.semantic_dict()) == recorded.config_sha256
