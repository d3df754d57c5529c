"""`python -m export.validate`: a bundle scored through the appliance, recorded in the bundle."""

from __future__ import annotations

import json

import pytest

from appliance.bundle import load_bundle
from appliance.engines.select import EngineConfig
from appliance.errors import ExportError
from export.export import export_bundle
from export.validate import main, record, validate_bundle
from training import dataset as ds

from tests.export.test_export import checkpoint  # noqa: F401  (module fixture: a tiny real checkpoint)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "data"
    ds.from_phantoms(root, n=3, seed=40, size="small", val_fraction=0.0, test_fraction=0.34)
    return root


@pytest.fixture
def bundle(checkpoint, tmp_path):  # noqa: F811
    out = tmp_path / "bundle"
    export_bundle(checkpoint, out, tensorrt="off", fp16=False)
    return out


def test_validation_is_scored_on_each_case_grid_and_recorded(bundle, dataset, capsys):
    test_id = ds.load(dataset).split("test")[0].id
    train_id = ds.load(dataset).split("train")[0].id
    result, md = validate_bundle(bundle, dataset, ("test",), (train_id,))
    assert set(result["per_case_all"]) == {test_id, train_id}
    assert result["per_case_all"][train_id]["seen_in_training"] is True
    table = result["table3"]  # held-out cases only
    assert table["vertebral_bodies"]["test"] == 1 and table["vertebral_bodies"]["train"] == 2
    for name, e in table.items():
        m = result["per_case_all"][test_id]["metrics"][name]
        assert e["dice"] == m["dice"] and 0.0 <= (m["dice"] or 0.0) <= 1.0
    assert "(seen in training)" in md and "Cases seen in training" in md
    assert result["engine"] == "openvino:CPU:f32"  # the appliance's automatic CPU engine
    assert "Engine: `openvino:CPU:f32`." in md  # the card says what was validated
    ort, _ = validate_bundle(bundle, dataset, ("test",), engine=EngineConfig(kind="cpu"))
    assert ort["engine"] == "onnxruntime:CPUExecutionProvider"
    for name, e in ort["table3"].items():  # FP32 on both engines: the same segmentation
        assert e["dice"] == pytest.approx(table[name]["dice"], abs=2e-3)
    record(bundle, result, md, "phantoms: test split")
    b = load_bundle(bundle)  # hashes rewritten: still verifies
    assert b.manifest.validation.dataset == "phantoms: test split"
    assert set(b.manifest.validation.structures) == {k for k, e in table.items() if e["dice"] is not None}
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "Validation through the appliance" in card
    record(bundle, result, md, "phantoms: test split, again")  # re-recording replaces the section
    again = (bundle / "MODEL_CARD.md").read_text()
    assert again.count("# Validation through the appliance") == 1 and again == card
    assert load_bundle(bundle).manifest.validation.dataset == "phantoms: test split, again"


def test_cli_records_and_refuses_unknown_cases(bundle, dataset, tmp_path, capsys):
    assert main([str(bundle), "--dataset", str(dataset), "--record", "--json", str(tmp_path / "v.json")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["table3"]["pelvis"]["test"] == 1
    assert load_bundle(bundle).manifest.validation.dataset.startswith("data: test split")
    assert main([str(bundle), "--dataset", str(dataset), "--case", "nope"]) == 2
    assert "no case ['nope']" in capsys.readouterr().err
    with pytest.raises(ExportError, match="no case in split"):
        validate_bundle(bundle, dataset, ("val",))
