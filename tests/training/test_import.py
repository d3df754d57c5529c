"""``wbspine dataset import`` through the real command line: what it accepts, prints and refuses.

Every refusal must be a nonzero exit with one line on stderr and no dataset written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from appliance.cli import main
from appliance.volume import Volume, read_nifti, write_nifti
from tests.training.test_itksnap import DESCRIPTIONS

ROOT = Path(__file__).resolve().parents[2]
SPACING = (1.0, 1.0, 2.0)


def _labels(*blocks: tuple[int, int, int]) -> np.ndarray:
    """20³ label map; each block (value, z0, z1) fills slices z0:z1."""
    lab = np.zeros((20, 20, 20), dtype=np.uint8)
    for value, z0, z1 in blocks:
        lab[z0:z1] = value
    return lab


def _pair(src: Path, case: str, lab: np.ndarray, *, label_spacing=SPACING, label_origin=(0.0, 0.0, 0.0),
          suffix="_seg.nii.gz", ext=".nii.gz") -> None:
    img = (np.arange(lab.size, dtype=np.int16) % 977 - 400).reshape(lab.shape)
    write_nifti(Volume(img, SPACING), src / f"{case}{ext}")
    write_nifti(Volume(lab, label_spacing, label_origin), src / f"{case}{suffix}")


@pytest.fixture()
def src(tmp_path):
    """case01 with values 10 (4 slices), 20 (4 slices), 30 (2 slices)."""
    folder = tmp_path / "snap"
    _pair(folder, "case01", _labels((10, 2, 6), (20, 8, 12), (30, 14, 16)))
    return folder


def _run(capsys, *argv):
    rc = main(["dataset", "import", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(capsys, out_dir: Path, *argv) -> str:
    rc, _, err = _run(capsys, *argv, "--out", out_dir)
    assert rc != 0
    line = err.strip()
    assert line and "\n" not in line and "Traceback" not in line
    assert not (out_dir / "dataset.json").exists() and not (out_dir / "images").exists()
    return line


def test_mapping_that_matches_no_voxel_is_refused(src, tmp_path, capsys):
    line = _refused(capsys, tmp_path / "ds", src, "--map", "1=1")
    assert "case01" in line and "mapping matches no voxel" in line
    assert "10 (1600)" in line and "20 (1600)" in line and "30 (800)" in line and "1 -> vertebral_bodies" in line


def test_refusal_is_one_stderr_line_from_the_installed_command(src, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "dataset", "import", str(src),
                           "--out", str(tmp_path / "ds"), "--map", "1=1"],
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "mapping matches no voxel" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_annotated_name_is_refused_with_the_valid_names(src, tmp_path, capsys):
    line = _refused(capsys, tmp_path / "ds", src, "--map", "10=1", "--annotated", "spine")
    assert "'spine'" in line and "vertebral_bodies, pelvis, femoral_heads" in line


def test_image_and_label_on_different_grids_are_refused_naming_both(tmp_path, capsys):
    src = tmp_path / "snap"
    _pair(src, "good", _labels((10, 2, 6)))
    _pair(src, "moved", _labels((10, 2, 6)), label_spacing=(1.0, 1.0, 3.0), label_origin=(0.0, 5.0, 0.0))
    line = _refused(capsys, tmp_path / "ds", src, "--map", "10=1")
    assert "case moved" in line and "different grids" in line
    assert "spacing 1x1x2 mm, origin (0, 0, 0)" in line and "spacing 1x1x3 mm, origin (0, 5, 0)" in line
    assert "size 20x20x20" in line


def test_a_case_whose_mapped_labels_are_empty_is_refused_before_any_case_is_written(tmp_path, capsys):
    src = tmp_path / "snap"
    _pair(src, "a", _labels((10, 2, 6), (20, 8, 12)))
    _pair(src, "b", _labels((30, 2, 6)))      # only a value the mapping leaves out
    line = _refused(capsys, tmp_path / "ds", src, "--map", "10=1", "--map", "20=2")
    assert "case b" in line and "mapping matches no voxel" in line and "30 (" in line
    _pair(src, "b", _labels())                # nothing drawn at all
    assert "case b" in _refused(capsys, tmp_path / "ds", src, "--map", "10=1", "--map", "20=2")


def test_a_map_entry_that_matches_nothing_anywhere_is_refused(src, tmp_path, capsys):
    line = _refused(capsys, tmp_path / "ds", src, "--map", "10=1", "--map", "99=2")
    assert "--map 99=2" in line and "any of the 1 cases" in line and "0, 10, 20, 30" in line


def test_absent_values_of_a_used_map_entry_are_warned_per_value(src, tmp_path, capsys):
    rc, out, _ = _run(capsys, src, "--out", tmp_path / "ds", "--map", "10=1", "--map", "20,98,99=2")
    assert rc == 0
    assert "warning: --map 20,98,99=2: value 98 occurs in no case" in out
    assert "warning: --map 20,98,99=2: value 99 occurs in no case" in out


def test_annotated_structure_the_mapping_does_not_produce_is_refused(src, tmp_path, capsys):
    line = _refused(capsys, tmp_path / "ds", src, "--map", "10=1", "--annotated", "vertebral_bodies", "pelvis")
    assert "--annotated pelvis" in line and "produces no pelvis" in line


def test_annotated_structure_with_no_voxel_in_a_case_is_refused(tmp_path, capsys):
    src = tmp_path / "snap"
    _pair(src, "full", _labels((10, 2, 6), (20, 8, 12)))
    _pair(src, "spine_only", _labels((10, 2, 6)))
    line = _refused(capsys, tmp_path / "ds", src, "--map", "10=1", "--map", "20=2",
                    "--annotated", "vertebral_bodies", "pelvis")
    assert "case spine_only" in line and "pelvis" in line and "0 voxels" in line


def test_partial_annotation_is_recorded_per_case_and_printed(tmp_path, capsys):
    src = tmp_path / "snap"
    _pair(src, "full", _labels((10, 2, 6), (20, 8, 12), (30, 14, 16)))
    _pair(src, "spine_only", _labels((10, 2, 6), (40, 8, 9)))
    rc, out, err = _run(capsys, src, "--out", tmp_path / "ds", "--map", "10=1", "--map", "20=2",
                        "--map", "30=3", "--split", "val")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    annotated = {c["id"]: c["annotated"] for c in manifest["cases"]}
    assert annotated == {"full": ["vertebral_bodies", "pelvis", "femoral_heads"], "spine_only": ["vertebral_bodies"]}
    assert {c["split"] for c in manifest["cases"]} == {"val"}
    block = out[out.index("case spine_only"):]
    assert "image: spine_only.nii.gz (file; size 20x20x20, spacing 1x1x2 mm" in block
    assert "label: spine_only_seg.nii.gz" in block
    assert "values: 0 (6000 voxels), 10 (1600 voxels), 40 (400 voxels)" in block
    assert "mapping: 10 -> vertebral_bodies, 40 -> background (unmapped)" in block
    assert "structures: vertebral_bodies 1600, pelvis 0, femoral_heads 0" in block
    assert "annotated: vertebral_bodies\n" in block and "split: val" in block
    assert "val: 2 cases" in out
    lab = read_nifti(tmp_path / "ds" / "labels" / "spine_only.nii.gz").array
    assert np.all(lab[2:6] == 1) and np.all(lab[8:9] == 0)


def test_annotated_subset_erases_the_structures_it_leaves_out(src, tmp_path, capsys):
    rc, out, err = _run(capsys, src, "--out", tmp_path / "ds", "--map", "10=1", "--map", "20=2",
                        "--annotated", "vertebral_bodies")
    assert rc == 0, err
    assert "erased (not in --annotated): pelvis" in out
    lab = read_nifti(tmp_path / "ds" / "labels" / "case01.nii.gz").array
    assert set(np.unique(lab)) == {0, 1}


def test_labels_file_maps_names_and_map_overrides_per_value(tmp_path, capsys):
    src = tmp_path / "snap"
    _pair(src, "case01", _labels((1, 0, 2), (5, 2, 4), (7, 4, 5), (20, 6, 9), (22, 9, 10), (30, 12, 14), (40, 15, 16)),
          suffix="-label.nii.gz", ext=".nrrd")
    (src / "labels.txt").write_text(DESCRIPTIONS)
    rc, out, err = _run(capsys, src, "--out", tmp_path / "ds", "--labels-file", src / "labels.txt",
                        "--map", "30=0")
    assert rc == 0, err
    assert "unmapped: L1-L2 disc (value 7)" in out and "unmapped: Body (value 40)" in out
    assert '30 "Left femoral head" -> background' in out and '5 "Th12" -> vertebral_bodies' in out
    lab = read_nifti(tmp_path / "ds" / "labels" / "case01.nii.gz").array
    assert np.all(lab[0:4] == 1) and np.all(lab[4:5] == 0) and np.all(lab[6:10] == 2) and not np.any(lab[12:] != 0)
    case = json.loads((tmp_path / "ds" / "dataset.json").read_text())["cases"][0]
    assert case["annotated"] == ["vertebral_bodies", "pelvis"] and case["provenance"]["labels_file"] == "labels.txt"


def test_a_label_description_file_in_the_folder_is_used_without_map(tmp_path, capsys):
    src = tmp_path / "snap"
    _pair(src, "case01", _labels((1, 0, 2), (20, 6, 9)))
    (src / "snap_labels.txt").write_text(DESCRIPTIONS)
    rc, out, err = _run(capsys, src, "--out", tmp_path / "ds")
    assert rc == 0, err
    assert "labels file:" in out and "snap_labels.txt" in out
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["cases"][0]["annotated"] == [
        "vertebral_bodies", "pelvis"]


def test_no_mapping_at_all_is_refused(src, tmp_path, capsys):
    assert "--project-labels" in _refused(capsys, tmp_path / "ds", src)


def test_phantom_folders_import_as_case_folders_and_as_one_case(small_study, tmp_path, capsys):
    from appliance.phantom.generate import write_study

    src = tmp_path / "phantoms"
    write_study(small_study, src / "p4", dicom=False)
    rc, out, err = _run(capsys, src, "--out", tmp_path / "ds", "--project-labels")
    assert rc == 0, err
    assert "layout: folders" in out and "case p4" in out
    (case,) = json.loads((tmp_path / "ds" / "dataset.json").read_text())["cases"]
    assert case["annotated"] == ["vertebral_bodies", "pelvis", "femoral_heads"]
    assert np.array_equal(read_nifti(tmp_path / "ds" / case["label"]).array, small_study.labels.array)
    rc, out, err = _run(capsys, src / "p4", "--out", tmp_path / "ds2", "--project-labels", "--split", "test")
    assert rc == 0, err
    assert "layout: case" in out and "test: 1 cases" in out


def _tiny_dicom(folder: Path, spacing=(1.0, 1.5, 2.0), origin=(-10.0, -20.0, 5.0)) -> Volume:
    """A 20-slice series written by the phantom's own DICOM writer."""
    from appliance.phantom.dicom_series import write_ct_series

    hu = (np.arange(8000, dtype=np.int16).reshape(20, 20, 20) % 1500 - 500).astype(np.int16)
    image = Volume(hu, spacing, origin)
    grid = SimpleNamespace(slice_thickness_mm=spacing[2], slice_spacing_mm=spacing[2], fov_mm=30.0)
    write_ct_series(SimpleNamespace(image=image, params=SimpleNamespace(seed=5, size="tiny", adolescent=False,
                                                                        grid=grid)), folder)
    return image


def test_dicom_series_is_read_as_the_image_and_converted(tmp_path, capsys):
    src = tmp_path / "cases"
    image = _tiny_dicom(src / "c1" / "dicom")
    write_nifti(image.with_array(_labels((1, 3, 9), (2, 12, 15))), src / "c1" / "labels.nii.gz")
    image2 = _tiny_dicom(src / "c2")                      # pairs-style: SRC/CASE/ + SRC/CASE_seg
    write_nifti(image2.with_array(_labels((1, 3, 9))), src / "c2_seg.nii.gz")
    rc, out, err = _run(capsys, src, "--out", tmp_path / "ds", "--layout", "folders", "--project-labels")
    assert rc == 0, err
    assert "image: c1/dicom (DICOM series; size 20x20x20, spacing 1x1.5x2 mm, origin (-10, -20, 5) mm)" in out
    stored = read_nifti(tmp_path / "ds" / "images" / "c1.nii.gz")
    assert stored.same_geometry(image) and np.array_equal(stored.array, image.array)
    rc, out, err = _run(capsys, src, "--out", tmp_path / "ds", "--layout", "pairs", "--project-labels")
    assert rc == 0, err
    assert "case c2" in out and "image: c2 (DICOM series" in out


def test_label_map_off_the_dicom_grid_is_refused(tmp_path, capsys):
    src = tmp_path / "cases"
    image = _tiny_dicom(src / "c1" / "dicom")
    write_nifti(Volume(_labels((1, 3, 9)), image.spacing_mm, (0.0, 0.0, 0.0)), src / "c1" / "labels.nii.gz")
    line = _refused(capsys, tmp_path / "ds", src, "--project-labels")
    assert "case c1" in line and "origin (-10, -20, 5)" in line and "origin (0, 0, 0)" in line
