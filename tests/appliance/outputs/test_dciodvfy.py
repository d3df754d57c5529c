"""Every DICOM object passes dicom3tools' dciodvfy with no error and only known warnings
(:data:`dicom_checks.ALLOWED_WARNINGS`); the SR's warnings hold non-ASCII text."""

from __future__ import annotations

import pytest

from tests.appliance.outputs.dicom_checks import dciodvfy

ROLES = ("seg", "sr", "key_image_coronal", "key_image_sagittal", "stl_dicom_vertebral_bodies",
         "stl_dicom_pelvis", "stl_dicom_femoral_head_left", "stl_dicom_femoral_head_right",
         "stl_dicom_combined", "stl_dicom_printable")


@pytest.mark.parametrize("role", ROLES)
def test_dciodvfy_no_errors_no_unexpected_warnings(written, role):
    status, errors, unexpected = dciodvfy(written.paths[role])
    assert not errors, errors
    assert status == 0
    assert not unexpected, unexpected
