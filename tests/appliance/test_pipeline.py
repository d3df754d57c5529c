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
    bundle = make_bundle(tmp_path / "bundle", window=(16, 32, 32), spacing=(2.5, 2.5, 2.5))
    series = write_ct_series(small_study, tmp_path / "dicom")
    process = make_processor(bundle, engine={"kind": "cpu", "threads": 1})
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
