"""Series completion rules, job failure and retry, metrics endpoints, status CLI."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.dicom_node.conftest import storescu, wait_for
from dicom_node.cli import main
from dicom_node.series import is_consistent


def rows(positions, numbers=None, images=None, frames=None, orientation="1,0,0,0,1,0"):
    numbers = numbers or list(range(1, len(positions) + 1))
    return [{"position_mm": p, "instance_number": n, "images_in_acquisition": images,
             "number_of_frames": frames, "orientation": orientation} for p, n in zip(positions, numbers, strict=True)]


def test_consistency_rules() -> None:
    assert is_consistent(rows([0.0, 2.5, 5.0, 7.5]))
    assert is_consistent(rows([7.5, 0.0, 5.0, 2.5], numbers=[4, 1, 3, 2]))
    assert not is_consistent(rows([0.0, 2.5, 7.5]))                      # missing slice
    assert not is_consistent(rows([0.0, 2.5, 5.0], numbers=[1, 2, 4]))   # missing number
    assert not is_consistent(rows([0.0, 2.5, 5.0], images=4))            # announced 4
    assert is_consistent(rows([0.0, 2.5, 9.0], images=3))                # announcement wins
    assert not is_consistent(rows([0.0]))
    assert not is_consistent(rows([0.0], frames=300))                    # multi-frame: refused at intake
    assert not is_consistent(rows([0.0, 0.0], numbers=[1, 2]))


def test_gap_waits_for_idle_timeout_and_late_instance_reopens(start_node, short_series: Path) -> None:
    node = start_node(series={"idle_timeout_s": 1.5})
    files = sorted(short_series.glob("*.dcm"))
    storescu(node.port, files[:20] + files[21:])
    time.sleep(0.5)
    assert node.index.list_jobs() == []  # inconsistent at release: no job yet
    released = time.time()
    wait_for(lambda: len(node.index.list_jobs()) == 1, timeout_s=10)
    assert time.time() - released >= 0.9
    storescu(node.port, files[20:21])  # the late slice re-opens the series → a second job
    wait_for(lambda: len(node.index.list_jobs()) == 2, timeout_s=5)
    assert node.index.query("SELECT state FROM series")[0][0] == "complete"


def test_failed_job_keeps_inputs_reason_and_retry(start_node, short_series: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.setattr("dicom_node.logs.setup_logging", lambda *a: None)  # keep pytest's log capture
    control = tmp_path / "control"
    control.mkdir()
    (control / "fail").write_text("vertebrae not found")
    node = start_node(control=control)
    storescu(node.port, short_series)
    wait_for(lambda: [r["state"] for r in node.index.list_jobs()] == ["failed"], timeout_s=10)
    job = node.index.list_jobs()[0]
    assert job["reason"] == "RuntimeError: vertebrae not found"
    assert len(list(Path(node.index.get_series(job["series_uid"])["directory"]).glob("*.dcm"))) == 40
    assert main(["status", "--spool", str(node.spool.root)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "vertebrae not found" in out and "instances=40" in out
    (control / "fail").unlink()
    assert main(["retry", str(job["id"]), "--spool", str(node.spool.root)]) == 0
    node.worker.wake()
    wait_for(lambda: [r["state"] for r in node.index.list_jobs()] == ["done"], timeout_s=10)
    assert main(["retry", "999", "--spool", str(node.spool.root)]) == 2


def test_metrics_and_healthz(start_node, short_series: Path) -> None:
    node = start_node(metrics={"port": 0})
    storescu(node.port, short_series)
    wait_for(lambda: node.metrics.get("wbspine_series_completed_total") == 1, timeout_s=10)
    base = f"http://127.0.0.1:{node.http.port}"
    text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert "wbspine_instances_received_total 40" in text
    assert "wbspine_series_completed_total 1" in text
    assert "# TYPE wbspine_queue_depth gauge" in text
    health = json.loads(urllib.request.urlopen(base + "/healthz", timeout=5).read())
    assert health["ok"] is True and health["port"] == node.port
