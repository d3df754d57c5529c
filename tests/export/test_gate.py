"""`wbspine export`'s quality gate: a weak or unvalidated model is refused before any ONNX
work, unless --allow-weak, which the manifest and card then record (issue 22)."""

from __future__ import annotations

import json

import pytest

import torch  # the train extra; `make test` installs it

from appliance.bundle import load_bundle
from appliance.cli import main
from appliance.errors import ExportError
from export.export import export_bundle
from training import checkpoint as ckpt_mod
from training.config import Config
from training.model import build_model


def _entry(dice: float, cases: int = 2) -> dict:
    return {"train": 3, "test": cases, "dice": dice, "volume_similarity": 0.9, "recall": 0.6}


def make_checkpoint(path, table3: dict | None, **config) -> str:
    cfg = Config.model_validate({"data": {"working_spacing_mm": [3.0, 3.0, 3.0], "patch_xy": 32},
                                 "model": {"width": 4}, **config})
    torch.manual_seed(0)
    model = build_model(cfg.semantic_dict()["model"], cfg.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    sched = torch.optim.lr_scheduler.StepLR(opt, 100, 0.8)
    validation = {"table3": table3} if table3 is not None else {}
    ckpt = ckpt_mod.build_checkpoint(cfg, model, optimizer=opt, scheduler=sched, scaler=None, epoch=0,
                                     alpha=0.8, best_score=None, validation=validation, history=[])
    return str(ckpt_mod.save(ckpt, path))


@pytest.fixture(scope="module")
def weak(tmp_path_factory):
    """Good bodies and heads, a useless pelvis (the issue's Dice 0.007), one structure never validated."""
    return make_checkpoint(tmp_path_factory.mktemp("weak") / "last.pt", {
        "vertebral_bodies": _entry(0.93), "pelvis": _entry(0.007), "femoral_heads": _entry(0.96),
        "unvalidated": {"train": 0, "test": 0, "dice": None, "volume_similarity": None, "recall": None}})


def test_a_model_weak_on_one_structure_is_refused_and_nothing_is_written(weak, tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(ExportError) as info:
        export_bundle(weak, out, tensorrt="off", fp16=False)
    message = str(info.value)
    assert "\n" not in message
    assert "pelvis" in message and "0.007" in message and "0.5" in message and "--allow-weak" in message
    assert not out.exists()


def test_a_checkpoint_without_validation_is_refused(tmp_path):
    ckpt = make_checkpoint(tmp_path / "last.pt", None)
    with pytest.raises(ExportError, match="no validation recorded; train with a val split or pass --allow-weak"):
        export_bundle(ckpt, tmp_path / "bundle", tensorrt="off", fp16=False)
    zero = make_checkpoint(tmp_path / "zero.pt", {"pelvis": _entry(0.9, cases=0)})  # scored on no case
    with pytest.raises(ExportError, match="no validation recorded"):
        export_bundle(zero, tmp_path / "bundle", tensorrt="off", fp16=False)
    assert not (tmp_path / "bundle").exists()


def test_the_gate_comes_from_the_training_config(tmp_path):
    strict = make_checkpoint(tmp_path / "strict.pt", {"vertebral_bodies": _entry(0.9)},
                             export={"min_val_dice": 0.95})
    with pytest.raises(ExportError, match=r"vertebral_bodies is 0\.900 .*below the gate 0\.95"):
        export_bundle(strict, tmp_path / "b", tensorrt="off", fp16=False)
    # and the export's own threshold overrides it
    export_bundle(strict, tmp_path / "b", tensorrt="off", fp16=False, min_val_dice=0.8)
    gate = load_bundle(tmp_path / "b").manifest.validation.gate
    assert gate.min_dice == 0.8 and gate.passed and not gate.overridden and gate.dice == 0.9


def test_allow_weak_exports_and_records_the_override(weak, tmp_path):
    out = tmp_path / "bundle"
    result = export_bundle(weak, out, tensorrt="off", fp16=False, allow_weak=True)
    m = load_bundle(out).manifest
    assert m.validation.gate.model_dump() == {"min_dice": 0.5, "passed": False, "overridden": True,
                                              "structure": "pelvis", "dice": 0.007}
    assert result["validation_gate"]["overridden"] is True
    assert m.validation.structures["pelvis"].dice == 0.007 and "unvalidated" not in m.validation.structures
    card = (out / "MODEL_CARD.md").read_text()
    assert "Export quality gate NOT passed" in card and "--allow-weak" in card and "0.007 (pelvis)" in card


def test_cli_refuses_with_one_line_and_a_nonzero_exit(weak, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", weak, "--out", str(out), "--tensorrt", "off", "--no-fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("wbspine export: error: refusing to export")
    assert "pelvis" in err and not out.exists()
    assert main(["export", weak, "--out", str(out), "--tensorrt", "off", "--no-fp16", "--allow-weak"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["validation_gate"]["overridden"] is True


def test_gate_setting_keeps_the_hash_of_configs_without_it():
    base = Config()
    assert "export" not in base.semantic_dict()
    stricter = Config.model_validate({"export": {"min_val_dice": 0.8}})
    assert stricter.semantic_dict()["export"] == {"min_val_dice": 0.8} and stricter.hash != base.hash
