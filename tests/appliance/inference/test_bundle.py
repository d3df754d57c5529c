import json

import pytest

from appliance.bundle import MAX_MANIFEST_BYTES, load_bundle, parse_manifest
from appliance.errors import BundleError

from tests.appliance.inference.inference_helpers import make_bundle, rewrite_manifest


@pytest.fixture()
def bundle_dir(tmp_path):
    return make_bundle(tmp_path / "bundle")


def test_round_trip(bundle_dir):
    b = load_bundle(bundle_dir)
    m = b.manifest
    assert m.schema_version == "wbspine.bundle/1"
    assert m.preprocessing.window_zyx == (16, 32, 32)
    assert m.preprocessing.working_spacing_mm == (2.5, 2.5, 2.5)
    assert [lab.name for lab in m.labels] == ["background", "vertebral_bodies", "pelvis", "femoral_heads"]
    assert b.onnx_path == bundle_dir / "model.onnx"
    again = parse_manifest(m.model_dump_json().encode())
    assert again == m


def test_refuses_tampered_file(bundle_dir):
    data = bytearray((bundle_dir / "model.onnx").read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    (bundle_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert info.value.code == "hash_mismatch" and "sha256" in str(info.value)


def test_refuses_unknown_schema_version(bundle_dir):
    rewrite_manifest(bundle_dir, schema_version="wbspine.bundle/2")
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert info.value.code == "unknown_schema" and "wbspine.bundle/2" in str(info.value)


def test_refuses_oversized_manifest_before_reading(bundle_dir):
    data = json.loads((bundle_dir / "manifest.json").read_text())
    data["model"]["description"] = "x" * (MAX_MANIFEST_BYTES + 10)
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert info.value.code == "too_large"


@pytest.mark.parametrize("change, code", [
    ({"files": [{"path": "../model.onnx", "role": "onnx", "sha256": "0" * 64, "size_bytes": 1}]}, "invalid"),
    ({"extra_field": 1}, "invalid"),
    ({"training": {"config": {"a": 1}, "config_sha256": "0" * 64}}, "invalid"),
])
def test_refuses_invalid_manifests(bundle_dir, change, code):
    rewrite_manifest(bundle_dir, **change)
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert info.value.code == code


def test_refuses_deep_json_and_missing_files(bundle_dir, tmp_path):
    with pytest.raises(BundleError) as info:
        parse_manifest(b"[" * 5000 + b"]" * 5000)
    assert info.value.code == "not_json"
    (bundle_dir / "MODEL_CARD.md").unlink()
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert info.value.code == "missing_file"
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "nowhere")
    assert info.value.code == "not_found"


def test_weights_role_is_listed_and_checked_but_at_most_once(bundle_dir):
    """Bundle 1.1.1+: trainable weights (role ``weights``), hashed like every file; the
    appliance only verifies them (it runs the ONNX)."""
    from appliance.bundle import file_entry

    (bundle_dir / "model.safetensors").write_bytes(b"weights")  # the appliance never parses it
    entry = file_entry(bundle_dir, "model.safetensors", "weights").model_dump()
    files = json.loads((bundle_dir / "manifest.json").read_text())["files"]
    rewrite_manifest(bundle_dir, files=files + [entry])
    assert load_bundle(bundle_dir).path("weights") == bundle_dir / "model.safetensors"
    (bundle_dir / "model.safetensors").write_bytes(b"Weights")
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert info.value.code == "hash_mismatch"
    (bundle_dir / "model.safetensors").write_bytes(b"weights")
    (bundle_dir / "w2.safetensors").write_bytes(b"weights")
    second = file_entry(bundle_dir, "w2.safetensors", "weights").model_dump()
    rewrite_manifest(bundle_dir, files=files + [entry, second])
    with pytest.raises(BundleError, match="at most one file with role 'weights'"):
        load_bundle(bundle_dir)
