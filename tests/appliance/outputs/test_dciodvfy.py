"""Every DICOM object passes dicom3tools' dciodvfy with no error and only known warnings."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

#: Warnings we accept, with the reason (see appliance/outputs/codes.py):
#: dciodvfy knows only the standard coding schemes; 99WBSPINE is our private scheme
#: (PS3.16 8.2), declared in the SR's Coding Scheme Identification Sequence with its UID.
ALLOWED_WARNINGS = (
    re.compile(r"Unrecognized defined term <99WBSPINE> for value 1 of attribute <Coding Scheme Designator>"),
    re.compile(r"Unrecognized defined term <[0-9.]+> for value 1 of attribute <Coding Scheme UID>"),
)

ROLES = ("seg", "sr", "key_image_coronal", "key_image_sagittal", "stl_dicom_vertebral_bodies",
         "stl_dicom_pelvis", "stl_dicom_femoral_head_left", "stl_dicom_femoral_head_right",
         "stl_dicom_combined", "stl_dicom_printable")


@pytest.mark.parametrize("role", ROLES)
def test_dciodvfy_no_errors_no_unexpected_warnings(written, role):
    assert shutil.which("dciodvfy"), "dicom3tools dciodvfy is required"
    run = subprocess.run(["dciodvfy", str(written.paths[role])], capture_output=True, timeout=60)
    text = (run.stdout + run.stderr).decode("latin-1")
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    warnings = [line for line in text.splitlines() if line.startswith("Warning")]
    assert not errors, errors
    assert run.returncode == 0
    unexpected = [w for w in warnings if not any(p.search(w) for p in ALLOWED_WARNINGS)]
    assert not unexpected, unexpected
