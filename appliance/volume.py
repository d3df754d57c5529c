"""A volume is a numpy array plus its geometry in DICOM patient coordinates (LPS, mm).

Array axes are ``(z, y, x)`` — slices, rows, columns — as SimpleITK's
``GetArrayFromImage`` returns them. The geometry follows ITK: ``origin_mm`` is the
LPS position of voxel ``(x=0, y=0, z=0)``'s centre, ``spacing_mm`` is ``(x, y, z)``,
and ``direction`` is the 3×3 matrix whose *columns* are the LPS directions of the
x, y and z index axes (for DICOM slices: row cosine, column cosine, slice normal;
PS3.3 C.7.6.2.1.1). NIfTI files are read and written with SimpleITK, which converts
between NIfTI's RAS and LPS itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from appliance.errors import InputVolumeError


@dataclass(frozen=True)
class Volume:
    """Voxel array ``(z, y, x)`` with its LPS geometry."""

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise InputVolumeError(f"a volume needs 3 dimensions, got shape {self.array.shape}")
        spacing = np.asarray(self.spacing_mm, dtype=float)
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise InputVolumeError(f"voxel spacing must be 3 positive numbers, got {self.spacing_mm}")
        direction = np.asarray(self.direction, dtype=float)
        if direction.shape != (3, 3) or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise InputVolumeError("direction must be a 3×3 orthonormal matrix")
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in spacing))
        object.__setattr__(self, "origin_mm", tuple(float(o) for o in self.origin_mm))
        object.__setattr__(self, "direction", direction)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4×4 matrix mapping homogeneous ``(x, y, z, 1)`` indices to LPS millimetres."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing_mm)[None, :]
        a[:3, 3] = self.origin_mm
        return a

    def index_to_lps(self, ijk_xyz: np.ndarray) -> np.ndarray:
        """LPS mm of ``(N, 3)`` voxel indices given in ``(x, y, z)`` order."""
        ijk = np.asarray(ijk_xyz, dtype=float)
        return ijk @ (self.direction * np.asarray(self.spacing_mm)[None, :]).T + np.asarray(self.origin_mm)

    def lps_to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Continuous ``(x, y, z)`` voxel indices of ``(N, 3)`` LPS points."""
        m = self.direction * np.asarray(self.spacing_mm)[None, :]
        return (np.asarray(points_mm, dtype=float) - np.asarray(self.origin_mm)) @ np.linalg.inv(m).T

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same geometry, other voxels (e.g. a label map for this image)."""
        if array.shape != self.array.shape:
            raise InputVolumeError(f"shape {array.shape} differs from the volume's {self.array.shape}")
        return Volume(array, self.spacing_mm, self.origin_mm, self.direction)

    def same_geometry(self, other: "Volume", atol_mm: float = 1e-3) -> bool:
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=1e-6)
            and np.allclose(self.origin_mm, other.origin_mm, atol=atol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-6)
        )


def to_sitk(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(volume.spacing_mm)
    image.SetOrigin(volume.origin_mm)
    image.SetDirection(tuple(float(v) for v in volume.direction.ravel()))
    return image


def from_sitk(image: sitk.Image) -> Volume:
    if image.GetDimension() != 3:
        raise InputVolumeError(f"expected a 3D image, got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputVolumeError("expected a scalar image, got a multi-component one")
    return Volume(
        array=sitk.GetArrayFromImage(image),
        spacing_mm=image.GetSpacing(),
        origin_mm=image.GetOrigin(),
        direction=np.asarray(image.GetDirection(), dtype=float).reshape(3, 3),
    )


def read_nifti(path: str | Path) -> Volume:
    """Read a NIfTI (or any SimpleITK-readable single file) volume."""
    path = Path(path)
    if not path.is_file():
        raise InputVolumeError(f"no such file: {path}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputVolumeError(f"cannot read {path.name} as an image: {exc}") from exc
    return from_sitk(image)


def write_nifti(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` as NIfTI (``.nii.gz``), compressed, ITK-SNAP compatible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(to_sitk(volume), str(path), useCompression=True)
    return path
