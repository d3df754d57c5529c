"""Preprocessing shared by training and inference (JoVE 67781, "Preprocessing").

Training imports these functions from here so the two can never drift:
reorient to the canonical orientation, resample to the model's working spacing, and
normalise intensities as the paper does: add 1000, clip to [0, t], divide by t.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from appliance.errors import InputVolumeError
from appliance.volume import Volume, from_sitk, to_sitk

#: Canonical orientation: array axes along +x (L), +y (P), +z (S) — identity direction.
CANONICAL_ORIENTATION = "LPS"
#: The paper's intensity offset ("add 1000 to the grey values").
INTENSITY_OFFSET = 1000.0


def reorient(volume: Volume, orientation: str = CANONICAL_ORIENTATION) -> Volume:
    """Permute/flip axes so the direction matrix is the closest to ``orientation``.

    Only exact axis permutations and flips are applied (no resampling); oblique
    acquisitions keep their residual rotation in ``direction``.
    """
    return from_sitk(sitk.DICOMOrient(to_sitk(volume), orientation))


def resample(volume: Volume, spacing_mm: Sequence[float], *, is_label: bool = False,
             default_value: float = -1024.0) -> Volume:
    """Resample onto a grid of ``spacing_mm`` (x, y, z) covering the same extent.

    Images use linear interpolation (float32); label maps use label-aware Gaussian
    interpolation (``sitkLabelGaussian``) so thin structures keep their topology.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    if spacing.shape != (3,) or np.any(spacing <= 0):
        raise InputVolumeError(f"working spacing must be 3 positive numbers, got {spacing_mm}")
    image = to_sitk(volume)
    size_xyz = np.asarray(image.GetSize(), dtype=float)
    extent = size_xyz * np.asarray(volume.spacing_mm)
    new_size = [max(1, int(round(e / s))) for e, s in zip(extent, spacing)]
    # keep the physical extent centred: shift the first voxel centre accordingly
    shift = 0.5 * (spacing - np.asarray(volume.spacing_mm))
    origin = np.asarray(volume.origin_mm) + volume.direction @ shift
    resampler = sitk.ResampleImageFilter()
    resampler.SetOutputSpacing(tuple(float(s) for s in spacing))
    resampler.SetSize([int(n) for n in new_size])
    resampler.SetOutputOrigin(tuple(float(o) for o in origin))
    resampler.SetOutputDirection(image.GetDirection())
    if is_label:
        resampler.SetInterpolator(sitk.sitkLabelGaussian)
        resampler.SetDefaultPixelValue(0)
        resampler.SetOutputPixelType(sitk.sitkUInt8)
    else:
        resampler.SetInterpolator(sitk.sitkLinear)
        resampler.SetDefaultPixelValue(float(default_value))
        resampler.SetOutputPixelType(sitk.sitkFloat32)
    return from_sitk(resampler.Execute(image))


def normalize(array: np.ndarray, t: float, out: np.ndarray | None = None) -> np.ndarray:
    """JoVE 67781 intensity normalisation: ``clip(x + 1000, 0, t) / t`` as float32.

    During training ``t`` is drawn from U(1000, 3000) per sample; at inference the fixed
    ``t`` recorded in the model manifest is used.
    """
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"normalisation threshold t must be positive, got {t}")
    x = np.add(array, INTENSITY_OFFSET, out=out, dtype=np.float32, casting="unsafe") if out is not None \
        else np.asarray(array, dtype=np.float32) + np.float32(INTENSITY_OFFSET)
    np.clip(x, 0.0, t, out=x)
    x *= np.float32(1.0 / t)
    return x
