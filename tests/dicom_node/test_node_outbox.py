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
    script: list = ["connection failed", [0x0000, 0x0210]]

    def fake_send(ae, host, port, infos):
        calls.append([i.path.name for i in infos])
        step = script.pop(0) if script else [0x0210]  # a failure status of no known meaning
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
    assert "refused 10 times" in rows[1]["last_error"] and "unreadable" in rows[2]["last_error"]
    state, reason = index.query("SELECT state, reason FROM jobs WHERE id=?", (job,))[0]
    assert state == "failed" and reason.startswith("not delivered")
    index.close()


def test_permanent_refusal_fails_that_object_at_once_and_the_next_goes(tmp_path: Path, short_series: Path) -> None:
    files = []
    for i, src in enumerate(sorted(short_series.glob("*.dcm"))[:3]):
        files.append(tmp_path / f"r{i}.dcm")
        shutil.copy(src, files[-1])
    index = Index(tmp_path / "index.sqlite")
    job = make_job(index, files)
    answers = {"r0.dcm": 0x0000, "r1.dcm": 0xA900, "r2.dcm": 0x0000}

    def fake_send(ae, host, port, infos):
        out = []
        for i in infos:
            out.append(answers[i.path.name])
            if out[-1] != 0:
                break
        return out

    sender = OutboxSender(index, Metrics(), "WBSPINE", backoff_initial_s=10, backoff_max_s=10, send=fake_send)
    assert sender.deliver_due() == 2          # one pass: r1 failed, r2 went right after it
    rows = index.query("SELECT state, attempts, last_error FROM outbox ORDER BY id")
    assert [(r["state"], r["attempts"]) for r in rows] == [("sent", 1), ("failed", 1), ("sent", 1)]
    assert "0xA900" in rows[1]["last_error"] and files[1].exists()
    state, reason = index.query("SELECT state, reason FROM jobs WHERE id=?", (job,))[0]
    assert state == "failed" and "0xA900" in reason
    index.close()


def test_association_rejected_for_our_called_ae_is_retried_at_the_cap_with_the_reason(tmp_path: Path) -> None:
    from pynetdicom import AE, AllStoragePresentationContexts

    from tests.dicom_node.conftest import free_port
    from tests.dicom_node.peers import make_jobs

    port = free_port()
    scp = AE(ae_title="PACS")
    scp.require_called_aet = True  # rejects "WRONG" permanently: called AE title not recognised
    scp.supported_contexts = AllStoragePresentationContexts
    server = scp.start_server(("127.0.0.1", port), block=False)
    index = Index(tmp_path / "index.sqlite")
    try:
        (job,) = make_jobs(index, tmp_path / "results", 1, ("WRONG", "127.0.0.1", port))
        sender = OutboxSender(index, Metrics(), "WBSPINE", backoff_initial_s=1, backoff_max_s=120, timeout_s=5)
        before = time.time()
        sender.deliver_due()
    finally:
        server.shutdown()
    row = index.query("SELECT state, attempts, last_error, next_attempt_at FROM outbox WHERE job_id=? ORDER BY id",
                      (job,))[0]
    assert (row["state"], row["attempts"]) == ("pending", 1)  # not the object's fault: kept
    assert row["last_error"] == "association rejected permanently: called AE title not recognised"
    assert row["next_attempt_at"] >= before + 120  # straight to the cap, not 1 s
    index.close()
