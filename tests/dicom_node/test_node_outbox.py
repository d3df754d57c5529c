"""Outbox ordering, backoff and giving up, with a scripted sender (no network)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from dicom_node.index import Index
from dicom_node.metrics import Metrics
from dicom_node.outbox import MAX_REFUSALS, OutboxSender, enqueue
from dicom_node.scu import read_file_info


def make_job(index: Index, files: list[Path]) -> int:
    with index.tx() as db:
        job = db.execute("INSERT INTO jobs (series_uid, state, created_at, updated_at) "
                         "VALUES ('1.2', 'sending', 0, 0)").lastrowid
        enqueue(db, job, [read_file_info(f) for f in files], [("PACS", "127.0.0.1", 104)])
    return job


def test_order_backoff_unreadable_and_refused(tmp_path: Path, short_series: Path) -> None:
    files = []
    for i, src in enumerate(sorted(short_series.glob("*.dcm"))[:3]):
        files.append(tmp_path / f"r{i}.dcm")
        shutil.copy(src, files[-1])
    index = Index(tmp_path / "index.sqlite")
    job = make_job(index, files)
    calls: list[list[str]] = []
    script: list = ["connection failed", [0x0000, 0xC000]]

    def fake_send(ae, host, port, infos):
        calls.append([i.path.name for i in infos])
        step = script.pop(0) if script else [0xC000]  # a permanent refusal
        return [step] if isinstance(step, str) else step

    sender = OutboxSender(index, Metrics(), "WBSPINE", backoff_initial_s=0.01, backoff_max_s=0.02, send=fake_send)
    sender.deliver_due()                      # PACS down: nothing sent, head row backs off
    assert calls == [["r0.dcm", "r1.dcm", "r2.dcm"]]
    time.sleep(0.03)
    sender.deliver_due()                      # r0 stored, r1 refused → r2 must wait behind it
    assert [r["state"] for r in index.query("SELECT state FROM outbox ORDER BY id")] == ["sent", "pending", "pending"]
    files[2].unlink()                         # r2 becomes unreadable while r1 is refused again and again
    for _ in range(MAX_REFUSALS + 2):
        time.sleep(0.03)
        sender.deliver_due()
    rows = index.query("SELECT state, last_error FROM outbox ORDER BY id")
    assert [r["state"] for r in rows] == ["sent", "failed", "failed"]
    assert "refused" in rows[1]["last_error"] and "unreadable" in rows[2]["last_error"]
    state, reason = index.query("SELECT state, reason FROM jobs WHERE id=?", (job,))[0]
    assert state == "failed" and reason.startswith("not delivered")
    index.close()
