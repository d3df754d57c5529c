"""Layout discovery and ITK-SNAP label descriptions (pure functions over names and text)."""

from __future__ import annotations

import pytest

from appliance.errors import DatasetError
from tests.training.itksnap_files import HEADER
from training import itksnap

#: Written for this test: what ITK-SNAP's "Export Label Descriptions" produces for a
#: spine/pelvis segmentation with a few labels we must not call bone.
DESCRIPTIONS = HEADER + """\
    0     0    0    0        0  0  0    "Clear Label"
    1   255    0    0        1  1  1    "L1 vertebra"
    2   230   20   10        1  1  1    "L2 vertebra"
    5   200  200    0        1  1  1    "Th12"
    7   255  160   60      0.6  1  0    "L1-L2 disc"
   20     0  255    0        1  1  1    "Sacrum"
   21     0  200   40        1  1  1    "Left iliac bone"
   22     0  160   80        1  1  1    "Right hip bone"
   30     0    0  255        1  1  1    "Left femoral head"
   31    40   40  255        1  1  1    "Femur R"
   40   128  128  128      0.3  0  0    "Body"
"""


def test_label_descriptions_are_parsed_and_mapped_by_name():
    names = itksnap.parse_label_descriptions(DESCRIPTIONS)
    assert names[0] == "Clear Label" and names[21] == "Left iliac bone" and len(names) == 11
    mapping, unmapped = itksnap.mapping_from_descriptions(names)
    assert mapping == {1: 1, 2: 1, 5: 1, 20: 2, 21: 2, 22: 2, 30: 3, 31: 3}
    assert unmapped == {7: "L1-L2 disc", 40: "Body"}


@pytest.mark.parametrize("name, label", [
    ("C2 vertebral body", 1), ("T12", 1), ("th7", 1), ("L5_vertebra", 1), ("vertebrae_T4", 1),
    ("S1", 2), ("pelvis", 2), ("Coccyx", 2), ("os coxae left", 2),
    ("femoral head left", 3), ("head of femur (R)", 3),
    ("Clear Label", 0), ("background", 0),
    ("C1", None),  # the atlas has no vertebral body
    ("Body", None), ("L1 spinous process", None), ("Femoral artery", None), ("femoral neck", None),
    ("spinal cord", None), ("intervertebral disc L3", None), ("Liver", None), ("T1 rib", None),
    # plurals: one label for both sides or all levels is common
    ("Femoral heads", 3), ("Hip bones", 2), ("Lumbar vertebrae", 1), ("Intervertebral discs", None),
    ("Ribs", None), ("L1-L5 spinous processes", None),
])
def test_structure_for_name(name, label):
    assert itksnap.structure_for_name(name) == label


@pytest.mark.parametrize("text, match", [
    ('    1 255 0 0 1 1 1 "A"\n    1 0 0 0 1 1 1 "B"\n', "described twice"),
    ('    1 255 0 0 1 1 "A"\n', "line 1"),
    ("# only comments\n", "no label lines"),
])
def test_bad_label_descriptions_are_refused(text, match):
    with pytest.raises(DatasetError, match=match):
        itksnap.parse_label_descriptions(text)


def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_pairs_with_any_suffix_and_extension(tmp_path):
    _touch(tmp_path, "a.nii.gz", "a_seg.nii.gz", "b.nrrd", "b-label.nii.gz", "c.mha", "c_segmentation.nrrd",
           "d.nii", "notes.txt", "lonely.nii.gz")
    (tmp_path / "e").mkdir()
    _touch(tmp_path, "e/IM0001.dcm", "e_labels.nii.gz")
    found = itksnap.discover(tmp_path)
    assert found.layout == "pairs"
    assert [(c.id, c.image.name, c.label.name) for c in found.cases] == [
        ("a", "a.nii.gz", "a_seg.nii.gz"), ("b", "b.nrrd", "b-label.nii.gz"),
        ("c", "c.mha", "c_segmentation.nrrd"), ("e", "e", "e_labels.nii.gz")]
    assert found.cases[-1].image_is_dicom
    assert any(note.startswith("lonely.nii.gz") for note in found.skipped)
    forced = itksnap.discover(tmp_path, label_suffix="_seg")
    assert [c.id for c in forced.cases] == ["a"]


def test_two_segmentations_for_one_image_are_refused(tmp_path):
    _touch(tmp_path, "a.nii.gz", "a_seg.nii.gz", "a_label.nii.gz")
    with pytest.raises(DatasetError, match="two segmentations"):
        itksnap.discover(tmp_path)


def test_case_folders_like_the_phantom_writes(tmp_path):
    _touch(tmp_path, "p1/image.nii.gz", "p1/labels.nii.gz", "p1/truth.json", "p1/dicom/CT000001.dcm",
           "p2/CT.nrrd", "p2/seg.nii.gz", "p3/dicom/CT000001.dcm", "p3/segmentation.nii.gz",
           "p4/scan_seg.nii.gz", "p4/scan.mha", "docs/readme.md")
    found = itksnap.discover(tmp_path)
    assert found.layout == "folders"
    assert [(c.id, c.image.name, c.label.name) for c in found.cases] == [
        ("p1", "image.nii.gz", "labels.nii.gz"), ("p2", "CT.nrrd", "seg.nii.gz"),
        ("p3", "dicom", "segmentation.nii.gz"), ("p4", "scan.mha", "scan_seg.nii.gz")]
    assert found.skipped == ("docs/: no image + segmentation inside",)
    single = itksnap.discover(tmp_path / "p1")
    assert single.layout == "case" and single.cases[0].id == "p1" and single.cases[0].image.name == "image.nii.gz"


@pytest.mark.parametrize("files, match", [
    (["c/labels.nii.gz"], "segmentation but no image"),
    (["c/image.nii.gz"], "image but no segmentation"),
    (["c/image.nii.gz", "c/labels.nii.gz", "c/seg.nii.gz"], "several segmentations"),
    (["c/a.nii.gz", "c/b.nii.gz", "c/labels.nii.gz"], "several images"),
    (["notes.md"], "no cases in"),
])
def test_unusable_case_folders_are_refused(tmp_path, files, match):
    _touch(tmp_path, *files)
    with pytest.raises(DatasetError, match=match):
        itksnap.discover(tmp_path)


def test_pairs_and_case_folders_together_need_a_layout(tmp_path):
    _touch(tmp_path, "a.nii.gz", "a_seg.nii.gz", "b/image.nii.gz", "b/labels.nii.gz")
    with pytest.raises(DatasetError, match="--layout"):
        itksnap.discover(tmp_path)
    assert [c.id for c in itksnap.discover(tmp_path, layout="folders").cases] == ["b"]
    assert [c.id for c in itksnap.discover(tmp_path, layout="pairs").cases] == ["a"]


def test_dicom_folders_are_recognised_by_suffix_or_magic(tmp_path):
    (tmp_path / "by_magic").mkdir()
    (tmp_path / "by_magic" / "1").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    _touch(tmp_path, "by_suffix/x.DCM", "plain/x.bin")
    (tmp_path / "plain" / "x.bin").write_bytes(b"\0" * 200)
    assert itksnap.is_dicom_folder(tmp_path / "by_magic") and itksnap.is_dicom_folder(tmp_path / "by_suffix")
    assert not itksnap.is_dicom_folder(tmp_path / "plain")


def test_label_description_file_is_found_in_the_folder(tmp_path):
    (tmp_path / "README.txt").write_text("these are my cases\n")
    assert itksnap.find_label_descriptions(tmp_path) is None
    (tmp_path / "snap labels.txt").write_text(DESCRIPTIONS)
    assert itksnap.find_label_descriptions(tmp_path).name == "snap labels.txt"
    (tmp_path / "other.txt").write_text(DESCRIPTIONS)
    with pytest.raises(DatasetError, match="--labels-file"):
        itksnap.find_label_descriptions(tmp_path)
