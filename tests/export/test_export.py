"""`wbspine export`: a real (tiny, untrained) checkpoint → ONNX → parity → verified bundle."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import torch  # the train extra; `make test` installs it

from appliance.bundle import load_bundle
from appliance.errors import BundleError, ExportError
from export.export import export_bundle
from export.parity import ParityThresholds
from training import checkpoint as ckpt_mod
from training.config import Config
from training.model import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = Config.model_validate({
        "data": {"working_spacing_mm": [3.0, 3.0, 3.0], "patch_xy": 32},
        "model": {"width": 4},
    })
    torch.manual_seed(0)
    model = build_model(config.semantic_dict()["model"], config.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    sched = torch.optim.lr_scheduler.StepLR(opt, 100, 0.8)
    validation = {"table3": {"vertebral_bodies": {"train": 3, "test": 2, "dice": 0.5,
                                                  "volume_similarity": 0.9, "recall": 0.6}}}
    ckpt = ckpt_mod.build_checkpoint(config, model, optimizer=opt, scheduler=sched, scaler=None, epoch=0,
                                     alpha=0.8, best_score=None, validation=validation, history=[])
    return ckpt_mod.save(ckpt, tmp_path_factory.mktemp("ckpt") / "last.pt")


@pytest.fixture(scope="module")
def bundle(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "bundle"
    triton = tmp_path_factory.mktemp("triton")
    result = export_bundle(checkpoint, out, version="9.9.9", tensorrt="auto", triton_dir=triton)
    return out, triton, result


def test_export_writes_a_bundle_the_appliance_accepts(bundle):
    out, _, result = bundle
    b = load_bundle(out)
    m = b.manifest
    assert m.model.version == "9.9.9" and m.io.num_classes == 4
    assert m.preprocessing.window_zyx == (16, 32, 32)
    assert m.preprocessing.working_spacing_mm == (3.0, 3.0, 3.0)
    assert m.preprocessing.normalization_t == 2000.0
    assert [lab.name for lab in m.labels] == ["background", "vertebral_bodies", "pelvis", "femoral_heads"]
    assert m.labels[1].code.value == "3572006"
    assert m.validation.structures["vertebral_bodies"].dice == 0.5
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", m.source.git_commit)
    assert (out / "MODEL_CARD.md").read_text().count("Not for clinical use") == 1
    # no GPU here: the bundle is valid without an engine and says why
    assert "tensorrt_plan" not in [f.role for f in m.files] and "not built" in result["tensorrt"]


def test_parity_figures_are_recorded_and_pass(bundle):
    _, _, result = bundle
    p = result["parity"]
    assert p["passed"] and p["windows"] == 4
    assert p["max_abs_logit_diff"] <= 1e-3 and p["argmax_agreement"] >= 0.9999


def test_exported_model_has_dynamic_batch_and_runs_in_onnxruntime(bundle):
    import onnxruntime as ort

    out, _, _ = bundle
    s = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    assert inp.name == "image" and isinstance(inp.shape[0], str) and inp.shape[1:] == [1, 16, 32, 32]
    y = s.run(None, {"image": np.zeros((3, 1, 16, 32, 32), np.float32)})[0]
    assert y.shape == (3, 4, 16, 32, 32)


def test_triton_repository_matches_the_manifest(bundle):
    out, triton, _ = bundle
    m = load_bundle(out).manifest
    model_dir = triton / m.model.name
    text = (model_dir / "config.pbtxt").read_text()
    assert f'name: "{m.model.name}"' in text and 'platform: "onnxruntime_onnx"' in text
    assert f'name: "{m.io.input_name}"' in text and f'name: "{m.io.output_name}"' in text
    z, y, x = m.preprocessing.window_zyx
    assert f"dims: [ 1, {z}, {y}, {x} ]" in text
    assert f"dims: [ {m.io.num_classes}, {z}, {y}, {x} ]" in text
    assert (model_dir / "1" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()


def test_export_ships_the_checkpoint_weights(bundle, checkpoint):
    from training.weights import load_weights

    out, _, _ = bundle
    m = load_bundle(out).manifest
    assert m.file("weights").path == "model.safetensors"
    state, meta = load_weights(out / "model.safetensors")
    expected = ckpt_mod.load(checkpoint)["model"]["state_dict"]
    assert state.keys() == expected.keys()  # every head included: nothing starts fresh
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    assert meta["model_config"] == m.training.config["model"]
    assert "model.safetensors" in (out / "MODEL_CARD.md").read_text()


def test_tampered_bundle_is_refused(bundle, tmp_path):
    import shutil

    out, _, _ = bundle
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="sha256|bytes"):
        load_bundle(copy)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["schema_version"] = "wbspine.bundle/99"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema"):
        load_bundle(copy)


def test_failed_parity_fails_the_export(checkpoint, tmp_path):
    with pytest.raises(ExportError, match="parity"):
        export_bundle(checkpoint, tmp_path / "b", tensorrt="off",
                      thresholds=ParityThresholds(max_abs_logit_diff=0.0, min_argmax_agreement=1.01))


def test_export_refuses_a_non_empty_folder(checkpoint, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    with pytest.raises(ExportError, match="not empty"):
        export_bundle(checkpoint, tmp_path / "x")


def test_fp16_variant_has_its_own_parity_and_is_in_the_manifest(bundle):
    import onnx

    out, _, result = bundle
    m = load_bundle(out).manifest
    entry = m.file("onnx_fp16")
    assert entry is not None and entry.path == "model_fp16.onnx"
    p = result["parity_fp16"]
    assert p["passed"] and p["windows"] == 4 and p["max_abs_logit_diff"] > 0  # really half precision
    model = onnx.load(str(out / "model_fp16.onnx"))
    # float32 in and out (same arrays as FP32), float16 weights inside, instance norm in float32
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    assert "FP16 variant" in (out / "MODEL_CARD.md").read_text()


def test_failed_fp16_parity_fails_the_export(checkpoint, tmp_path):
    with pytest.raises(ExportError, match="FP16 parity"):
        export_bundle(checkpoint, tmp_path / "b", tensorrt="off",
                      fp16_thresholds=ParityThresholds(max_abs_logit_diff=0.0, min_argmax_agreement=1.01))
