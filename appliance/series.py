"""DICOM folder → one CT :class:`~appliance.volume.Volume`, or one clear typed error.

Steps (headers first, pixels only once everything is known to be sane):

1. list regular files (capped count), read headers without pixel data (pydicom);
   files that are not DICOM images are ignored;
2. drop localizers/scouts (ImageType value 3 ``LOCALIZER``) and single-frame-less objects;
3. require exactly one series (or the requested SeriesInstanceUID), modality ``CT``,
   one ImageOrientationPatient, one Rows×Columns, one PixelSpacing;
4. sort by position along the slice normal; refuse duplicate positions, gaps (missing
   slices) and any slice off the regular grid (:mod:`dicom_node.geometry`: the one rule
   the node's series completion and the DICOM writers use too);
5. check ``rows × columns × slices`` against the cap **before** allocating, then read the
   pixels slice by slice into one preallocated array (``int16`` when the rescaled values
   are integral and fit, else ``float32``); SimpleITK/GDCM decodes what pydicom cannot.

Geometry (PS3.3 C.7.6.2.1.1): x = row direction cosine, y = column cosine, z = their
cross product (slices sorted ascending along it), origin = first sorted slice's
ImagePositionPatient, spacing = (column spacing, row spacing, median slice step).
Every refusal is :class:`~appliance.errors.SeriesError` with ``code`` in :class:`SeriesErrorCode`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from appliance.errors import SeriesError
from dicom_node.geometry import SLICE_POSITION_TOLERANCE_MM, slice_grid
from appliance.volume import Volume

HEADER_TAGS = ["SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "ImageType",
               "ImageOrientationPatient",
               "ImagePositionPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames",
               "RescaleSlope", "RescaleIntercept", "BitsAllocated", "PixelRepresentation", "SamplesPerPixel"]


class SeriesErrorCode(str, Enum):
    NOT_A_VOLUME = "not_a_volume"
    TOO_FEW_SLICES = "too_few_slices"
    UNEVEN_SPACING = "uneven_spacing"
    MISSING_SLICES = "missing_slices"
    MIXED_ORIENTATION = "mixed_orientation"
    MULTIPLE_SERIES = "multiple_series"
    NOT_CT = "not_ct"
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class SeriesLimits:
    min_slices: int = 16                 # the model's window depth
    max_files: int = 4096
    max_voxels: int = 512 * 512 * 2048   # checked before any pixel buffer is allocated
    max_rows_cols: int = 2048
    orientation_tol: float = 1e-3


def _fail(code: SeriesErrorCode, message: str) -> SeriesError:
    return SeriesError(message, code=code.value)


@dataclass
class _Slice:
    path: Path
    ds: pydicom.Dataset
    position: float = 0.0


def _headers(folder: Path, limits: SeriesLimits) -> list[_Slice]:
    if not folder.is_dir():
        raise _fail(SeriesErrorCode.NOT_A_VOLUME, f"{folder} is not a folder of DICOM files")
    files = []
    for root, _dirs, names in os.walk(folder):
        for n in sorted(names):
            files.append(Path(root) / n)
            if len(files) > limits.max_files:
                raise _fail(SeriesErrorCode.TOO_LARGE, f"more than {limits.max_files} files in {folder}")
    out = []
    for path in sorted(files):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "Rows" not in ds or "SOPClassUID" not in ds:
            continue  # not an image (e.g. a DICOMDIR or an SR)
        out.append(_Slice(path, ds))
    return out


def _is_localizer(ds: pydicom.Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return len(image_type) >= 3 and image_type[2] == "LOCALIZER"


def _select(slices: list[_Slice], series_uid: str | None) -> list[_Slice]:
    slices = [s for s in slices if not _is_localizer(s.ds)]
    if not slices:
        raise _fail(SeriesErrorCode.NOT_A_VOLUME, "no DICOM image slices found (localizers excluded)")
    uids = sorted({str(s.ds.get("SeriesInstanceUID", "")) for s in slices})
    if series_uid is not None:
        slices = [s for s in slices if str(s.ds.get("SeriesInstanceUID", "")) == series_uid]
        if not slices:
            raise _fail(SeriesErrorCode.NOT_A_VOLUME, f"series {series_uid} is not in the folder")
    elif len(uids) > 1:
        listing = "; ".join(describe_series(slices))
        raise _fail(SeriesErrorCode.MULTIPLE_SERIES,
                    f"the folder holds {len(uids)} series; choose one with --series UID (or pass one folder per "
                    f"series): {listing}")
    modalities = sorted({str(s.ds.get("Modality", "")) for s in slices})
    if modalities != ["CT"]:
        raise _fail(SeriesErrorCode.NOT_CT, f"expected a CT series, got modality {'/'.join(modalities) or 'none'}")
    if any(int(s.ds.get("NumberOfFrames", 1) or 1) != 1 for s in slices):
        raise _fail(SeriesErrorCode.NOT_A_VOLUME, "multi-frame images are not supported; expected one file per slice")
    if any(int(s.ds.get("SamplesPerPixel", 1)) != 1 for s in slices):
        raise _fail(SeriesErrorCode.NOT_A_VOLUME, "colour images are not a CT volume")
    return slices


def _geometry(slices: list[_Slice], limits: SeriesLimits) -> tuple[np.ndarray, tuple[float, float, float]]:
    for s in slices:
        for tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
            if tag not in s.ds:
                raise _fail(SeriesErrorCode.NOT_A_VOLUME, f"{s.path.name} lacks {tag}; cannot place it in space")
    iops = np.array([[float(v) for v in s.ds.ImageOrientationPatient] for s in slices])
    if iops.shape[1] != 6 or np.abs(iops - iops[0]).max() > limits.orientation_tol:
        raise _fail(SeriesErrorCode.MIXED_ORIENTATION, "slices have different orientations (ImageOrientationPatient)")
    row, col = iops[0, :3], iops[0, 3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise _fail(SeriesErrorCode.NOT_A_VOLUME, "ImageOrientationPatient is not two orthonormal vectors")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    shapes = {(int(s.ds.Rows), int(s.ds.Columns)) for s in slices}
    pixel = {tuple(round(float(v), 6) for v in s.ds.PixelSpacing) for s in slices}
    if len(shapes) != 1 or len(pixel) != 1:
        raise _fail(SeriesErrorCode.NOT_A_VOLUME, "slices differ in size or pixel spacing")
    for s in slices:
        s.position = float(np.asarray([float(v) for v in s.ds.ImagePositionPatient]) @ normal)
    slices.sort(key=lambda s: s.position)
    if len(slices) < limits.min_slices:
        raise _fail(SeriesErrorCode.TOO_FEW_SLICES,
                    f"{len(slices)} slice(s); the model needs at least {limits.min_slices}")
    grid = slice_grid([s.position for s in slices])  # along the normal: spacing and gaps
    if grid.duplicates:
        raise _fail(SeriesErrorCode.UNEVEN_SPACING, grid.describe())
    if grid.missing:
        raise _fail(SeriesErrorCode.MISSING_SLICES, grid.describe())
    if not grid.regular:
        raise _fail(SeriesErrorCode.UNEVEN_SPACING, grid.describe())
    step = grid.step_mm
    # the whole position (in-plane too) must be the grid's, as the DICOM writers check it
    full = slice_grid([[float(v) for v in s.ds.ImagePositionPatient] for s in slices], normal)
    if not full.regular:
        raise _fail(SeriesErrorCode.NOT_A_VOLUME,
                    f"slice positions do not line up along the slice normal (gantry tilt?): slice {full.worst} "
                    f"is {full.deviation_mm:.3f} mm off (tolerance {SLICE_POSITION_TOLERANCE_MM} mm)")
    direction = np.stack([row, col, normal], axis=1)
    rs, cs = (float(v) for v in slices[0].ds.PixelSpacing)  # row spacing (y), column spacing (x)
    return direction, (cs, rs, step)


def describe_series(slices: list[_Slice]) -> list[str]:
    """One line per series: number, description, modality, image count and UID (no patient data)."""
    groups: dict[str, list[pydicom.Dataset]] = {}
    for s in slices:
        groups.setdefault(str(s.ds.get("SeriesInstanceUID", "")), []).append(s.ds)
    out = []
    for uid, members in sorted(groups.items(), key=lambda kv: (str(kv[1][0].get("SeriesNumber", "")), kv[0])):
        first = members[0]
        text = str(first.get("SeriesDescription", "") or "").strip() or "no description"
        out.append(f"#{first.get('SeriesNumber', '?')} {text!r} {first.get('Modality', '?')} "
                   f"{len(members)} image(s) UID {uid}")
    return out


def _rescale(ds: pydicom.Dataset) -> tuple[float, float]:
    return float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)


def _pixels(path: Path) -> tuple[np.ndarray, bool]:
    """Stored pixel values (False) or, from the GDCM fallback, rescaled values (True).

    A file whose pixel data neither pydicom nor GDCM can decode (truncated in transfer,
    cut by a full disk) is a :class:`SeriesError` ``unreadable`` that names the file."""
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise _fail(SeriesErrorCode.UNREADABLE, f"{path.name}: cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        return ds.pixel_array, False
    except Exception as first:  # no pydicom handler for this transfer syntax: let GDCM decode it
        import SimpleITK as sitk
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.SetOutputPixelType(sitk.sitkFloat32)
        try:
            return sitk.GetArrayFromImage(reader.Execute())[0], True  # GDCM applied the rescale
        except RuntimeError:
            size = path.stat().st_size
            raise _fail(SeriesErrorCode.UNREADABLE,
                        f"{path.name}: pixel data cannot be decoded ({type(first).__name__}: {first}; "
                        f"{size} bytes on disk): truncated or corrupt; resend the series") from None


def read_series(folder: str | Path, *, limits: SeriesLimits = SeriesLimits(), series_uid: str | None = None) -> Volume:
    """Read one CT series from ``folder`` (see the module docstring for every check)."""
    folder = Path(folder)
    slices = _select(_headers(folder, limits), series_uid)
    rows, cols = int(slices[0].ds.Rows), int(slices[0].ds.Columns)
    if max(rows, cols) > limits.max_rows_cols or rows * cols * len(slices) > limits.max_voxels:
        raise _fail(SeriesErrorCode.TOO_LARGE,
                    f"{cols}×{rows}×{len(slices)} voxels exceed the configured cap ({limits.max_voxels} voxels, "
                    f"{limits.max_rows_cols} per side)")
    direction, spacing = _geometry(slices, limits)
    rescales = {_rescale(s.ds) for s in slices}
    integral = all(float(m).is_integer() and float(b).is_integer() for m, b in rescales)
    dtype = np.int16 if integral else np.float32
    array = np.empty((len(slices), rows, cols), dtype=dtype)  # allocated only after all checks
    for k, s in enumerate(slices):
        raw, rescaled = _pixels(s.path)
        if raw.shape != (rows, cols):
            raise _fail(SeriesErrorCode.NOT_A_VOLUME, f"{s.path.name}: pixel data is {raw.shape}, header says {(rows, cols)}")
        slope, intercept = (1.0, 0.0) if rescaled else _rescale(s.ds)
        values = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept) if not integral else \
            raw.astype(np.int32) * int(slope) + int(intercept)
        if integral:
            values = np.clip(values, -32768, 32767)
        array[k] = values
    origin = tuple(float(v) for v in slices[0].ds.ImagePositionPatient)
    return Volume(array, spacing, origin, direction)
