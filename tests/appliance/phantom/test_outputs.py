"""The four outputs: NIfTI image and labels, DICOM CT series, truth.json — reproducible,
mutually consistent and valid for independent tools."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from appliance.phantom import generate_study, write_study
from appliance.volume import from_sitk, read_nifti


@pytest.fixture(scope="module")
def written(tmp_path_factory, small_study):
    out = tmp_path_factory.mktemp("phantom")
    write_study(small_study, out)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_nifti_image_and_labels_share_geometry_and_voxels(written, small_study):
    image, labels = read_nifti(written / "image.nii.gz"), read_nifti(written / "labels.nii.gz")
    assert image.same_geometry(labels)
    assert image.same_geometry(small_study.image)
    assert np.array_equal(image.array, small_study.image.array)
    assert np.array_equal(labels.array, small_study.labels.array)
    assert labels.array.dtype == np.uint8 and image.array.dtype == np.int16


def test_dicom_series_reloads_to_the_same_voxels_and_affine(written):
    nifti = read_nifti(written / "image.nii.gz")
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(written / "dicom"))
    assert len(names) == nifti.array.shape[0]
    reader.SetFileNames(names)
    from_dicom = from_sitk(reader.Execute())
    assert from_dicom.same_geometry(nifti, atol_mm=1e-3)
    assert np.array_equal(from_dicom.array.astype(np.int32), nifti.array.astype(np.int32))


def test_dicom_series_reads_back_with_pydicom(written):
    nifti = read_nifti(written / "image.nii.gz")
    datasets = [pydicom.dcmread(p) for p in sorted((written / "dicom").glob("*.dcm"))]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    volume = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets])
    assert np.array_equal(volume.astype(np.int32), nifti.array.astype(np.int32))
    first = datasets[0]
    assert np.allclose([float(v) for v in first.ImagePositionPatient], nifti.origin_mm, atol=1e-3)
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([nifti.spacing_mm[1], nifti.spacing_mm[0]])
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert first.Modality == "CT" and first.PatientPosition == ""
    assert "Synthetic" in first.PatientComments and first.PatientBirthDate == ""
    assert float(first.SliceThickness) > 0 and first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_dicom_files_pass_dciodvfy(written):
    dciodvfy = shutil.which("dciodvfy")
    assert dciodvfy, "dciodvfy (Debian package dicom3tools) is required: run `make test`, which installs it"
    files = sorted((written / "dicom").glob("*.dcm"))
    for path in (files[0], files[len(files) // 2], files[-1]):
        result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        problems = [line for line in result.stderr.splitlines() if line.startswith(("Error", "Warning"))]
        assert result.returncode == 0 and not problems, problems


def test_truth_json_is_the_study_truth(written, small_study):
    truth = json.loads((written / "truth.json").read_text())
    assert truth["schema"] == "wbspine.phantom-truth/1"
    assert truth["cobb"] == pytest.approx(small_study.truth["cobb"])
    assert truth["pelvic_incidence_deg"] == pytest.approx(small_study.truth["pelvic_incidence_deg"])


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_study(generate_study(7, "small"), a)
    write_study(generate_study(7, "small"), b)
    write_study(generate_study(8, "small"), c)
    digest_a = _digest(a)
    assert digest_a == _digest(b)
    digest_c = _digest(c)
    assert digest_a["image.nii.gz"] != digest_c["image.nii.gz"]
    assert digest_a["dicom/CT000001.dcm"] != digest_c["dicom/CT000001.dcm"]
