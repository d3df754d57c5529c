"""`wbspine phantom` through the installed console script and through `main`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from appliance.cli import main


def test_console_script_writes_the_four_outputs(tmp_path):
    beside = Path(sys.executable).with_name("wbspine")  # the venv running the tests
    exe = str(beside) if beside.exists() else shutil.which("wbspine")
    assert exe, "the wbspine console script is not installed (pip install -e .)"
    out = tmp_path / "study"
    result = subprocess.run([exe, "phantom", "--out", str(out), "--seed", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "image.nii.gz").is_file() and (out / "labels.nii.gz").is_file()
    assert (out / "truth.json").is_file() and len(list((out / "dicom").glob("*.dcm"))) > 100
    truth = json.loads((out / "truth.json").read_text())
    assert f"{truth['cobb']['angle_deg']:.1f}" in result.stdout  # the truth is printed
    assert "Pelvic incidence" in result.stdout


def test_pinned_angles_and_no_dicom(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["phantom", "--out", str(out), "--seed", "3", "--cobb-deg", "25", "--no-dicom"]) == 0
    assert not (out / "dicom").exists()
    assert json.loads((out / "truth.json").read_text())["cobb"]["angle_deg"] == 25.0


def test_impossible_request_is_a_clear_error(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path / "x"), "--cobb-deg", "150"]) == 2
    assert "Cobb angle" in capsys.readouterr().err
