"""Bad series reach the real pipeline: a clear error on the job, inputs kept, nothing sent
(cases 17-19); a tampered or unknown model bundle stops the node at start (case 21)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from appliance.errors import SeriesError
from appliance.series import read_series
from dicom_node.config import build_config
from dicom_node.service import NodeService
from tests.appliance.inference.inference_helpers import make_bundle, rewrite_manifest
from tests.dicom_node.conftest import REPO, free_port, node_config, storescu, wait_for
from tests.faults.conftest import peak_rss_growth_mb


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture
def pipeline_node(tmp_path: Path, bundle: Path) -> Iterator[NodeService]:
    """The node with the appliance pipeline as its processor and a PACS that is not there."""
    from appliance.pipeline import make_processor

    cfg = build_config(node_config(tmp_path / "spool", free_port(), series={"idle_timeout_s": 1.0},
                                   send={"destinations": [f"PACS@127.0.0.1:{free_port()}"]}), environ={})
    node = NodeService(cfg, make_processor(bundle))
    node.start()
    yield node
    node.stop()


def variant(src: list[Dataset], k: int, edit: Callable[[int, Dataset], Dataset | None]) -> list[Dataset]:
    """A new series (fresh UIDs) from ``src``; ``edit(i, ds)`` may change a slice or drop it (None)."""
    series_uid = generate_uid(entropy_srcs=["faults", str(k)])
    out = []
    for i, ds in enumerate(src):
        ds = deepcopy(ds)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["faults", str(k), str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        edited = edit(i, ds)
        if edited is not None:
            out.append(edited)
    return out


def shifted(ds: Dataset, dz: float) -> Dataset:
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + dz]
    return ds


def tilted(ds: Dataset) -> Dataset:
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8660254, -0.5]
    return ds


def huge_rle(ds: Dataset) -> Dataset:
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows = ds.Columns = 65535
    ds.PixelData = encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    return ds


def mr(ds: Dataset) -> Dataset:
    ds.Modality = "MR"
    return ds


def duplicate(cts: list[Dataset]) -> list[Dataset]:
    """Two acquisitions under one Series Instance UID: every position twice."""
    first = variant(cts, 6, lambda i, ds: ds)
    second = variant(cts, 6, lambda i, ds: ds)
    for i, ds in enumerate(second):
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["faults", "second", str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return first + second


BAD_SERIES: dict[str, tuple[Callable[[list[Dataset]], list[Dataset]], str, str]] = {
    "missing slices": (lambda c: variant(c, 1, lambda i, ds: None if i in (20, 21) else ds),
                       "missing_slices", "missing from the series"),
    "uneven spacing": (lambda c: variant(c, 2, lambda i, ds: shifted(ds, 0.8) if i >= 20 else ds),
                       "uneven_spacing", "uneven"),
    "mixed orientations": (lambda c: variant(c, 3, lambda i, ds: tilted(ds) if i % 2 else ds),
                           "mixed_orientation", "different orientations"),
    "two series mixed in one": (duplicate, "uneven_spacing", "same position"),
    "Rows/Columns 65535 (RLE bomb)": (lambda c: variant(c, 4, lambda i, ds: huge_rle(ds)),
                                      "too_large", "exceed the configured cap"),
    "non-CT modality": (lambda c: variant(c, 5, lambda i, ds: mr(ds)), "not_ct", "expected a CT series"),
}


def write(datasets: list[Dataset], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i, ds in enumerate(datasets):
        ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)
    return folder


@pytest.mark.fault(17, 18, 19)
def test_bad_series_fail_their_job_with_a_clear_reason_and_send_nothing(
        pipeline_node: NodeService, cts: list[Dataset], tmp_path: Path) -> None:
    node = pipeline_node
    expected: dict[str, tuple[str, str, int]] = {}
    with peak_rss_growth_mb() as growth:
        for name, (build, code, text) in BAD_SERIES.items():
            datasets = build(cts)
            folder = write(datasets, tmp_path / name.replace(" ", "_").replace("/", "_"))
            options = ["-xr"] if datasets[0].file_meta.TransferSyntaxUID == RLELossless else []
            storescu(node.port, sorted(folder.glob("*.dcm")), options=options)
            expected[str(datasets[0].SeriesInstanceUID)] = (code, text, len(datasets))
        wait_for(lambda: len(node.index.list_jobs()) == len(BAD_SERIES)
                 and all(j["state"] in ("failed", "done", "sending") for j in node.index.list_jobs()),
                 timeout_s=120, interval_s=0.2)
    report = []
    for job in node.index.list_jobs():
        code, text, n = expected[job["series_uid"]]
        assert job["state"] == "failed", (job["series_uid"], job["state"])
        assert "SeriesError" in job["reason"] and text in job["reason"], job["reason"]
        directory = Path(node.index.get_series(job["series_uid"])["directory"])
        assert len(list(directory.glob("*.dcm"))) == n, "inputs not kept"
        assert not list(node.spool.work_dir(job["id"]).rglob("*.dcm")), "a result was written"
        report.append(f"{code}: {job['reason'][:90]}")
    assert node.index.query("SELECT COUNT(*) FROM outbox")[0][0] == 0
    assert growth[0] < 400, f"{growth[0]:.0f} MiB: a 65535x65535 series must be refused before allocating"
    print("\n" + "\n".join(report) + f"\npeak RSS growth {growth[0]:.0f} MiB")


@pytest.mark.fault(18)
def test_localizer_is_excluded_and_two_series_in_one_folder_are_refused(cts: list[Dataset],
                                                                       tmp_path: Path) -> None:
    localizer = deepcopy(cts[0])
    localizer.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    localizer.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]   # a coronal scout
    localizer.SOPInstanceUID = generate_uid()
    folder = write([*cts, localizer], tmp_path / "with_localizer")
    volume = read_series(folder)
    assert volume.array.shape[0] == len(cts)                  # the scout is not a slice
    mixed = write([*cts, *variant(cts, 9, lambda i, ds: ds)], tmp_path / "two_series")
    with pytest.raises(SeriesError) as err:
        read_series(mixed)
    assert err.value.code == "multiple_series"


def serve(bundle_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WBSPINE_SPOOL__MIN_FREE_MB": "0"}
    return subprocess.run(
        [sys.executable, "-m", "dicom_node", "serve", "--port", str(free_port()), "--bind", "127.0.0.1",
         "--spool", str(tmp_path / "spool"), "--processor", "appliance.pipeline:make_processor",
         "--bundle", str(bundle_dir), "--metrics-port", "0"],
        env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.fault(21)
def test_tampered_or_unknown_bundle_stops_the_node_with_the_reason(bundle: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    with open(tampered / "model.onnx", "r+b") as fh:  # flip one byte of the weights
        fh.seek(-8, os.SEEK_END)
        byte = fh.read(1)
        fh.seek(-8, os.SEEK_END)
        fh.write(bytes([byte[0] ^ 0xFF]))
    unknown = tmp_path / "unknown"
    shutil.copytree(bundle, unknown)
    rewrite_manifest(unknown, schema_version="wbspine.bundle/99")
    for folder, words in ((tampered, "sha256"), (unknown, "unsupported bundle schema_version")):
        proc = serve(folder, tmp_path / folder.name)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert words in proc.stderr and "serve: error" in proc.stderr, proc.stderr[-2000:]
        assert "listening" not in proc.stderr
