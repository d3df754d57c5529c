"""Durable outbox: result files waiting for C-STORE to each destination.

Rows live in the SQLite index, so nothing is dropped while a PACS is down or the node
restarts. Rows go out in id order per **(job, destination)** — the order the processor
returned them, SEG and SR before the STL — and each (job, destination) backs off on its
own, so one study's stuck result never holds back another study's results (no
head-of-line blocking across jobs). A row is marked sent only after the destination
answered a storing status; a crash between the two resends that one instance — the same
SOP Instance UID, harmless at PACS.

What a failure means is :func:`dicom_node.failures.classify`'s business: a **permanent**
one (no presentation context for the SOP class, 0xCxxx, 0xA9xx, 0x0122 …) fails that row
at once (state ``failed``, reason kept, file kept) and the job's next row goes straight
on; a **transient** one (down, full, rejected, timed out) retries with backoff
``initial · 2^(n-1)`` capped at ``backoff_max_s``, until ``give_up_after_s`` after the
row was queued, when it is failed with the last error. At most one failed connection
per destination per pass: the other jobs for a destination that is down wait for the next.

Jobs follow delivery (:func:`settle_jobs`): with nothing pending a job is ``done``, or
``failed`` while one of its rows is failed; rows skipped by the operator count as settled
(``done``, with "N result(s) skipped by operator" as its reason).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dicom_node.config import Destination
from dicom_node.failures import MAX_REFUSALS, Verdict, classify
from dicom_node.index import Index
from dicom_node.metrics import Metrics
from dicom_node.scu import STORED, FileInfo, read_file_info, send_files

log = logging.getLogger(__name__)

__all__ = ["MAX_REFUSALS", "OutboxSender", "enqueue", "resolve", "settle_jobs"]

SendFn = Callable[[str, str, int, list[FileInfo]], list]
BATCH = 64
#: ``send.give_up_after_s`` when the sender is built without a config (7 days).
DEFAULT_GIVE_UP_AFTER_S = 7 * 86400.0


def enqueue(db: sqlite3.Connection, job_id: int, files: Sequence[FileInfo],
            destinations: Sequence[tuple[str, str, int]]) -> int:
    """Insert one row per (destination, file) inside the caller's transaction (files in order)."""
    now = time.time()
    n = 0
    for ae, host, port in destinations:
        label = f"{ae}@{host}:{port}"
        for f in files:
            db.execute(
                "INSERT INTO outbox (job_id, destination, ae_title, host, port, path, sop_class, sop_uid,"
                " state, next_attempt_at, enqueued_at) VALUES (?,?,?,?,?,?,?,?,'pending',?,?)",
                (job_id, label, ae, host, port, str(f.path), f.sop_class, f.sop_uid, now, now))
            n += 1
    return n


def settle_jobs(db: sqlite3.Connection, job_id: int | None = None) -> int:
    """Jobs in ``sending`` with nothing pending: ``failed`` while a row is failed, else ``done``
    (reason: the skipped count, if any). Runs in the caller's transaction; returns jobs settled."""
    now = time.time()
    only = "" if job_id is None else " AND id=?"
    cur = db.execute(
        "UPDATE jobs SET finished_at=?, updated_at=?, state=CASE WHEN EXISTS (SELECT 1 FROM outbox o"
        " WHERE o.job_id=jobs.id AND o.state='failed') THEN 'failed' ELSE 'done' END,"
        " reason=COALESCE((SELECT 'not delivered: ' || o.last_error FROM outbox o WHERE o.job_id=jobs.id"
        " AND o.state='failed' ORDER BY o.id LIMIT 1), (SELECT COUNT(*) || ' result(s) skipped by operator'"
        " FROM outbox o WHERE o.job_id=jobs.id AND o.state='skipped' HAVING COUNT(*) > 0))"
        " WHERE state='sending' AND NOT EXISTS"
        " (SELECT 1 FROM outbox o WHERE o.job_id=jobs.id AND o.state='pending')" + only,
        (now, now) + (() if job_id is None else (job_id,)))
    return cur.rowcount


def human_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``7 d`` (for reasons and ``wbspine status``)."""
    s = abs(seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 36 * 3600:
        return f"{s / 3600:.1f} h".replace(".0 h", " h")
    return f"{s / 86400:.1f} d".replace(".0 d", " d")


def resolve(destinations: Sequence[Destination], calling_ae: str | None,
            peer_host: str | None) -> list[tuple[str, str, int]]:
    """Concrete (AE, host, port) targets; 'sender' becomes the AE that sent the series."""
    out = []
    for d in destinations:
        if d.ae_title is None:
            if calling_ae and peer_host:
                out.append((calling_ae, peer_host, d.port))
        else:
            out.append((d.ae_title, str(d.host), d.port))
    return out


class OutboxSender:
    """Background sender draining the outbox."""

    def __init__(self, index: Index, metrics: Metrics, calling_ae: str, *, backoff_initial_s: float,
                 backoff_max_s: float, timeout_s: float = 10.0, send: SendFn | None = None,
                 poll_interval_s: float = 0.5, give_up_after_s: float = DEFAULT_GIVE_UP_AFTER_S) -> None:
        self.index, self.metrics, self.calling_ae = index, metrics, calling_ae
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.give_up_after_s = give_up_after_s
        self.timeout_s, self.poll_interval_s = timeout_s, poll_interval_s
        self._send = send or self._default_send
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _default_send(self, ae: str, host: str, port: int, files: list[FileInfo]) -> list:
        return send_files(ae, host, port, files, self.calling_ae, self.timeout_s)

    def pending(self) -> int:
        return int(self.index.query("SELECT COUNT(*) FROM outbox WHERE state='pending'")[0][0])

    def wake(self) -> None:
        self._wake.set()

    def deliver_due(self, now: float | None = None) -> int:
        """One pass over the (job, destination) queues whose head row is due; returns rows sent."""
        now = time.time() if now is None else now
        heads = self.index.query(
            "SELECT o.job_id, o.destination FROM outbox o WHERE o.state='pending' AND o.next_attempt_at<=?"
            " AND o.id=(SELECT MIN(p.id) FROM outbox p WHERE p.state='pending' AND p.job_id=o.job_id"
            " AND p.destination=o.destination) ORDER BY o.id", (now,))
        down: set[str] = set()  # destinations whose connection failed in this pass
        sent = changed = 0
        for head in heads:
            if head["destination"] not in down:
                n, c = self._deliver_queue(head["job_id"], head["destination"], now, down)
                sent, changed = sent + n, changed + c
        if changed:
            with self.index.tx() as db:
                settle_jobs(db)
        return sent

    def _deliver_queue(self, job_id: int, destination: str, now: float, down: set[str]) -> tuple[int, int]:
        """Send one job's pending rows to one destination, in order, until one must wait.

        Returns (rows sent, rows whose state changed)."""
        sent = changed = 0
        while True:
            rows = self.index.query(
                "SELECT * FROM outbox WHERE state='pending' AND job_id=? AND destination=? ORDER BY id LIMIT ?",
                (job_id, destination, BATCH))
            if not rows or rows[0]["next_attempt_at"] > now:
                return sent, changed
            files = []
            for row in rows:
                try:
                    files.append(read_file_info(Path(row["path"])))
                except Exception as exc:  # a result file that cannot be read will never be sendable
                    if not files:
                        self._give_up(row, classify(f"unreadable result file: {type(exc).__name__}"),
                                      row["attempts"])
                        changed += 1
                    break
            if not files:
                continue
            first = rows[0]
            try:
                results = list(self._send(first["ae_title"], first["host"], first["port"], files))
            except Exception as exc:  # connection refused, timeouts, ...
                results = [f"{type(exc).__name__}: {exc}"]
            failure = None
            for row, result in zip(rows, results or ["no response"], strict=False):  # stop at a failure
                if isinstance(result, int) and result in STORED:
                    with self.index.tx() as db:
                        db.execute("UPDATE outbox SET state='sent', sent_at=?, attempts=attempts+1 WHERE id=?",
                                   (time.time(), row["id"]))
                    sent += 1
                    changed += 1
                    self.metrics.inc("wbspine_results_sent_total")
                    continue
                failure = (row, result)
                break
            if failure is None:
                if len(results) < len(files):  # the sender stopped without saying why
                    failure = (rows[len(results)], "no response")
                else:
                    continue  # all of this batch stored: the next batch, if any
            row, result = failure
            if self._failed(row, result, now):
                changed += 1
                continue  # that row is settled: the job's next row goes now
            if not isinstance(result, int):
                down.add(destination)
            return sent, changed

    def _failed(self, row: sqlite3.Row, result: object, now: float) -> bool:
        """Record a failed attempt; True when the row is given up (the job's next row may go)."""
        verdict = classify(result)  # type: ignore[arg-type]
        attempts = row["attempts"] + 1
        self.metrics.inc("wbspine_send_failures_total", destination=row["destination"])
        if verdict.kind == "permanent" or (verdict.kind == "refusal" and attempts >= MAX_REFUSALS):
            reason = verdict.reason if verdict.kind == "permanent" else \
                f"refused {attempts} times ({verdict.reason})"
            self._give_up(row, Verdict("permanent", reason), attempts)
            return True
        deadline = (row["enqueued_at"] or now) + self.give_up_after_s
        if now >= deadline:
            self._give_up(row, Verdict("permanent", f"gave up after {human_duration(self.give_up_after_s)}"
                                                    f" of retries: {verdict.reason}"), attempts)
            return True
        delay = self.backoff_max_s if verdict.at_cap else \
            min(self.backoff_initial_s * 2 ** (attempts - 1), self.backoff_max_s)
        t = time.time()
        next_at = min(t + delay, deadline)
        with self.index.tx() as db:
            db.execute("UPDATE outbox SET attempts=?, next_attempt_at=?, last_error=? WHERE id=?"
                       " AND state='pending'", (attempts, next_at, verdict.reason, row["id"]))
        extra = {"destination": row["destination"], "job": row["job_id"], "sop_class": row["sop_class"],
                 "error": verdict.reason, "attempt": attempts, "retry_in_s": round(next_at - t, 1),
                 "give_up_in_s": round(deadline - now)}
        if isinstance(result, int):
            extra["status"] = f"0x{result:04X}"
        if verdict.at_cap:  # the PACS refuses *us*: a configuration problem, say so loudly
            log.error("destination rejects the association; check AE titles at both ends", extra=extra)
        else:
            log.warning("send failed; will retry", extra=extra)
        return False

    def _give_up(self, row: sqlite3.Row, verdict: Verdict, attempts: int | None = None) -> None:
        with self.index.tx() as db:
            db.execute("UPDATE outbox SET state='failed', last_error=?, attempts=? WHERE id=? AND state='pending'",
                       (verdict.reason, row["attempts"] + 1 if attempts is None else attempts, row["id"]))
        self.metrics.inc("wbspine_results_failed_total", destination=row["destination"])
        log.error("result not deliverable; kept on disk", extra={
            "destination": row["destination"], "job": row["job_id"], "sop_class": row["sop_class"],
            "reason": verdict.reason})

    def _finish_jobs(self) -> None:
        with self.index.tx() as db:
            settle_jobs(db)

    def start(self) -> None:
        self._finish_jobs()
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("outbox pass failed")
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
