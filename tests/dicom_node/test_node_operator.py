"""What an operator sees and does: ``wbspine status`` shows the outbox, ``serve`` logs the
structured fields, an old spool's index opens (schema migration)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from appliance.cli import main as wbspine
from dicom_node.index import Index
from dicom_node.metrics import Metrics
from dicom_node.outbox import OutboxSender
from tests.dicom_node.conftest import REPO, free_port, wait_for
from tests.dicom_node.peers import PATIENT, make_jobs


def test_status_shows_each_waiting_result_with_last_error_and_next_attempt(tmp_path: Path, capsys) -> None:
    (tmp_path / "spool").mkdir()
    index = Index(tmp_path / "spool" / "index.sqlite")
    (job,) = make_jobs(index, tmp_path / "results", 1, ("PACS", "127.0.0.1", free_port()))  # nobody listens
    OutboxSender(index, Metrics(), "WBSPINE", backoff_initial_s=600, backoff_max_s=600).deliver_due()
    assert wbspine(["status", "--spool", str(tmp_path / "spool")]) == 0
    out = capsys.readouterr().out
    lines = out.split("OUTBOX\n")[1].splitlines()
    assert len(lines) == 3 and all(f"#{job}" in line and "PACS@127.0.0.1" in line for line in lines)
    head = lines[0]
    assert "Segmentation Storage" in head and "attempts=1" in head and "next=in 10 min" in head
    assert "last error: connection failed" in head
    assert "Encapsulated STL Storage" in lines[2] and "next=now" in lines[2]
    from dicom_node.cli import outbox_lines

    grouped = outbox_lines(index.list_outbox(), time.time(), detail_max=1)
    assert len(grouped) == 1 and "pending=3" in grouped[0] and "next=now" in grouped[0]
    assert "last error: connection failed" in grouped[0]
    index.close()


def test_serve_logs_json_lines_with_the_structured_fields_and_no_patient_data(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    index = Index(spool / "index.sqlite")
    make_jobs(index, tmp_path / "results", 1, ("PACS", "127.0.0.1", free_port()))  # a result waiting, PACS down
    index.close()
    (tmp_path / "node.toml").write_text(
        f'[node]\nae_title = "WBSPINE"\nport = {free_port()}\nbind_address = "127.0.0.1"\n'
        f'[spool]\ndirectory = "{spool}"\nmin_free_mb = 0\nmax_used_percent = 100\n'
        '[send]\nbackoff_initial_s = 0.1\nbackoff_max_s = 0.2\n[metrics]\nenabled = false\n')
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(tmp_path / "node.toml"),
                             "--processor", "tests.dicom_node.node_processor:make_processor"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        def retry_lines():
            lines = [json.loads(x) for x in (tmp_path / "serve.log").read_text().splitlines() if x.startswith("{")]
            return [x for x in lines if x["msg"] == "send failed; will retry"]
        wait_for(lambda: retry_lines() or proc.poll() is not None, timeout_s=60)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
        line = retry_lines()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert line["destination"].startswith("PACS@127.0.0.1:") and line["error"] == "connection failed"
    assert line["attempt"] == 1 and line["retry_in_s"] > 0 and line["sop_class"] and line["level"] == "WARNING"
    text = (tmp_path / "serve.log").read_text()
    assert PATIENT not in text and PATIENT.split("^")[0] not in text


#: The index layout before schema versions (what a spool written by the first release holds).
OLD_OUTBOX = """CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, destination TEXT NOT NULL,
    ae_title TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, path TEXT NOT NULL,
    sop_class TEXT, sop_uid TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL, last_error TEXT, sent_at REAL);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, series_uid TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL, finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0);
INSERT INTO jobs VALUES (1, '1.2', 'sending', NULL, 0, 0, NULL, NULL, 1);
INSERT INTO outbox (job_id, destination, ae_title, host, port, path, sop_class, sop_uid, state, attempts,
    next_attempt_at, last_error) VALUES (1, 'PACS@127.0.0.1:9', 'PACS', '127.0.0.1', 9, '/nowhere.dcm',
    '1.2.840.10008.5.1.4.1.1.66.4', '1.2.3', 'pending', 4, 0, 'connection failed');
"""


def test_an_old_spool_index_opens_and_its_outbox_can_be_skipped(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "index.sqlite")
    db.executescript(OLD_OUTBOX)
    db.close()
    before = time.time()
    index = Index(tmp_path / "index.sqlite")
    from dicom_node.index import SCHEMA_VERSION

    assert index.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    row = index.query("SELECT * FROM outbox")[0]
    assert row["enqueued_at"] >= before and row["attempts"] == 4 and row["state"] == "pending"
    index.close()
    index = Index(tmp_path / "index.sqlite")  # opening again changes nothing
    assert index.query("SELECT enqueued_at FROM outbox")[0][0] == row["enqueued_at"]
    from dicom_node.jobs import skip

    assert skip(index, 1) == 1
    assert [tuple(r) for r in index.query("SELECT state, reason FROM jobs")] == [
        ("done", "1 result(s) skipped by operator")]
    index.close()
