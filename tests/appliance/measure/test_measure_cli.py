"""``wbspine measure`` through ``register``: table on stdout, JSON file."""

from __future__ import annotations

import argparse
import json

import pytest

from appliance.measure.api import SCHEMA
from appliance.measure.cli import register
from appliance.volume import write_nifti
from tests.conftest import cached_study


def _parse(argv):
    parser = argparse.ArgumentParser(prog="wbspine")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_measure_writes_json_and_prints_a_table(tmp_path, capsys):
    study = cached_study(3, "small")
    labels = write_nifti(study.labels, tmp_path / "labels.nii.gz")
    out = tmp_path / "m" / "measurements.json"
    args = _parse(["measure", str(labels), "--json", str(out)])
    assert args.handler(args) == 0
    result = json.loads(out.read_text())
    assert result["schema"] == SCHEMA
    assert abs(result["pelvic_tilt_deg"] - study.truth["pelvic_tilt_deg"]) < 2.0
    text = capsys.readouterr().out
    assert "Pelvic incidence" in text and "Cobb" in text


def test_lowest_level_is_validated():
    with pytest.raises(SystemExit):
        _parse(["measure", "x.nii.gz", "--lowest-level", "S3"])


def test_highest_level_reaches_measure(tmp_path):
    """``--highest-level`` names the top body: a phantom cropped to T9 (half)…L4 (half)."""
    from dataclasses import replace

    from tests.appliance.measure.test_naming_ends import _study, _thoracolumbar

    lab, aff = _thoracolumbar()
    labels = write_nifti(replace(_study().labels, array=lab, origin_mm=tuple(float(v) for v in aff[:3, 3])),
                         tmp_path / "labels.nii.gz")
    out = tmp_path / "measurements.json"
    args = _parse(["measure", str(labels), "--json", str(out), "--highest-level", "T9"])
    assert args.handler(args) == 0
    result = json.loads(out.read_text())
    assert result["level_naming"]["rule"] == "highest_level_hint"
    assert [v["name"] for v in result["vertebrae"]][:2] == ["T9", "T10"]
    with pytest.raises(SystemExit):
        _parse(["measure", "x.nii.gz", "--highest-level", "C1"])
