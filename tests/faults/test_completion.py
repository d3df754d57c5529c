"""Case 27: a series cut short is never processed half-way; a later, larger version supersedes
the first, linked (issue #19 item 1).

Real peers: storescu (DCMTK) or a scripted pynetdicom SCU as the scanner, the node as a
process (SIGKILL) or in-process, Orthanc as the PACS, the appliance pipeline with the
smoothed oracle test bundle as the processor. "40 s later" is played with a 2 s idle
timeout: the rest arrives well after the idle timeout of the restarted node.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from dicom_node.config import build_config
from dicom_node.service import NodeService
from dicom_node.tools import dcmtk_command
from tests.appliance.inference.inference_helpers import make_bundle
from tests.appliance.outputs.dicom_checks import dciodvfy
from tests.dicom_node.conftest import NODELAY_ENV, Orthanc, free_port, node_config, storescu, wait_for
from tests.dicom_node.rawscu import encode_ds
from tests.dicom_node.test_node_crash import NodeProcess, acknowledged
from tests.faults.hostile import associate, send

SR3D = "1.2.840.10008.5.1.4.1.1.88.34"
IDLE_S = 2.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "b", window=(16, 32, 32), spacing=(2.5, 2.5, 2.5),
                       oracle="smoothed")


def pacs_reports(pacs: Orthanc) -> list[pydicom.Dataset]:
    """Every SR the PACS holds, read from its stored files."""
    out = []
    for item in pacs.get("/instances"):
        with urllib.request.urlopen(f"http://127.0.0.1:{pacs.http_port}/instances/{item}/file", timeout=30) as r:
            ds = pydicom.dcmread(BytesIO(r.read()), stop_before_pixels=True)
        if ds.SOPClassUID == SR3D:
            out.append(ds)
    return out


def predecessor_uids(sr: pydicom.Dataset) -> list[str]:
    return [str(i.ReferencedSOPInstanceUID) for study in sr.get("PredecessorDocumentsSequence", [])
            for series in study.ReferencedSeriesSequence for i in series.ReferencedSOPSequence]


@pytest.mark.fault(27)
def test_sigkill_mid_series_then_the_rest_much_later_gives_one_result_set(
        series_dir: Path, bundle: Path, tmp_path: Path) -> None:
    pacs = Orthanc(tmp_path / "pacs", {}).start()
    files = sorted(series_dir.glob("*.dcm"))
    half = len(files) // 2                                      # 166 of 332 in the probe
    control = tmp_path / "control"
    control.mkdir()
    (control / "crash").write_text(f"after-success {half}")    # kill -9 right after the half-th Success
    (control / "processor").write_text(f"appliance.pipeline:make_processor\n{bundle}")
    node = NodeProcess(tmp_path / "spool", control, free_port(), pacs.dicom_port)
    node.cmd[node.cmd.index("node_processor:make_processor")] = "tests.faults.crashpoint:make_processor"
    node.cmd[node.cmd.index("--idle-timeout") + 1] = str(IDLE_S)
    node.start()
    try:
        scan = subprocess.run([dcmtk_command("storescu"), "-v", "-R", "-aet", "SCANNER", "-aec", "WBSPINE",
                               "127.0.0.1", str(node.port), *map(str, files)], env=NODELAY_ENV,
                              capture_output=True, text=True, timeout=120)
        node.proc.wait(timeout=10)
        out = scan.stdout + scan.stderr
        (control / "crash").unlink()
        acked = set(acknowledged(out))
        assert len(acked) == half
        time.sleep(IDLE_S + 1)                                  # down for longer than the idle timeout
        node.start()
        time.sleep(3 * IDLE_S)                                  # up for longer than the idle timeout
        assert node.query("SELECT COUNT(*) FROM jobs")[0][0] == 0, "the partial series was processed"
        assert node.query("SELECT state FROM series") == [("receiving",)]
        storescu(node.port, [f for f in files if f not in acked])  # the scanner sends the rest
        wait_for(lambda: node.query("SELECT state FROM jobs") in ([("done",)], [("failed",)]),
                 timeout_s=240, interval_s=0.2)
        assert node.query("SELECT state, reason FROM jobs") == [("done", None)]
        assert node.query("SELECT COUNT(*) FROM instances")[0][0] == len(files)
        time.sleep(2 * IDLE_S)                                  # nothing else is completed later
        assert node.query("SELECT COUNT(*) FROM jobs")[0][0] == 1
        sent = node.query("SELECT COUNT(*) FROM outbox WHERE state='sent'")[0][0]
        assert sent >= 4 and len(pacs.get("/instances")) == sent  # exactly one result set
        (report,) = pacs_reports(pacs)
        assert predecessor_uids(report) == []
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()
        pacs.stop()


@pytest.mark.fault(27)
def test_a_refused_tail_or_an_abort_delivers_nothing_until_the_scanner_resends(start_node, cts, short_series) -> None:
    node = start_node(series={"idle_timeout_s": 1.0})
    good = cts[:20]
    assoc = associate(node.port)
    for ds in good:
        assert send(assoc, encode_ds(ds), str(ds.SOPInstanceUID)) == 0x0000
    bad = cts[20]
    assert send(assoc, encode_ds(bad), "1.2.3.4.5") == 0xA900  # data set and command disagree: refused
    assoc.release()                                               # a clean release after a refusal
    assoc = associate(node.port)
    for ds in cts[20:30]:
        assert send(assoc, encode_ds(ds), str(ds.SOPInstanceUID)) == 0x0000
    assoc.abort()                                                 # more, then an A-ABORT
    time.sleep(3.0)
    assert node.index.list_jobs() == [], "a prefix was processed"
    assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 30
    storescu(node.port, short_series)                             # the scanner sends the series again
    wait_for(lambda: [j["state"] for j in node.index.list_jobs()] == ["done"], timeout_s=20)  # no PACS configured
    time.sleep(2.0)
    assert len(node.index.list_jobs()) == 1


@pytest.fixture
def pipeline_node(tmp_path: Path, bundle: Path) -> Iterator[tuple[NodeService, Orthanc]]:
    from appliance.pipeline import make_processor

    pacs = Orthanc(tmp_path / "pacs", {}).start()
    cfg = build_config(node_config(tmp_path / "spool", free_port(), series={"idle_timeout_s": IDLE_S},
                                   send={"destinations": [f"ORTHANC@127.0.0.1:{pacs.dicom_port}"]}), environ={})
    node = NodeService(cfg, make_processor(bundle))
    node.start()
    yield node, pacs
    node.stop()
    pacs.stop()


@pytest.mark.fault(27)
def test_a_larger_version_supersedes_the_first_and_its_report_names_the_first(
        pipeline_node: tuple[NodeService, Orthanc], series_dir: Path) -> None:
    node, pacs = pipeline_node
    files = sorted(series_dir.glob("*.dcm"))
    half = len(files) // 2
    storescu(node.port, files[half:])                  # one association, released: the upper half
    wait_for(lambda: [j["state"] for j in node.index.list_jobs()] in (["done"], ["failed"]), timeout_s=240,
             interval_s=0.2)
    (first,) = node.index.list_jobs()
    assert first["state"] == "done", first["reason"]
    (first_report,) = pacs_reports(pacs)
    storescu(node.port, files[:half])                  # the rest, later: a larger version
    wait_for(lambda: len(node.index.list_jobs()) == 2
             and node.index.list_jobs()[1]["state"] in ("done", "failed"), timeout_s=240, interval_s=0.2)
    old, new = node.index.list_jobs()
    assert new["state"] == "done", new["reason"]
    assert old["state"] == "superseded" and old["reason"] == f"superseded by job {new['id']}"
    assert new["supersedes"] == old["id"]
    reports = {str(r.SOPInstanceUID): r for r in pacs_reports(pacs)}
    sent = node.index.query("SELECT COUNT(*) FROM outbox WHERE state='sent'")[0][0]
    assert len(reports) == 2 and len(pacs.get("/instances")) == sent
    (newer,) = [r for uid, r in reports.items() if uid != str(first_report.SOPInstanceUID)]
    assert predecessor_uids(newer) == [str(first_report.SOPInstanceUID)]
    assert newer.SeriesInstanceUID != first_report.SeriesInstanceUID
    status, errors, unexpected = dciodvfy(node.spool.work_dir(new["id"]) / "sr.dcm")
    assert status == 0 and not errors and not unexpected, (errors, unexpected)
