"""Every object declares UTF-8 (ISO_IR 192) and keeps any text exactly: the warnings of an
ordinary measurement ("±2.5°", "L1–S1"), text no single-byte set holds ("≥", "–"), and a
source series in Latin-1 (ISO_IR 100) with a non-ASCII patient name."""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest

from appliance.measure.api import measure
from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.encapsulated_stl import build_encapsulated_stl
from appliance.outputs.keyimages import build_key_images
from appliance.outputs.seg import build_seg
from appliance.outputs.source import load_source_series
from appliance.outputs.sr import build_sr
from tests.appliance.outputs.conftest import NON_ASCII_WARNING
from tests.appliance.outputs.dicom_checks import dciodvfy, dsrdump

PATIENT_NAME = "Müller^Zoë"
STUDY_DESCRIPTION = "Wirbelsäule im Stand, Ganzkörper"
ALGORITHM = AlgorithmInfo("wbspine-réseau", "1.2.3")
KEY_IMAGES = ("key_image_coronal", "key_image_sagittal")
ROLES = ("seg", "sr", *KEY_IMAGES, "stl_pelvis")


def _latin1_copy(dicom_dir: Path, out: Path) -> Path:
    """The source series again, in ISO_IR 100 with a non-ASCII patient name and study."""
    out.mkdir()
    for path in sorted(dicom_dir.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = PATIENT_NAME
        ds.StudyDescription = STUDY_DESCRIPTION
        ds.save_as(out / path.name, enforce_file_format=True)
    return out


@pytest.fixture(scope="module")
def latin1(written, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("charset")
    source_dir = _latin1_copy(written.dicom_dir, root / "dicom")
    labels = written.study.labels
    source = load_source_series(source_dir, labels)
    measurements = measure(labels.array, labels.affine)  # an ordinary study's own warnings
    measurements["warnings"] = [*measurements["warnings"], NON_ASCII_WARNING]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg, specs = build_seg(labels, source, ALGORITHM)
        objects = {"seg": seg, "sr": build_sr(measurements, source, seg, specs, ALGORITHM)}
        coronal, sagittal = build_key_images(labels, source, measurements, ALGORITHM)
        objects |= {"key_image_coronal": coronal, "key_image_sagittal": sagittal,
                    "stl_pelvis": build_encapsulated_stl(written.paths["stl_pelvis"], "wbspine pelvis", source,
                                                         ALGORITHM, pydicom.uid.generate_uid(), 1)}
        paths = {}
        for role, ds in objects.items():
            paths[role] = root / f"{role}.dcm"
            ds.save_as(paths[role], enforce_file_format=True)
    return source_dir, measurements, paths, [str(w.message) for w in caught]


def test_the_source_is_really_latin1(latin1):
    source_dir = latin1[0]
    raw = next(source_dir.iterdir()).read_bytes()
    assert PATIENT_NAME.encode("latin-1") in raw and PATIENT_NAME.encode("utf-8") not in raw


def test_nothing_is_written_with_replacement_characters(latin1):
    assert not [w for w in latin1[3] if "replacement characters" in w]


@pytest.mark.parametrize("role", ROLES)
def test_every_object_is_utf8_and_keeps_the_source_names(latin1, role):
    ds = pydicom.dcmread(latin1[2][role])
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == PATIENT_NAME
    if role not in KEY_IMAGES:  # highdicom's Secondary Capture does not copy Study Description
        assert ds.StudyDescription == STUDY_DESCRIPTION
    assert PATIENT_NAME.encode("utf-8") in latin1[2][role].read_bytes()


@pytest.mark.parametrize("role", ROLES)
def test_every_object_passes_dciodvfy(latin1, role):
    status, errors, unexpected = dciodvfy(latin1[2][role])
    assert not errors, errors
    assert status == 0
    assert not unexpected, unexpected


def _texts(items) -> list[str]:
    out = []
    for item in items:
        if item.ValueType == "TEXT":
            out.append(item.TextValue)
        out += _texts(item.get("ContentSequence", []))
    return out


def test_sr_of_an_ordinary_study_keeps_every_warning_and_dsrdump_reads_it(latin1):
    _, measurements, paths, _ = latin1
    assert any(not w.isascii() for w in measurements["warnings"][:-1])  # measure() writes "±", "°", "–"
    texts = _texts(pydicom.dcmread(paths["sr"]).ContentSequence)
    assert all(w in texts for w in measurements["warnings"])
    assert ALGORITHM.name in texts  # algorithm name and device observer name
    status, dump, messages = dsrdump(paths["sr"])
    assert status == 0 and not messages, messages
    assert "Müller" in dump


def test_seg_and_key_images_keep_the_algorithm_name(latin1):
    seg = pydicom.dcmread(latin1[2]["seg"])
    assert {str(s.SegmentAlgorithmName) for s in seg.SegmentSequence} == {ALGORITHM.name}
    sc = pydicom.dcmread(latin1[2]["key_image_coronal"])
    assert ALGORITHM.name in sc.ImageComments
