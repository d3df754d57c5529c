"""Round trips with Orthanc as PACS and as the scanner; PACS down → outbox → delivered once."""

from __future__ import annotations

import pytest

import json
from pathlib import Path

from tests.dicom_node.conftest import Orthanc, free_port, storescu, wait_for
from tests.dicom_node.node_processor import ENCAPSULATED_STL

CT = "1.2.840.10008.5.1.4.1.1.2"


def job_states(node) -> list[str]:
    return [r["state"] for r in node.index.list_jobs()]


def test_results_arrive_in_orthanc_and_stl_folder(start_node, short_series: Path, tmp_path: Path) -> None:
    pacs = Orthanc(tmp_path / "pacs", {}).start()
    try:
        node = start_node(send={"destinations": [f"ORTHANC@127.0.0.1:{pacs.dicom_port}"],
                                "stl_export_dir": str(tmp_path / "stl")})
        storescu(node.port, short_series)
        wait_for(lambda: job_states(node) == ["done"], timeout_s=30)
        last = node.index.query("SELECT last_received, completed_at FROM series")[0]
        job = node.index.list_jobs()[0]
        sent = node.index.query("SELECT MAX(sent_at) FROM outbox")[0][0]
        print(f"\nlast instance → complete {1000 * (last[1] - last[0]):.0f} ms → job start "
              f"{1000 * (job['started_at'] - last[1]):.0f} ms → processed and sent "
              f"{1000 * (job['updated_at'] - job['started_at']):.0f} ms (test processor); last result "
              f"acknowledged by Orthanc {1000 * (sent - last[0]):.0f} ms after the last instance")
        classes = sorted(t["SOPClassUID"] for t in pacs.instance_tags())
        assert classes == sorted([CT, ENCAPSULATED_STL])
        stl = list((tmp_path / "stl").glob("*.stl"))
        assert len(stl) == 1 and stl[0].read_bytes().startswith(b"solid")
    finally:
        pacs.stop()


def test_orthanc_as_scanner_forwards_and_gets_results_back(start_node, short_series: Path,
                                                          tmp_path: Path) -> None:
    node_port = free_port()
    scanner = Orthanc(tmp_path / "scanner", {"node": ("WBSPINE", node_port)})
    scanner.start()
    try:
        for f in sorted(short_series.glob("*.dcm")):
            scanner.post("/instances", f.read_bytes(), "application/dicom")
        series_id = scanner.get("/series")[0]
        node = start_node(node={"port": node_port, "allowed_calling": ["ORTHANC@127.0.0.1"]},
                          send={"destinations": [f"sender:{scanner.dicom_port}"]})
        scanner.post("/modalities/node/store", json.dumps({"Resources": [series_id]}).encode())
        wait_for(lambda: job_states(node) == ["done"], timeout_s=30)
        assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 40
        assert node.index.query("SELECT calling_ae FROM series")[0][0] == "ORTHANC"
        classes = [t["SOPClassUID"] for t in scanner.instance_tags()]
        assert classes.count(ENCAPSULATED_STL) == 1 and len(classes) == 42  # 40 inputs + 2 results
    finally:
        scanner.stop()


@pytest.mark.fault(22)  # issue #9 catalogue (tests/faults/table.py)
def test_pacs_down_results_wait_in_outbox_then_delivered_once(start_node, short_series: Path,
                                                              tmp_path: Path) -> None:
    pacs = Orthanc(tmp_path / "pacs", {})
    node = start_node(send={"destinations": [f"ORTHANC@127.0.0.1:{pacs.dicom_port}"]})
    storescu(node.port, short_series)
    wait_for(lambda: (node.index.query("SELECT MAX(attempts) FROM outbox")[0][0] or 0) >= 2, timeout_s=30)
    assert job_states(node) == ["sending"]
    assert node.index.query("SELECT last_error FROM outbox")[0][0]
    pacs.start()
    try:
        wait_for(lambda: job_states(node) == ["done"], timeout_s=30)
        rows = node.index.query("SELECT state, sop_class FROM outbox ORDER BY id")
        assert [r["state"] for r in rows] == ["sent", "sent"]
        assert [r["sop_class"] for r in rows] == [CT, ENCAPSULATED_STL]  # order kept
        assert len(pacs.get("/instances")) == 2
        assert node.metrics.get("wbspine_send_failures_total",
                                destination=f"ORTHANC@127.0.0.1:{pacs.dicom_port}") >= 2
    finally:
        pacs.stop()
