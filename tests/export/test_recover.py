"""The default bundle's trainable weights: recovered from its ONNX, equal to it, listed and
hashed in the manifest; bundles without them stay valid (issue 17)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import torch  # the train extra; `make test` installs it

from appliance.bundle import DEFAULT_BUNDLE_DIR, config_hash, load_bundle
from appliance.errors import BundleError, ExportError
from export.parity import check_parity
from export.recover import CARD_HEADING, add_weights, bump_patch, recover
from export.validate import RECORD_HEADING


@pytest.fixture(scope="module")
def recovered():
    return recover(DEFAULT_BUNDLE_DIR)


def test_recovered_network_matches_onnx_runtime(recovered):
    model, state, bundle = recovered
    x = np.random.default_rng(3).random((2, 1) + tuple(bundle.manifest.preprocessing.window_zyx), dtype=np.float32)
    report = check_parity(model, bundle.onnx_path, x)
    assert report.passed and report.argmax_agreement == 1.0
    assert report.max_abs_logit_diff < 1e-3
    assert len(state) == len(model.state_dict()) - 6  # all but the 3 deep-supervision heads


def test_shipped_weights_are_the_onnx_tensors(recovered):
    from training.weights import load_weights

    _, state, bundle = recovered
    entry = bundle.manifest.file("weights")
    assert entry is not None and entry.path == "model.safetensors"
    shipped, meta = load_weights(bundle.path("weights"))
    assert meta["model_config"] == bundle.manifest.training.config["model"] and meta["num_classes"] == 4
    assert shipped.keys() == state.keys()
    assert all(torch.equal(shipped[k], v) for k, v in state.items())


def test_a_tampered_weights_file_is_refused(tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(DEFAULT_BUNDLE_DIR, copy)
    with open(copy / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x7f\x7f\x7f\x7f")  # same size, other bytes
    with pytest.raises(BundleError, match="sha256") as info:
        load_bundle(copy)
    assert info.value.code == "hash_mismatch"


def _without_weights(tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(DEFAULT_BUNDLE_DIR, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert any(f["role"] == "weights" for f in manifest["files"])
    manifest["files"] = [f for f in manifest["files"] if f["role"] != "weights"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "model.safetensors").unlink()
    return copy


def test_a_bundle_without_weights_still_loads(tmp_path):
    bundle = load_bundle(_without_weights(tmp_path))
    assert bundle.path("weights") is None and bundle.onnx_path.is_file()


def test_add_weights_lists_them_bumps_the_patch_and_keeps_the_record_last(tmp_path, recovered):
    model, state, _ = recovered
    copy = _without_weights(tmp_path)
    before = load_bundle(copy).manifest
    x = np.random.default_rng(4).random((1, 1) + tuple(before.preprocessing.window_zyx), dtype=np.float32)
    report = {k: check_parity(model, copy / "model.onnx", x).as_dict() for k in ("random", "phantom")}
    add_weights(copy, state, report)
    after = load_bundle(copy).manifest  # verified: every hash rewritten
    assert after.model.version == bump_patch(before.model.version) != before.model.version
    assert after.file("weights").path == "model.safetensors"
    card = (copy / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# Model card: {after.model.name} {after.model.version}\n")
    assert card.index(CARD_HEADING) < card.index(RECORD_HEADING)
    with pytest.raises(ExportError, match="already lists weights"):
        add_weights(copy, state, report)


def test_recover_refuses_an_onnx_of_another_network(tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(DEFAULT_BUNDLE_DIR, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["training"]["config"]["model"]["width"] = 4
    manifest["training"]["config_sha256"] = config_hash(manifest["training"]["config"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"encoders\.0\.0\.conv1\.weight: network \(4, 1, 3, 3, 3\), "
                                          r"ONNX \(8, 1, 3, 3, 3\)"):
        recover(copy)


def test_bump_patch():
    assert bump_patch("1.1.0") == "1.1.1" and bump_patch("2.0.9") == "2.0.10"
    with pytest.raises(ExportError):
        bump_patch("1.1")
