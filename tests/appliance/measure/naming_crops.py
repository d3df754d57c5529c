"""Label maps for the naming tests: phantom maps cropped along z (affine kept consistent)
and with one body removed."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from appliance.phantom import Study


def z_index(study: Study, z_mm: float) -> int:
    """Slice index nearest to height ``z_mm`` (the phantom's slices are axial)."""
    a = study.labels.affine
    return int(round((z_mm - a[2, 3]) / a[2, 2]))


def vertebra(study: Study, name: str) -> dict:
    return next(v for v in study.truth["vertebrae"] if v["name"] == name)


def crop_z(study: Study, z_lo_mm: float | None, z_hi_mm: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, affine) keeping only slices between the two heights (None: no cut)."""
    lab, aff = study.labels.array, np.array(study.labels.affine, float)
    k0 = 0 if z_lo_mm is None else max(0, z_index(study, z_lo_mm))
    k1 = lab.shape[0] if z_hi_mm is None else min(lab.shape[0], z_index(study, z_hi_mm) + 1)
    out = aff.copy()
    out[:3, 3] = (aff @ np.array([0.0, 0.0, k0, 1.0]))[:3]
    return lab[k0:k1].copy(), out


def without_body(study: Study, name: str) -> np.ndarray:
    """Labels with the vertebral-body component at ``name``'s planted centroid zeroed."""
    lab = study.labels.array.copy()
    comp, _ = ndimage.label(lab == 1)
    xyz = np.linalg.solve(study.labels.affine, np.r_[vertebra(study, name)["centroid_mm"], 1.0])[:3]
    k = comp[tuple(int(round(i)) for i in xyz[::-1])]
    assert k > 0
    lab[comp == k] = 0
    return lab
