"""DICOM SEG: voxel-exact round trip, codes, references, geometry checks."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import SimpleITK as sitk
import numpy as np
import pydicom
import pytest

from appliance.errors import OutputError
from appliance.labels import Label
from appliance.outputs import codes
from appliance.outputs.seg import read_segments, segment_label_map
from appliance.outputs.source import load_source_series
from appliance.volume import to_sitk


@pytest.fixture(scope="module")
def seg(written):
    return hd.seg.Segmentation.from_dataset(pydicom.dcmread(written.paths["seg"]))


def test_round_trip_equals_label_map_voxel_for_voxel(written, seg):
    arr = written.study.labels.array
    back = read_segments(seg, written.source)
    by_label = {s.SegmentLabel: back[int(s.SegmentNumber)] for s in seg.SegmentSequence}
    assert set(by_label) == {"Vertebral bodies", "Pelvis with sacrum", "Right femoral head", "Left femoral head"}
    assert np.array_equal(by_label["Vertebral bodies"], arr == Label.VERTEBRAL_BODIES)
    assert np.array_equal(by_label["Pelvis with sacrum"], arr == Label.PELVIS)
    heads = by_label["Right femoral head"] | by_label["Left femoral head"]
    assert np.array_equal(heads, arr == Label.FEMORAL_HEADS)
    assert not (by_label["Right femoral head"] & by_label["Left femoral head"]).any()


def test_laterality_left_is_plus_x(written, seg):
    back = read_segments(seg, written.source)
    x_mm = {}
    for s in seg.SegmentSequence:
        modifier = s.SegmentedPropertyTypeCodeSequence[0].get("SegmentedPropertyTypeModifierCodeSequence")
        if modifier:
            idx = np.argwhere(back[int(s.SegmentNumber)])[:, ::-1]
            x_mm[modifier[0].CodeValue] = written.study.labels.index_to_lps(idx)[:, 0].mean()
    truth = {h["side"]: h["center_mm"][0] for h in written.study.truth["femoral_heads"]}
    assert x_mm[codes.LEFT.value] == pytest.approx(truth["left"], abs=3.0)
    assert x_mm[codes.RIGHT.value] == pytest.approx(truth["right"], abs=3.0)
    assert x_mm[codes.LEFT.value] > x_mm[codes.RIGHT.value]


def test_codes_algorithm_and_binary_type(seg):
    assert seg.SegmentationType == "BINARY"
    types = {s.SegmentLabel: s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence}
    assert types == {"Vertebral bodies": "3572006", "Pelvis with sacrum": "118645006",
                     "Right femoral head": "2812003", "Left femoral head": "2812003"}
    for s in seg.SegmentSequence:
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
        assert s.SegmentAlgorithmType == "AUTOMATIC"
        assert s.SegmentAlgorithmName == "wbspine-test-unet"
        algo = s.SegmentationAlgorithmIdentificationSequence[0]
        assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("wbspine-test-unet", "1.2.3")


def test_same_study_frame_of_reference_and_every_source_referenced(written, seg):
    src = written.source
    assert seg.StudyInstanceUID == src.study_instance_uid
    assert seg.FrameOfReferenceUID == src.frame_of_reference_uid
    referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                  for i in s.ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in src.datasets}


def test_empty_frames_omitted(written, seg):
    segments, specs = segment_label_map(written.study.labels)
    expected = sum(int((segments == k).any(axis=(1, 2)).sum()) for k in range(1, len(specs) + 1))
    assert int(seg.NumberOfFrames) == expected < len(specs) * segments.shape[0]


def test_grid_mismatch_is_refused(written):
    labels = written.study.labels
    shifted = dataclasses.replace(labels, origin_mm=(labels.origin_mm[0] + 1.0, *labels.origin_mm[1:]))
    with pytest.raises(OutputError, match="position"):
        load_source_series(written.dicom_dir, shifted)
    cropped = labels.with_array(labels.array)  # same grid: accepted
    assert len(load_source_series(written.dicom_dir, cropped).datasets) == labels.shape_zyx[0]


def test_dcmqi_reads_the_seg_back(written, tmp_path):
    """dcmqi (an independent reader, PyPI ``dcmqi``) converts each segment back; on the
    label map's grid it equals the label map voxel for voxel."""
    exe = shutil.which("segimage2itkimage") or shutil.which("segimage2itkimage", path=str(Path(sys.executable).parent))
    assert exe, "dcmqi (pip install dcmqi) is required"
    run = subprocess.run([exe, "--inputDICOM", str(written.paths["seg"]), "--outputDirectory", str(tmp_path),
                          "--outputType", "nifti"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    labels = written.study.labels
    reference = to_sitk(labels)
    expected, specs = segment_label_map(labels)
    for number in range(1, len(specs) + 1):
        image = sitk.ReadImage(str(tmp_path / f"{number}.nii.gz"))
        on_grid = sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
        assert np.array_equal(on_grid > 0, expected == number), specs[number - 1].key


def test_label_values_are_checked(written):
    labels = written.study.labels
    bad = labels.array.copy()
    bad[0, 0, 0] = 5
    with pytest.raises(OutputError, match="0-3"):
        segment_label_map(labels.with_array(bad))
    as_float, specs = segment_label_map(labels.with_array(labels.array.astype(np.float32)))
    assert np.array_equal(as_float, segment_label_map(labels)[0]) and len(specs) == 4
    with pytest.raises(OutputError, match="empty"):
        segment_label_map(labels.with_array(np.zeros_like(labels.array)))
