"""Write every result object of one study: the single entry point of ``appliance.outputs``.

Layout of ``out_dir``::

    seg.dcm                  DICOM SEG (PS3.3 A.51)
    sr.dcm                   TID 1500 Comprehensive 3D SR (PS3.16)
    measurements.json        the measurements the SR encodes
    key_images/{coronal,sagittal}.dcm|.png   Secondary Capture + PNG preview
    stl/<name>.stl           binary STL, LPS mm: one per segment, combined, printable
    stl_dicom/<name>.dcm     the same as DICOM Encapsulated STL (PS3.3 A.85.1)
    outputs.json             mesh figures and timings (no patient identifiers)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import highdicom as hd
from PIL import Image

from appliance.errors import OutputError
from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.connectors import DEFAULT_STRUT_RADIUS_MM, fill_voids, join_parts
from appliance.outputs.encapsulated_stl import build_encapsulated_stl
from appliance.outputs.keyimages import build_key_images
from appliance.outputs.render import render_views
from appliance.outputs.seg import build_seg, segment_label_map
from appliance.outputs.source import SourceSeries, load_source_series
from appliance.outputs.sr import build_sr
from appliance.outputs.stl import DEFAULT_MAX_TRIANGLES, MeshReport, export_mask
from appliance.volume import Volume

log = logging.getLogger(__name__)


def _save(ds, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_meshes(labels: Volume, out: Path, max_triangles: int | None = DEFAULT_MAX_TRIANGLES,
                 strut_radius_mm: float = DEFAULT_STRUT_RADIUS_MM,
                 workers: int | None = None) -> dict[str, MeshReport]:
    """``out/stl/<segment>.stl`` per segment, ``combined.stl`` and the one-piece ``printable.stl``.

    The printable model (struts, meshing, checks: the longest part, ~16 s of 38 s on a
    full-size study) is made in a second process while this one meshes the segments and
    the combined model; ``workers=1`` (or a single CPU) does everything here. The meshes
    are the same either way (the STL header's time stamp differs from run to run).
    """
    segments, specs = segment_label_map(labels)
    combined = labels.with_array(segments > 0)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    pool = None
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the node process runs threads, and forking a threaded process is unsafe
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        printable_job = (pool.submit(_printable, combined, out, max_triangles, strut_radius_mm)
                         if pool else None)
        reports = {spec.key: export_mask(segments == k + 1, labels, out / "stl" / f"{spec.key}.stl", spec.key,
                                         max_triangles)
                   for k, spec in enumerate(specs)}
        del segments
        reports["combined"] = export_mask(combined.array, labels, out / "stl" / "combined.stl", "combined",
                                          max_triangles)
        printable, struts = (printable_job.result() if printable_job
                             else _printable(combined, out, max_triangles, strut_radius_mm))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    reports["printable"] = printable
    log.info("meshes written", extra={"struts": struts, "meshes": len(reports)})
    return reports


def _printable(combined: Volume, out: Path, max_triangles: int | None,
               strut_radius_mm: float) -> tuple[MeshReport, int]:
    """The one-piece model: every part joined by struts, meshed, checked to be one body."""
    joined, struts = join_parts(combined.array, combined.affine, strut_radius_mm)
    path = out / "stl" / "printable.stl"
    printable = export_mask(joined, combined, path, "printable", max_triangles)
    if printable.bodies != 1:  # a void closed by several parts together: fill it and mesh again
        printable = export_mask(fill_voids(joined), combined, path, "printable", max_triangles)
    if printable.bodies != 1:
        raise OutputError(f"the printable model has {printable.bodies} parts, expected one")
    return printable, struts


def write_outputs(labels: Volume, source_dir: str | Path, measurements: dict, out_dir: str | Path,
                  algorithm: AlgorithmInfo, *, max_triangles: int | None = DEFAULT_MAX_TRIANGLES,
                  strut_radius_mm: float = DEFAULT_STRUT_RADIUS_MM, stl: bool = True,
                  key_images: bool = True, source: SourceSeries | None = None,
                  series_uid: str | None = None,
                  previous: Sequence[tuple[str, str, str, str]] = ()) -> dict[str, Path]:
    """Write SEG, SR, key images and STL (plain and DICOM) for one study.

    ``labels`` must be on the grid of the series in ``source_dir`` (voxel for voxel; the
    series ``series_uid`` when the folder holds several);
    ``measurements`` is a ``wbspine.measurements/1`` dict (nulls allowed, with warnings).
    ``previous``: (Study, Series, SOP Class, SOP Instance UID) of the results of the
    version these replace; the SR names the earlier SR as its predecessor.
    Returns the path of every file written, keyed by role (``seg``, ``sr``, ``stl_pelvis``…).
    """
    if not isinstance(measurements, dict):
        raise OutputError("measurements must be a dict (wbspine.measurements/1)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    source = source or load_source_series(source_dir, labels, series_uid)
    timings["load_source_s"] = time.perf_counter() - start

    t = time.perf_counter()
    seg, specs = build_seg(labels, source, algorithm)
    paths = {"seg": _save(seg, out / "seg.dcm")}
    timings["seg_s"] = time.perf_counter() - t

    t = time.perf_counter()
    paths["sr"] = _save(build_sr(measurements, source, seg, specs, algorithm, previous=previous), out / "sr.dcm")
    paths["measurements"] = out / "measurements.json"
    paths["measurements"].write_text(json.dumps(measurements, indent=2) + "\n")
    timings["sr_s"] = time.perf_counter() - t

    if key_images:
        t = time.perf_counter()
        views = render_views(labels, source, measurements)
        for view, sc in zip(views, build_key_images(labels, source, measurements, algorithm, views)):
            paths[f"key_image_{view.name}"] = _save(sc, out / "key_images" / f"{view.name}.dcm")
            Image.fromarray(view.rgb).save(out / "key_images" / f"{view.name}.png")
            paths[f"key_image_{view.name}_png"] = out / "key_images" / f"{view.name}.png"
        timings["key_images_s"] = time.perf_counter() - t

    meshes: dict[str, MeshReport] = {}
    if stl:
        t = time.perf_counter()
        meshes = write_meshes(labels, out, max_triangles, strut_radius_mm)
        series_uid = hd.UID()
        for k, (name, report) in enumerate(meshes.items()):
            paths[f"stl_{name}"] = report.path
            ds = build_encapsulated_stl(report.path, f"wbspine {name}", source, algorithm, series_uid, k + 1)
            paths[f"stl_dicom_{name}"] = _save(ds, out / "stl_dicom" / f"{name}.dcm")
        timings["stl_s"] = time.perf_counter() - t

    timings["total_s"] = time.perf_counter() - start
    summary = {"algorithm": asdict(algorithm), "segments": [s.key for s in specs], "timings": timings,
               "meshes": {n: {"triangles": r.triangles, "volume_mm3": r.volume_mm3,
                              "mask_volume_mm3": r.mask_volume_mm3, "volume_error": r.volume_error,
                              "bodies": r.bodies, "watertight": r.watertight}
                          for n, r in meshes.items()}}
    paths["outputs"] = out / "outputs.json"
    paths["outputs"].write_text(json.dumps(summary, indent=2, default=float) + "\n")
    log.info("outputs written", extra={"files": len(paths), **{k: round(v, 3) for k, v in timings.items()}})
    return paths

