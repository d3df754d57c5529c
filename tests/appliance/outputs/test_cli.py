"""``wbspine report``: argument parsing and a run from a label map, its series and a JSON."""

from __future__ import annotations

import argparse
import json

import pydicom
import pytest

from appliance.errors import OutputError
from appliance.outputs import cli
from appliance.outputs.sr import numeric_items


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wbspine")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_report_from_nifti_series_and_json(written, tmp_path, capsys):
    study_dir = written.dicom_dir.parent
    m = tmp_path / "m.json"
    m.write_text(json.dumps(written.measurements))
    args = _parser().parse_args(["report", str(study_dir / "labels.nii.gz"), "--dicom", str(written.dicom_dir),
                                 "--out", str(tmp_path / "out"), "--measurements", str(m), "--no-stl",
                                 "--algorithm-name", "cli-model", "--algorithm-version", "9"])
    assert args.handler(args) == 0
    assert "seg.dcm" in capsys.readouterr().out
    seg = pydicom.dcmread(tmp_path / "out" / "seg.dcm", stop_before_pixels=True)
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "cli-model"
    sr = pydicom.dcmread(tmp_path / "out" / "sr.dcm")
    assert len(numeric_items(sr)) == len(numeric_items(pydicom.dcmread(written.paths["sr"])))
    assert not (tmp_path / "out" / "stl").exists()


def test_report_refuses_a_series_of_another_grid(written, tmp_path):
    other = tmp_path / "dicom"
    other.mkdir()
    for p in sorted(written.dicom_dir.iterdir())[:-1]:  # one slice missing
        (other / p.name).write_bytes(p.read_bytes())
    m = tmp_path / "m.json"
    m.write_text(json.dumps(written.measurements))
    args = _parser().parse_args(["report", str(written.dicom_dir.parent / "labels.nii.gz"), "--dicom", str(other),
                                 "--out", str(tmp_path / "out"), "--measurements", str(m)])
    with pytest.raises(OutputError, match="slices"):
        args.handler(args)
