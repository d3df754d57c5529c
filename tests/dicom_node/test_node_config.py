"""Configuration: TOML, environment overrides, validation errors, the example file."""

from __future__ import annotations

import json

from pathlib import Path

import pytest

from dicom_node.config import Destination, load_config
from dicom_node.errors import ConfigError
from dicom_node.logs import JsonFormatter
from dicom_node.policy import REFUSED_MULTIFRAME_CLASSES, StoragePolicy, is_valid_uid

REPO = Path(__file__).parents[2]


def test_example_config_loads_and_env_overrides(tmp_path: Path) -> None:
    cfg = load_config(REPO / "deploy" / "node.example.toml", environ={})
    assert cfg.node.ae_title and cfg.send.destinations
    env = {"WBSPINE_NODE__PORT": "4242", "WBSPINE_SEND__DESTINATIONS": '["PACS@10.1.2.3:104", "sender"]'}
    cfg = load_config(REPO / "deploy" / "node.example.toml", {"node": {"ae_title": "FLAG"}}, environ=env)
    assert cfg.node.port == 4242 and cfg.node.ae_title == "FLAG"
    assert cfg.send.destinations == (Destination(ae_title="PACS", host="10.1.2.3", port=104),
                                     Destination(ae_title=None, host=None, port=104))


def test_invalid_config_names_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nae_title = "WAY_TOO_LONG_AE_TITLE"\nport = 70000\nbogus = 1\n'
                   '[send]\ndestinations = ["nohost"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad, environ={})
    text = str(err.value)
    for field in ("node.ae_title", "node.port", "node.bogus", "send.destinations"):
        assert field in text
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", environ={})


def test_engine_settings_parse_override_and_validate(tmp_path: Path) -> None:
    cfg = load_config(REPO / "deploy" / "node.example.toml", environ={})
    assert cfg.processing.engine_options() == {"kind": "auto", "threads": None, "cpu_precision": "f32",
                                               "triton_url": None, "triton_model": None}
    env = {"WBSPINE_PROCESSING__ENGINE": "cpu", "WBSPINE_PROCESSING__THREADS": "2"}
    cfg = load_config(REPO / "deploy" / "node.example.toml", environ=env)
    assert cfg.processing.engine == "cpu" and cfg.processing.threads == 2
    bad = tmp_path / "engine.toml"
    bad.write_text('[processing]\nengine = "triton"\n')
    with pytest.raises(ConfigError, match="triton_url"):
        load_config(bad, environ={})
    bad.write_text('[processing]\nengine = "fpga"\ncpu_precision = "int4"\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad, environ={})
    assert "processing.engine" in str(err.value) and "processing.cpu_precision" in str(err.value)


def test_stop_settings_fit_inside_the_stop_timeout(tmp_path: Path) -> None:
    cfg = load_config(REPO / "deploy" / "node.example.toml", environ={})
    assert (cfg.stop.timeout_s, cfg.stop.drain_s, cfg.stop.job_grace_s) == (30.0, 10.0, 20.0)
    cfg = load_config(None, environ={"WBSPINE_STOP__DRAIN_S": "1", "WBSPINE_STOP__JOB_GRACE_S": "0"})
    assert (cfg.stop.drain_s, cfg.stop.job_grace_s) == (1.0, 0.0)
    bad = tmp_path / "stop.toml"
    bad.write_text("[stop]\ntimeout_s = 30\ndrain_s = 28\n")  # no room left to abort and close
    with pytest.raises(ConfigError, match="below stop.timeout_s"):
        load_config(bad, environ={})


def test_processor_factories_get_the_engine_settings_they_take() -> None:
    import types

    from dicom_node.cli import load_processor

    seen = {}
    module = types.ModuleType("wbspine_test_factories")
    module.with_engine = lambda bundle, engine=None: seen.setdefault("engine", engine) and (lambda s, w: [])
    module.without_engine = lambda bundle: (lambda s, w: [])
    import sys
    sys.modules[module.__name__] = module
    try:
        load_processor(f"{module.__name__}:with_engine", None, {"kind": "cpu", "threads": 1})
        assert seen["engine"] == {"kind": "cpu", "threads": 1}
        assert callable(load_processor(f"{module.__name__}:without_engine", None,
                                       {"kind": "auto", "threads": None, "cpu_precision": "f32"}))
        with pytest.raises(ConfigError, match="takes no engine settings"):
            load_processor(f"{module.__name__}:without_engine", None, {"kind": "cuda"})
    finally:
        del sys.modules[module.__name__]


def test_policy_and_uid_checks() -> None:
    policy = StoragePolicy.default()
    assert "1.2.840.10008.5.1.4.1.1.2" in policy.sop_classes
    assert "1.2.840.10008.5.1.4.1.1.7" not in policy.sop_classes  # secondary capture refused
    # multi-frame CT would be acknowledged and then fail in the single-frame reader
    assert not set(REFUSED_MULTIFRAME_CLASSES) & set(policy.sop_classes)
    assert "1.2.840.10008.1.2.5" in policy.transfer_syntaxes       # RLE: pydicom's own decoder
    assert is_valid_uid("1.2.840.10008.5.1.4.1.1.2")
    for bad in ("../../x", "/etc/x", "..", "1.02", "1." + "2" * 70, "", None):
        assert not is_valid_uid(bad)


def test_json_logs_drop_patient_identifiers() -> None:
    import logging

    record = logging.LogRecord("x", logging.INFO, "", 0, "stored", (), None)
    record.PatientName, record.patient_id, record.series = "DOE^JOHN", "123", "1.2.3"
    fields = json.loads(JsonFormatter().format(record))
    # (the values, not the line: the timestamp may contain "123")
    assert fields["series"] == "1.2.3" and not {"PatientName", "patient_id"} & set(fields)
    assert "DOE" not in json.dumps(fields) and "123" not in {str(v) for v in fields.values()}


def test_serve_flags_override_the_engine() -> None:
    import argparse

    from dicom_node.cli import _flag_overrides, register_serve

    parser = argparse.ArgumentParser()
    register_serve(parser.add_subparsers())
    args = parser.parse_args(["serve", "--engine", "cpu", "--port", "11112"])
    overrides = _flag_overrides(args)
    assert overrides["processing"] == {"engine": "cpu"} and overrides["node"] == {"port": 11112}
    cfg = load_config(REPO / "deploy" / "node.example.toml", overrides, environ={})
    assert cfg.processing.engine_options()["kind"] == "cpu"
