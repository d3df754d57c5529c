"""One study from DICOM series to every result: the appliance pipeline.

series folder → :func:`appliance.inference.run_inference` (label map on the input grid)
→ :func:`require_column` (no vertebral column: :class:`~appliance.errors.NoColumnError`, only
the label map written) → :func:`appliance.measure.api.measure` (``wbspine.measurements/1``)
→ :func:`appliance.outputs.writer.write_outputs` (SEG, SR, key images, STL, Encapsulated STL).

Each stage takes plain data from the one before; this module only wires them and
records the timing of each. :func:`make_processor` is the DICOM node's processor factory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from appliance.bundle import DEFAULT_BUNDLE_DIR, Bundle, load_bundle
from appliance.engines.select import EngineConfig
from appliance.inference import InferenceConfig, run_inference
from appliance.volume import write_nifti

log = logging.getLogger(__name__)

#: Result roles that travel back to PACS (the rest stays in the study's work folder).
DICOM_ROLES = ("seg", "sr", "key_image_", "stl_dicom_")


@dataclass
class StudyResult:
    out_dir: Path
    paths: dict[str, Path]
    measurements: dict
    timing_s: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # engine, crop, window counts (timing.json)

    @property
    def dicom_files(self) -> list[Path]:
        """The DICOM objects to send, SEG and SR first (smallest, most awaited)."""
        order = {role: k for k, role in enumerate(DICOM_ROLES)}
        picked = [(role, p) for role, p in self.paths.items()
                  if p.suffix == ".dcm" and any(role.startswith(r) for r in DICOM_ROLES)]
        picked.sort(key=lambda rp: min(v for r, v in order.items() if rp[0].startswith(r)))
        return [p for _, p in picked]


def process_study(series_dir: str | Path, out_dir: str | Path, bundle: Bundle | None = None, *,
                  engine: EngineConfig = EngineConfig(), config: InferenceConfig = InferenceConfig(),
                  outputs: bool = True, progress=None, runner=None, check_column: bool = True,
                  series_uid: str | None = None,
                  previous: Sequence[tuple[str, str, str, str]] = ()) -> StudyResult:
    """Segment, measure and write every result of the series in ``series_dir``.

    ``series_dir`` may also be a NIfTI file: then there is no DICOM source to reference,
    and only the STL models are written besides labels and measurements. ``runner``: an
    engine already built (kept open, e.g. the node's); else one is built from ``engine``
    for this study and closed after it. ``check_column``: raise
    :class:`~appliance.errors.NoColumnError` when the segmentation holds no vertebral column
    (:mod:`appliance.column`), after writing ``labels.nii.gz`` and before anything else.
    ``series_uid``: the series to use when ``series_dir`` holds several. ``previous``: the
    results (Study, Series, SOP Class, SOP Instance UID) of an earlier version of this
    series that these replace (the SR references the earlier SR as its predecessor).
    """
    from appliance.engines.select import select_engine
    from appliance.measure.api import measure
    from appliance.outputs.algorithm import AlgorithmInfo
    from appliance.outputs.writer import write_meshes, write_outputs

    bundle = bundle or load_bundle(DEFAULT_BUNDLE_DIR)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    own = runner is None
    if own:
        runner = select_engine(bundle, replace(engine, batch_size=config.batch_size)).engine
    try:
        seg = run_inference(series_dir, bundle, runner, config, progress, series_uid=series_uid)
    finally:
        if own:
            runner.close()
    timing = dict(seg.timing_s)
    paths: dict[str, Path] = {"labels": write_nifti(seg.labels, out / "labels.nii.gz")}
    plausible = None
    if check_column:
        t = time.perf_counter()
        plausible = require_column(seg.labels.array, seg.labels.affine, bundle, paths["labels"]).plausible
        timing["column_check_s"] = time.perf_counter() - t

    t = time.perf_counter()
    measurements = measure(seg.labels.array, seg.labels.affine, plausible=plausible)
    timing["measure_s"] = time.perf_counter() - t
    paths["measurements"] = out / "measurements.json"
    paths["measurements"].write_text(json.dumps(measurements, indent=2) + "\n")

    if outputs and Path(series_dir).is_dir():
        t = time.perf_counter()
        algorithm = AlgorithmInfo(bundle.manifest.model.name, bundle.manifest.model.version)
        paths.update(write_outputs(seg.labels, series_dir, measurements, out, algorithm, series_uid=series_uid,
                                   previous=previous))
        timing["outputs_s"] = time.perf_counter() - t
    elif outputs:
        t = time.perf_counter()
        paths.update({f"stl_{name}": r.path for name, r in write_meshes(seg.labels, out).items()})
        timing["outputs_s"] = time.perf_counter() - t
    timing["total_s"] = sum(v for k, v in timing.items() if k != "total_s")
    (out / "timing.json").write_text(json.dumps({"timing_s": {k: round(v, 4) for k, v in timing.items()},
                                                 **seg.info}, indent=2) + "\n")
    paths["timing"] = out / "timing.json"
    log.info("study processed", extra={"seconds": round(timing["total_s"], 2), "files": len(paths)})
    return StudyResult(out, paths, measurements, timing, dict(seg.info))


def require_column(labels, affine, bundle: Bundle, labels_path: Path | None = None):
    """The :class:`~appliance.column.ColumnFinding` of :func:`appliance.column.find_column`;
    raise :class:`~appliance.errors.NoColumnError` (one line: what was found, the bundle and
    its recorded validation) when it finds no column."""
    from appliance.bundle_quality import assess
    from appliance.column import find_column
    from appliance.errors import NoColumnError

    finding = find_column(labels, affine)
    if finding.found:
        return finding
    m = bundle.manifest
    a = assess(m.validation)
    quality = (f"lowest validation Dice {a.dice:.3f} ({a.structure})" if a.validated else "no validation recorded")
    where = f"; label map: {labels_path}" if labels_path is not None else ""
    raise NoColumnError(f"no vertebral column found: {finding.describe()}; is this a spine scan and is the model "
                        f"trained? (bundle {m.model.name} {m.model.version}, {quality}){where}")


def make_processor(bundle_dir: Path | None = None, engine: dict | None = None, check_column: bool = True):
    """The node's processor factory (``processing.processor = "appliance.pipeline:make_processor"``).

    Loads and verifies the bundle and builds the configured engine (``engine``:
    :class:`EngineConfig` fields) once, at start: a tampered bundle or an engine this box
    cannot run stops the node with a clear error instead of failing every job later, and
    no study pays for building the engine again (a TensorRT plan takes seconds to load).
    """
    from appliance.engines.select import select_engine
    from appliance.errors import EngineError

    bundle = load_bundle(bundle_dir or DEFAULT_BUNDLE_DIR)
    try:
        config = EngineConfig(**(engine or {}))
    except TypeError as exc:
        raise EngineError(f"unknown engine setting: {exc}") from None
    runner = select_engine(bundle, replace(config, batch_size=InferenceConfig().batch_size)).engine
    log.info("processor: bundle %s %s, engine %s", bundle.manifest.model.name, bundle.manifest.model.version,
             runner.name)
    lock = threading.Lock()  # one study at a time on the engine (the node's worker is one thread)

    def process(series_dir: Path, work_dir: Path, previous: Sequence[tuple[str, str, str, str]] = ()) -> list[Path]:
        """``previous``: the node's results of the version this job supersedes (plain UIDs)."""
        with lock:
            return process_study(series_dir, work_dir, bundle, runner=runner, check_column=check_column,
                                 previous=previous).dicom_files

    return process
