"""One small phantom study written with its DICOM series, and every result object of it
written once per session (≈ 5 s); the tests read those files."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.source import SourceSeries, load_source_series
from appliance.outputs.writer import write_outputs
from appliance.phantom import Study, generate_study, write_study

ALGORITHM = AlgorithmInfo("wbspine-test-unet", "1.2.3")
NULL_REASON = "T1 superior endplate outside the field of view: thoracic kyphosis T1-T12 not measured"
#: A warning in the measurement module's own style, with every non-ASCII character it
#: writes ("mm³", "≥", "±", "°", "–") and one a translation would bring ("é").
NON_ASCII_WARNING = "812 mm³ ≥ 500 mm³ in fragments, merged; stated to ±2.5° – résumé of the body count"


@dataclass(frozen=True)
class Written:
    study: Study
    source: SourceSeries
    measurements: dict
    paths: dict[str, Path]
    out: Path
    dicom_dir: Path


@pytest.fixture(scope="session")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    root = tmp_path_factory.mktemp("outputs")
    study = generate_study(7, "small", cobb_deg=24.0)
    write_study(study, root / "study")
    measurements = copy.deepcopy(study.truth)
    measurements["thoracic_kyphosis_deg"] = None  # an unmeasurable value, with its reason
    measurements["vertebral_rotation_deg"]["C2"] = None
    measurements["warnings"] = [NULL_REASON, NON_ASCII_WARNING]
    source = load_source_series(root / "study" / "dicom", study.labels)
    paths = write_outputs(study.labels, root / "study" / "dicom", measurements, root / "out", ALGORITHM,
                          max_triangles=60_000)
    return Written(study, source, measurements, paths, root / "out", root / "study" / "dicom")
