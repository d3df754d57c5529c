"""Durable outbox: result files waiting for C-STORE to each destination.

Rows live in the SQLite index, so nothing is dropped while a PACS is down or the node
restarts. Per destination, rows go out strictly in id order: a failing head row blocks
the rows behind it and is retried with exponential backoff (``initial · 2^(n-1)``, capped).
A row is marked sent only after the destination answered a storing status; a crash
between the two resends that one instance — the same SOP Instance UID, harmless at PACS.
Connection failures and "Refused: Out of Resources" (0xA7xx, PS3.4 B.2.3: a full PACS is
transient) are retried forever (a PACS down or full for hours loses nothing); a result
file that cannot be read, or one the PACS refused with another failure status
``MAX_REFUSALS`` times, is marked ``failed`` (file kept, job failed with the reason) so it
cannot block the results behind it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dicom_node.config import Destination
from dicom_node.index import Index
from dicom_node.metrics import Metrics
from dicom_node.scu import STORED, FileInfo, read_file_info, send_files

log = logging.getLogger(__name__)

SendFn = Callable[[str, str, int, list[FileInfo]], list]
BATCH = 64
#: A destination answering a failure status this many times for one object: give up on it.
MAX_REFUSALS = 10


def is_transient(status: int) -> bool:
    """Refused: Out of Resources (0xA700-0xA7FF): the PACS may take it later."""
    return 0xA700 <= status <= 0xA7FF


def enqueue(db: sqlite3.Connection, job_id: int, files: Sequence[FileInfo],
            destinations: Sequence[tuple[str, str, int]]) -> int:
    """Insert one row per (destination, file) inside the caller's transaction."""
    now = time.time()
    n = 0
    for ae, host, port in destinations:
        label = f"{ae}@{host}:{port}"
        for f in files:
            db.execute(
                "INSERT INTO outbox (job_id, destination, ae_title, host, port, path, sop_class, sop_uid,"
                " state, next_attempt_at) VALUES (?,?,?,?,?,?,?,?,'pending',?)",
                (job_id, label, ae, host, port, str(f.path), f.sop_class, f.sop_uid, now))
            n += 1
    return n


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
                 poll_interval_s: float = 0.5) -> None:
        self.index, self.metrics, self.calling_ae = index, metrics, calling_ae
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
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
        """One pass over destinations whose head row is due; returns rows sent."""
        now = time.time() if now is None else now
        heads = self.index.query(
            "SELECT destination, MIN(id) AS head FROM outbox WHERE state='pending' GROUP BY destination")
        sent = 0
        for head in heads:
            rows = self.index.query(
                "SELECT * FROM outbox WHERE state='pending' AND destination=? ORDER BY id LIMIT ?",
                (head["destination"], BATCH))
            if not rows or rows[0]["next_attempt_at"] > now:
                continue
            sent += self._deliver(rows)
        if sent:
            self._finish_jobs()
        return sent

    def _deliver(self, rows: list[sqlite3.Row]) -> int:
        first = rows[0]
        files = []
        for row in rows:
            try:
                files.append(read_file_info(Path(row["path"])))
            except Exception as exc:  # a result file that cannot be read will never be sendable
                if not files:
                    self._give_up(row, f"unreadable result file: {type(exc).__name__}")
                    return 0
                break
        try:
            results = self._send(first["ae_title"], first["host"], first["port"], files)
        except Exception as exc:  # connection refused, timeouts, ...
            results = [f"{type(exc).__name__}: {exc}"]
        sent = 0
        for row, result in zip(rows, results, strict=False):  # results stop at the first failure
            if isinstance(result, int) and result in STORED:
                with self.index.tx() as db:
                    db.execute("UPDATE outbox SET state='sent', sent_at=?, attempts=attempts+1 WHERE id=?",
                               (time.time(), row["id"]))
                sent += 1
                self.metrics.inc("wbspine_results_sent_total")
                continue
            self._failed(row, result)
            break
        return sent

    def _failed(self, row: sqlite3.Row, result: object) -> None:
        """Retry with backoff; a PACS that keeps *refusing* one object (a DIMSE failure status,
        not a connection problem) gives up after ``MAX_REFUSALS`` so later results can go."""
        error = f"status 0x{result:04X}" if isinstance(result, int) else str(result)
        attempts = row["attempts"] + 1
        self.metrics.inc("wbspine_send_failures_total", destination=row["destination"])
        if isinstance(result, int) and not is_transient(result) and attempts >= MAX_REFUSALS:
            self._give_up(row, f"refused {attempts} times ({error})")
            return
        delay = min(self.backoff_initial_s * 2 ** (attempts - 1), self.backoff_max_s)
        with self.index.tx() as db:
            db.execute("UPDATE outbox SET attempts=?, next_attempt_at=?, last_error=? WHERE id=?",
                       (attempts, time.time() + delay, error, row["id"]))
        log.warning("send failed; will retry", extra={"destination": row["destination"], "error": error,
                                                      "attempt": attempts, "retry_in_s": round(delay, 1)})

    def _give_up(self, row: sqlite3.Row, reason: str) -> None:
        with self.index.tx() as db:
            db.execute("UPDATE outbox SET state='failed', last_error=? WHERE id=?", (reason, row["id"]))
        log.error("result not deliverable; kept on disk", extra={"destination": row["destination"],
                                                                  "job": row["job_id"], "reason": reason})
        self._finish_jobs()

    def _finish_jobs(self) -> None:
        """Jobs with nothing pending: done, or failed if some result could not be delivered."""
        now = time.time()
        with self.index.tx() as db:
            db.execute(
                "UPDATE jobs SET finished_at=?, updated_at=?, state=CASE WHEN EXISTS (SELECT 1 FROM outbox o"
                " WHERE o.job_id=jobs.id AND o.state='failed') THEN 'failed' ELSE 'done' END,"
                " reason=(SELECT 'not delivered: ' || o.last_error FROM outbox o WHERE o.job_id=jobs.id"
                " AND o.state='failed' LIMIT 1) WHERE state='sending' AND NOT EXISTS"
                " (SELECT 1 FROM outbox o WHERE o.job_id=jobs.id AND o.state='pending')", (now, now))

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
