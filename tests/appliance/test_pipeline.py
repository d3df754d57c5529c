"""The node's processor factory: bundle and engine checked once at start, engine settings used per study."""

import json

import pytest

from appliance.errors import EngineError
from appliance.pipeline import make_processor

from tests.appliance.inference.inference_helpers import make_bundle


def test_processor_runs_the_configured_engine(small_study, tmp_path):
    from appliance.phantom.dicom_series import write_ct_series

    bundle = make_bundle(tmp_path / "bundle", window=(16, 32, 32), spacing=(2.5, 2.5, 2.5))
    series = write_ct_series(small_study, tmp_path / "dicom")
    process = make_processor(bundle, engine={"kind": "cpu", "threads": 1})
    files = process(series, tmp_path / "work")
    assert files and all(p.suffix == ".dcm" and p.is_file() for p in files)
    timing = json.loads((tmp_path / "work" / "timing.json").read_text())
    assert timing["engine"] == "onnxruntime:CPUExecutionProvider"


def test_engine_this_box_cannot_run_stops_the_processor_at_start(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    with pytest.raises(EngineError, match="CUDAExecutionProvider"):
        make_processor(bundle, engine={"kind": "cuda"})
    with pytest.raises(EngineError, match="triton_url"):
        make_processor(bundle, engine={"kind": "triton"})
    with pytest.raises(EngineError, match="unknown engine setting"):
        make_processor(bundle, engine={"kind": "cpu", "gpu_count": 2})
    assert callable(make_processor(bundle))  # auto: the best engine here
