"""The node's processor factory: bundle and engine checked once at start, engine settings used per study."""

import json

import pytest

from appliance.errors import EngineError
from appliance.pipeline import make_processor

from tests.appliance.inference.inference_helpers import make_bundle


def test_processor_builds_the_configured_engine_once_for_every_study(small_study, tmp_path, monkeypatch):
    from appliance.engines import select
    from appliance.phantom.dicom_series import write_ct_series

    built = []
    real = select.select_engine
    monkeypatch.setattr(select, "select_engine", lambda *a, **k: built.append(1) or real(*a, **k))
    bundle = make_bundle(tmp_path / "bundle", window=(16, 32, 32), spacing=(2.5, 2.5, 2.5), oracle="smoothed")
    series = write_ct_series(small_study, tmp_path / "dicom")
    process = make_processor(bundle, engine={"kind": "cpu", "threads": 1})  # column check on
    for study in ("a", "b"):
        files = process(series, tmp_path / study)
        assert files and all(p.suffix == ".dcm" and p.is_file() for p in files)
        timing = json.loads((tmp_path / study / "timing.json").read_text())
        assert timing["engine"] == "onnxruntime:CPUExecutionProvider"
    assert len(built) == 1  # at start only


def test_engine_this_box_cannot_run_stops_the_processor_at_start(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    with pytest.raises(EngineError, match="CUDAExecutionProvider"):
        make_processor(bundle, engine={"kind": "cuda"})
    with pytest.raises(EngineError, match="triton_url"):
        make_processor(bundle, engine={"kind": "triton"})
    with pytest.raises(EngineError, match="unknown engine setting"):
        make_processor(bundle, engine={"kind": "cpu", "gpu_count": 2})
    assert callable(make_processor(bundle))  # auto: the best engine here


def _background_bundle(root):
    """A bundle whose model says background everywhere (what a dead network outputs)."""
    import numpy as np

    from appliance.bundle import file_entry, load_bundle, write_manifest
    from tests.appliance.inference.inference_helpers import conv_model

    make_bundle(root)
    conv_model(root / "model.onnx", np.zeros(4), np.array([10.0, 0.0, 0.0, 0.0]))
    m = load_bundle(root, verify=False).manifest
    write_manifest(root, m.model_copy(update={"files": [file_entry(root, f.path, f.role) for f in m.files]}))
    return root


def test_no_vertebral_column_stops_the_study_before_measuring_and_meshing(small_study, tmp_path, capsys):
    from appliance.bundle import load_bundle
    from appliance.cli import main
    from appliance.engines.select import EngineConfig
    from appliance.errors import NoColumnError
    from appliance.pipeline import process_study
    from appliance.volume import write_nifti

    bundle = _background_bundle(tmp_path / "bundle")
    image = write_nifti(small_study.image, tmp_path / "image.nii.gz")
    with pytest.raises(NoColumnError) as info:
        process_study(image, tmp_path / "out", load_bundle(bundle), engine=EngineConfig(kind="cpu", threads=1))
    message = str(info.value)
    assert "\n" not in message and message.startswith("no vertebral column found: 0 vertebral-body components")
    assert "test-threshold 0.0.1" in message and "lowest validation Dice 0.500 (vertebral_bodies)" in message
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["labels.nii.gz"]  # no measurements, no STL
    assert main(["infer", str(image), "--bundle", str(bundle), "--out", str(tmp_path / "cli"), "--no-progress",
                 "--engine", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wbspine infer: error: no vertebral column found")
    process = make_processor(bundle, engine={"kind": "cpu", "threads": 1})  # the node's job fails with it
    with pytest.raises(NoColumnError):
        process(image, tmp_path / "job")
