"""The source image series the results derive from, and its fit with the label map.

Every derived object references the source instances (PS3.3 C.7.6.16.2.6, C.17.2) and
shares their study and Frame of Reference, so the series must be the one the label map
was computed on, voxel for voxel: slice k of the label array (z, y, x) is the instance
whose Image Position (Patient) (PS3.3 C.7.6.2.1.1) equals the label map's voxel
(0, 0, k) centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from appliance.errors import OutputError
from appliance.volume import Volume
from dicom_node.geometry import SLICE_POSITION_TOLERANCE_MM

#: Largest position mismatch accepted between a slice and its label-map plane: the rule
#: the reader applied to the same slices (:mod:`dicom_node.geometry`).
POSITION_TOLERANCE_MM = SLICE_POSITION_TOLERANCE_MM


@dataclass(frozen=True)
class SourceSeries:
    """Source datasets (headers only, no pixels) sorted like the label map's z axis."""

    datasets: tuple[Dataset, ...]
    paths: tuple[Path, ...]

    @property
    def first(self) -> Dataset:
        return self.datasets[0]

    @property
    def study_instance_uid(self) -> str:
        return str(self.first.StudyInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.first.FrameOfReferenceUID)

    def read_pixels(self, index: int) -> np.ndarray:
        """Rescaled grey values of slice ``index`` (float32)."""
        ds = pydicom.dcmread(self.paths[index])
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        return ds.pixel_array.astype(np.float32) * slope + intercept


def _read_headers(source_dir: Path) -> list[tuple[Path, Dataset]]:
    found = []
    for path in sorted(p for p in source_dir.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        if "ImagePositionPatient" in ds and "SOPInstanceUID" in ds:
            found.append((path, ds))
    return found


def load_source_series(source_dir: str | Path, labels: Volume, series_uid: str | None = None) -> SourceSeries:
    """Read the single-frame series in ``source_dir`` (the series ``series_uid`` when given)
    and check it matches ``labels``.

    Raises :class:`OutputError` when the folder holds no series, several series and none
    is named, or a grid other than the label map's (count, size, spacing, orientation,
    positions).
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise OutputError(f"source series folder not found: {source_dir}")
    found = _read_headers(source_dir)
    if not found:
        raise OutputError(f"no DICOM image with a position in {source_dir}")
    if series_uid is not None:
        found = [(p, ds) for p, ds in found if str(ds.SeriesInstanceUID) == series_uid]
        if not found:
            raise OutputError(f"series {series_uid} is not in {source_dir}")
    series = {str(ds.SeriesInstanceUID) for _, ds in found}
    if len(series) != 1:
        raise OutputError(f"{source_dir} holds {len(series)} series; expected one")
    normal = labels.direction[:, 2]
    found.sort(key=lambda item: float(np.dot(np.asarray(item[1].ImagePositionPatient, float), normal)))
    check_grid([ds for _, ds in found], labels)
    return SourceSeries(tuple(ds for _, ds in found), tuple(p for p, _ in found))


def check_grid(datasets: list[Dataset], labels: Volume) -> None:
    """Raise :class:`OutputError` unless the sorted ``datasets`` tile ``labels``' grid."""
    nz, ny, nx = labels.shape_zyx
    if len(datasets) != nz:
        raise OutputError(f"the series has {len(datasets)} slices, the label map {nz}")
    sx, sy, _ = labels.spacing_mm
    expected_iop = np.concatenate([labels.direction[:, 0], labels.direction[:, 1]])
    positions = labels.index_to_lps(np.stack([np.zeros(nz), np.zeros(nz), np.arange(nz)], axis=1))
    for k, ds in enumerate(datasets):
        if (int(ds.Rows), int(ds.Columns)) != (ny, nx):
            raise OutputError(f"slice {k}: {ds.Rows}×{ds.Columns} pixels, label map {ny}×{nx}")
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, float), expected_iop, atol=1e-4):
            raise OutputError(f"slice {k}: orientation differs from the label map's")
        if not np.allclose(np.asarray(ds.PixelSpacing, float), (sy, sx), atol=1e-4):
            raise OutputError(f"slice {k}: pixel spacing differs from the label map's")
        if np.abs(np.asarray(ds.ImagePositionPatient, float) - positions[k]).max() > POSITION_TOLERANCE_MM:
            raise OutputError(f"slice {k}: position differs from the label map's plane {k}")
