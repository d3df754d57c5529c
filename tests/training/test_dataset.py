"""Dataset folders: phantoms, ITK-SNAP imports with a label mapping, the real CT."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from appliance.errors import DatasetError
from appliance.preprocess import reorient
from appliance.volume import Volume, read_nifti, write_nifti
from training import dataset as ds


def test_from_phantoms_writes_layout_and_manifest(tmp_path):
    data = ds.from_phantoms(tmp_path / "d", 5, seed=7, size="small", val_fraction=0.2, test_fraction=0.2,
                            partial=True)
    manifest = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert manifest["format"] == "wbspine-dataset" and manifest["version"] == 1
    assert manifest["labels"] == {"0": "background", "1": "vertebral_bodies", "2": "pelvis", "3": "femoral_heads"}
    assert [c["split"] for c in manifest["cases"]] == ["train", "train", "train", "val", "test"]
    for case in data.cases:
        image, labels = read_nifti(data.path(case.image)), read_nifti(data.path(case.label))
        assert image.same_geometry(labels)
        present = {data.labels[v] for v in np.unique(labels.array) if v}
        assert present == set(case.annotated), "label map and 'annotated' must agree"
        assert case.provenance["seed"] >= 7 and not case.pseudo_labels
    assert all(set(c.annotated) == set(ds.STRUCTURE_NAMES) for c in data.cases if c.split != "train")
    assert any(set(c.annotated) != set(ds.STRUCTURE_NAMES) for c in data.cases if c.split == "train")


def test_from_phantoms_in_parallel_makes_the_same_dataset(tmp_path):
    serial = ds.from_phantoms(tmp_path / "one", 3, seed=11, size="small", val_fraction=0.34, test_fraction=0.0,
                              partial=True)
    parallel = ds.from_phantoms(tmp_path / "two", 3, seed=11, size="small", val_fraction=0.34, test_fraction=0.0,
                                partial=True, workers=2)
    assert [c.as_dict() for c in parallel.cases] == [c.as_dict() for c in serial.cases]
    for a, b in zip(serial.cases, parallel.cases):
        for rel in (a.image, a.label):
            assert np.array_equal(read_nifti(serial.path(rel)).array, read_nifti(parallel.path(rel)).array)


def test_import_folder_maps_labels(tmp_path):
    src = tmp_path / "itksnap"
    img = np.zeros((20, 16, 16), dtype=np.int16)
    lab = np.zeros((20, 16, 16), dtype=np.uint8)
    lab[2:5] = 7
    lab[8:10] = 25
    lab[12:14] = 99
    write_nifti(Volume(img, (1.0, 1.0, 2.0)), src / "case01.nii.gz")
    write_nifti(Volume(lab, (1.0, 1.0, 2.0)), src / "case01_seg.nii.gz")
    data = ds.import_folder(src, tmp_path / "out", ds.parse_mapping(["7=1", "25,26=2"]))
    (case,) = data.cases
    assert case.annotated == ("vertebral_bodies", "pelvis") and case.split == "train"
    out = read_nifti(data.path(case.label)).array
    assert np.all(out[2:5] == 1) and np.all(out[8:10] == 2) and np.all(out[12:14] == 0)


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(DatasetError):
        ds.parse_mapping(["1-2"])
    with pytest.raises(DatasetError):
        ds.import_folder(tmp_path, tmp_path / "o", {1: 9})
    with pytest.raises(DatasetError):
        ds.load(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({
        "format": "wbspine-dataset", "version": 1, "labels": {"0": "background"},
        "cases": [{"id": "x", "image": "../../etc/passwd", "label": "l", "split": "train", "annotated": []}]}))
    with pytest.raises(DatasetError, match="inside the dataset"):
        ds.load(tmp_path)


@pytest.mark.slow
def test_totalseg_import_gives_pseudo_labelled_bodies_pelvis_and_heads(tmp_path):
    from training.totalseg import DEFAULT_SRC, import_totalseg

    assert (DEFAULT_SRC / "example_ct.nii.gz").exists(), f"shared real data missing: {DEFAULT_SRC}"
    data = import_totalseg(tmp_path / "d")
    (case,) = data.cases
    assert case.pseudo_labels and "PSEUDO-LABELS" in case.provenance["labels"]
    assert set(case.annotated) == set(ds.STRUCTURE_NAMES)
    labels = read_nifti(data.path(case.label))
    voxel_cm3 = np.prod(labels.spacing_mm) / 1000.0
    counts = np.bincount(labels.array.ravel(), minlength=4)
    assert counts[1] * voxel_cm3 > 100  # bodies T12–L5
    assert counts[2] * voxel_cm3 > 400  # os coxae + sacrum
    # S1's body is sacrum (pelvis), not a vertebral body (it would name every level one low)
    total = reorient(read_nifti(DEFAULT_SRC / "example_seg_fast_force_split.nii.gz"))
    assert not np.any(labels.array[np.rint(total.array) == 26] == 1)
    heads, n = ndimage.label(labels.array == 3)
    assert n == 2, "one head per side"
    sizes = np.bincount(heads.ravel())[1:] * voxel_cm3
    assert np.all((sizes > 25) & (sizes < 90)), f"head volumes {sizes} cm³ are implausible"
    # left and right heads lie on either side of the midline, at the same height
    centres = ndimage.center_of_mass(heads > 0, heads, [1, 2])
    assert abs(centres[0][0] - centres[1][0]) < 5 and abs(centres[0][2] - centres[1][2]) > 40
    assert "pseudo_labels" in (tmp_path / "d" / "dataset.json").read_text()


def test_prepare_split_in_parallel_fills_the_cache_with_the_same_cases(tiny_dataset, tmp_path):
    from training.data import prepare_split

    direct = prepare_split(tiny_dataset, "train", (5.0, 5.0, 5.0))
    cache = tmp_path / "cache"
    warmed = prepare_split(tiny_dataset, "train", (5.0, 5.0, 5.0), cache, workers=2)
    assert len(list(cache.glob("*-image.npy"))) == len(direct) == 2
    for a, b in zip(direct, warmed):
        assert a.id == b.id and np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
        assert np.allclose(a.volume.origin_mm, b.volume.origin_mm)
