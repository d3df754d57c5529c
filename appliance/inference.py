"""The segmentation pipeline up to the label map, with a timing breakdown.

``load_input`` (DICOM folder or NIfTI file) → ``segment``:
reorient to the bundle's canonical orientation → resample to its working spacing →
crop to the bony region → normalise (``appliance.preprocess``, shared with training) →
streamed sliding window through the engine, each row planned around the vertebral bodies
already found below it (``appliance.tracking``) → per-structure cleanup → label-aware
resampling back onto the input grid. Everything returned is plain data
(:class:`Segmentation`), so later stages (measurements, DICOM outputs) take it from here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from appliance.bundle import Bundle
from appliance.crop import CropConfig, find_crop
from appliance.errors import BundleError, InferenceInputError, InputVolumeError
from appliance.postprocess import PostprocessConfig, clean_labels, to_input_grid
from appliance.preprocess import INTENSITY_OFFSET, normalize, reorient, resample
from appliance.sliding_window import Predictor, SlidingWindow, mirrored
from appliance.tracking import LabelTracker
from appliance.volume import Volume, read_nifti

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceConfig:
    overlap: float = 0.5
    batch_size: int = 4
    #: windows whose normalised input is all ``<= empty_below`` are not run (0.0 = only pure air)
    empty_below: float | None = 0.0
    tta_mirror: bool = False
    crop: CropConfig = field(default_factory=CropConfig)
    #: plan each row around the vertebral bodies already found below it (:mod:`appliance.tracking`)
    track: bool = True
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    label_gaussian: bool = True
    #: keep the network's raw argmax over the crop (working grid) in ``Segmentation.raw`` (benchmarks)
    keep_raw: bool = False


@dataclass
class Segmentation:
    """The label map on the input grid and how it was obtained."""

    labels: Volume                   # uint8, same geometry as ``image``
    image: Volume                    # the input as loaded
    timing_s: dict[str, float]
    info: dict
    raw: np.ndarray | None = None    # raw argmax over the crop at working spacing (keep_raw)


def load_input(path: str | Path, **series_kw) -> Volume:
    """A DICOM series folder or a single image file (NIfTI, ...)."""
    path = Path(path)
    if path.is_dir():
        from appliance.series import read_series
        return read_series(path, **series_kw)
    if path.is_file():
        return read_nifti(path)
    raise InputVolumeError(f"input {path} is neither a DICOM folder nor an image file")


def _is_canonical(volume: Volume) -> bool:
    return bool(np.allclose(volume.direction, np.eye(3), atol=1e-6))


def segment(image: Volume, bundle: Bundle, predictor: Predictor, config: InferenceConfig = InferenceConfig(),
            progress: Callable[[int, int], None] | None = None,
            timing_s: dict[str, float] | None = None) -> Segmentation:
    """Label map for ``image`` on its own grid (see the module docstring)."""
    timing = dict(timing_s or {})
    pre = bundle.manifest.preprocessing
    window = pre.window_zyx
    if image.array.dtype.kind not in "iuf":
        raise InferenceInputError(f"image dtype {image.array.dtype} is not numeric")
    if pre.intensity_offset != INTENSITY_OFFSET:  # normalize() implements the paper's +1000 only
        raise BundleError(f"bundle intensity_offset {pre.intensity_offset} is not the supported {INTENSITY_OFFSET}",
                          code="invalid")
    t0 = time.perf_counter()
    canonical = image if _is_canonical(image) else reorient(image, pre.canonical_orientation)
    work = resample(canonical, pre.working_spacing_mm)  # float32, linear
    del canonical
    spacing_zyx = work.spacing_mm[::-1]
    crop = find_crop(work.array, spacing_zyx, config.crop, min_shape=window)
    x = np.array(work.array[crop.slices], dtype=np.float32, copy=True)
    normalize(x, pre.normalization_t, out=x)
    crop_origin = work.index_to_lps(np.asarray([crop.start[::-1]], dtype=float))[0]
    work_shape = work.shape_zyx
    crop_geometry = dict(spacing_mm=work.spacing_mm, origin_mm=tuple(crop_origin), direction=work.direction)
    del work
    t1 = time.perf_counter()
    timing["preprocess_s"] = t1 - t0

    run = mirrored(predictor) if config.tta_mirror else predictor
    sw = SlidingWindow(window, overlap=config.overlap, batch_size=config.batch_size,
                       empty_below=config.empty_below, progress=progress)
    region = crop.row_box if config.crop.per_slab and crop.roi is not None else None
    tracker = None
    if config.track:
        tracker = LabelTracker(x.shape, spacing_zyx, region or (lambda z0, z1: (0, x.shape[1], 0, x.shape[2])))
        sw.run(x, run, sink=tracker, row_box=tracker.row_box, adaptive=True, widen=tracker.widen)
        labels_crop = tracker.labels
    else:
        labels_crop = sw.run(x, run, row_box=region)
    del x
    t2 = time.perf_counter()
    timing["inference_s"] = t2 - t1

    cleaned = clean_labels(labels_crop, crop_geometry["spacing_mm"], config.postprocess)
    labels = to_input_grid(Volume(cleaned, **crop_geometry), image, label_gaussian=config.label_gaussian)
    t3 = time.perf_counter()
    timing["postprocess_s"] = t3 - t2
    info = {
        "input_shape_zyx": list(image.shape_zyx),
        "input_spacing_mm": list(image.spacing_mm),
        "working_shape_zyx": list(work_shape),
        "working_spacing_mm": list(pre.working_spacing_mm),
        "crop": {"start_zyx": list(crop.start), "stop_zyx": list(crop.stop), "source": crop.source,
                 "fraction": round(crop.fraction_of(work_shape), 4)},
        "windows": asdict(sw.stats),
        "tracking": tracker.stats if tracker is not None else None,
        "window_zyx": list(window),
        "overlap": config.overlap,
        "tta_mirror": config.tta_mirror,
        "model": {"name": bundle.manifest.model.name, "version": bundle.manifest.model.version},
    }
    return Segmentation(image.with_array(labels), image, timing, info, labels_crop if config.keep_raw else None)


def run_inference(input_path: str | Path, bundle: Bundle, engine, config: InferenceConfig = InferenceConfig(),
                  progress: Callable[[int, int], None] | None = None, series_uid: str | None = None) -> Segmentation:
    """Load ``input_path`` (for a DICOM folder: the series ``series_uid``, needed only when the
    folder holds several) and segment it with ``engine`` (anything with ``run``)."""
    t0 = time.perf_counter()
    image = load_input(input_path, limits=_series_limits(bundle), series_uid=series_uid) \
        if Path(input_path).is_dir() else load_input(input_path)
    timing = {"load_s": time.perf_counter() - t0}
    result = segment(image, bundle, engine.run, config, progress, timing)
    result.info["engine"] = getattr(engine, "name", type(engine).__name__)
    result.timing_s["total_s"] = sum(v for k, v in result.timing_s.items() if k.endswith("_s") and k != "total_s")
    return result


def _series_limits(bundle: Bundle):
    from appliance.series import SeriesLimits
    return SeriesLimits(min_slices=bundle.manifest.preprocessing.window_zyx[0])
