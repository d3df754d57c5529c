"""The embedded default model: present, intact, small, honest about what it is."""

from __future__ import annotations

from appliance.bundle import DEFAULT_BUNDLE_DIR, load_bundle


def test_default_bundle_verifies_and_is_small():
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)  # schema + sha256 of every file
    m = bundle.manifest
    assert m.model.name == "wbspine-default"
    assert {f.role for f in m.files} >= {"onnx", "onnx_fp16", "model_card", "weights"}  # weights: issue 17
    assert sum(f.size_bytes for f in m.files) < 30 * 2 ** 20
    assert m.preprocessing.window_zyx == (16, 128, 128)
    assert [lab.name for lab in m.labels] == ["background", "vertebral_bodies", "pelvis", "femoral_heads"]
    card = (DEFAULT_BUNDLE_DIR / "MODEL_CARD.md").read_text()
    assert "pseudo-labels" in card and "Clinical use requires retraining" in card
