"""Embedded SQLite index (WAL, ``synchronous=FULL``) of studies, series, instances, jobs, outbox.

One connection shared by all threads behind a lock; every write is one ``BEGIN IMMEDIATE``
transaction, so a row is durable when :meth:`Index.tx` returns. No patient identifiers are
stored: only UIDs, SOP classes, geometry needed for series completion and file locations.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicom_node.errors import WbspineError

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, first_received REAL NOT NULL, last_received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, directory TEXT NOT NULL,
    calling_ae TEXT, peer_host TEXT, state TEXT NOT NULL, assoc_key TEXT,
    last_received REAL NOT NULL, completed_at REAL, generation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, sop_class TEXT NOT NULL,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, received_at REAL NOT NULL,
    transfer_syntax TEXT, instance_number INTEGER, position_mm REAL, orientation TEXT,
    images_in_acquisition INTEGER, number_of_frames INTEGER);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, sop_uid TEXT NOT NULL, path TEXT NOT NULL, reason TEXT NOT NULL,
    received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, series_uid TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL, finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0, supersedes INTEGER);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_series ON jobs(series_uid, id);
CREATE TABLE IF NOT EXISTS releases (
    series_uid TEXT PRIMARY KEY, released_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, destination TEXT NOT NULL,
    ae_title TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, path TEXT NOT NULL,
    sop_class TEXT, sop_uid TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL, last_error TEXT, sent_at REAL, enqueued_at REAL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, destination, id);
CREATE INDEX IF NOT EXISTS outbox_job ON outbox(job_id, destination, id);
"""

#: ``PRAGMA user_version`` of an index this code writes. 0: the first layout (no version);
#: 1: ``outbox.enqueued_at`` (the start of the give-up deadline) and the ``skipped`` state;
#: 2: ``releases`` (when an association that delivered a series last ended by a clean
#: A-RELEASE: :mod:`dicom_node.series`), ``jobs.supersedes`` and the ``superseded`` state.
SCHEMA_VERSION = 2

#: ``superseded``: a later job of the same series (a larger or different version) replaced
#: this one; its unsent results were skipped (:func:`dicom_node.jobs.supersede`).
JOB_STATES = ("received", "queued", "running", "sending", "done", "failed", "superseded")
#: ``pending`` → ``sent`` | ``failed`` (reason in last_error, file kept) | ``skipped`` (by the operator).
OUTBOX_STATES = ("pending", "sent", "failed", "skipped")


class IndexVersionError(WbspineError):
    """The index was written by a newer wbspine than this one."""


@dataclass(frozen=True)
class InstanceRecord:
    """What the index keeps about one stored instance."""

    sop_uid: str
    sop_class: str
    series_uid: str
    study_uid: str
    path: str
    sha256: str
    size: int
    transfer_syntax: str
    instance_number: int | None = None
    position_mm: float | None = None
    orientation: str | None = None
    images_in_acquisition: int | None = None
    number_of_frames: int | None = None


class Index:
    """Thread-safe access to the node's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        # A second connection for the C-STORE path's lookups: a WAL reader never waits for
        # the journal applier's commit (its fsync) on the shared connection's lock.
        self._read_lock = threading.Lock()
        self._read = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                     timeout=30.0)
        self._read.row_factory = sqlite3.Row

    def _migrate(self) -> None:
        """Create the tables, or bring an older spool's index to :data:`SCHEMA_VERSION`."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise IndexVersionError(f"{self.path} has schema version {version}; this wbspine knows "
                                    f"up to {SCHEMA_VERSION}")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            old_outbox = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
            if old_outbox and "enqueued_at" not in old_outbox:  # version 0 → 1
                self._db.execute("ALTER TABLE outbox ADD COLUMN enqueued_at REAL")
                # The enqueue time was not kept: the deadline starts at the upgrade (generous).
                self._db.execute("UPDATE outbox SET enqueued_at=? WHERE enqueued_at IS NULL", (time.time(),))
            old_jobs = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if old_jobs and "supersedes" not in old_jobs:  # version 1 → 2 (``releases`` is new)
                # No release is known for a series still receiving across the upgrade: it
                # completes when the scanner delivers it again (a crash cannot fake it).
                self._db.execute("ALTER TABLE jobs ADD COLUMN supersedes INTEGER")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._read.close()
            self._db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One durable write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- instances ------------------------------------------------------------------
    def find_instance(self, sop_uid: str) -> sqlite3.Row | None:
        """The stored instance with this SOP Instance UID (committed rows only)."""
        with self._read_lock:
            return self._read.execute("SELECT sha256, path, series_uid FROM instances WHERE sop_uid=?",
                                      (sop_uid,)).fetchone()

    def add_instance(self, rec: InstanceRecord, directory: str, assoc_key: str,
                     calling_ae: str, peer_host: str) -> None:
        """Record a durable instance and (re)open its series for completion."""
        with self.tx() as db:
            _insert_instance(db, rec, directory, assoc_key, calling_ae, peer_host, time.time())

    def add_received(self, instances: list[tuple[InstanceRecord, str, str, str, str, float]],
                     quarantined: list[tuple[str, str, str, float]]) -> None:
        """Record a batch of durable instances ``(record, directory, assoc_key, calling_ae,
        peer_host, received_at)`` and quarantined files ``(sop_uid, path, reason,
        received_at)`` in one transaction (the journal's applier)."""
        with self.tx() as db:
            for rec, directory, assoc_key, calling_ae, peer_host, at in instances:
                _insert_instance(db, rec, directory, assoc_key, calling_ae, peer_host, at)
            for sop_uid, path, reason, at in quarantined:
                db.execute("INSERT INTO quarantine (sop_uid, path, reason, received_at) VALUES (?,?,?,?)",
                           (sop_uid, path, reason, at))

    def touch_series(self, series_uid: str, assoc_key: str) -> None:
        """An identical resend: keep the series open so it is re-checked at release."""
        with self.tx() as db:
            db.execute("UPDATE series SET assoc_key=?, last_received=? WHERE series_uid=?"
                       " AND state='receiving'", (assoc_key, time.time(), series_uid))

    def add_quarantine(self, sop_uid: str, path: str, reason: str) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO quarantine (sop_uid, path, reason, received_at) VALUES (?,?,?,?)",
                       (sop_uid, path, reason, time.time()))

    # -- series ---------------------------------------------------------------------
    def series_instances(self, series_uid: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM instances WHERE series_uid=?", (series_uid,))

    def receiving_series(self) -> list[sqlite3.Row]:
        """Series still receiving, each with ``released_at`` (None: never cleanly released)."""
        return self.query("SELECT s.*, r.released_at FROM series s LEFT JOIN releases r"
                          " ON r.series_uid=s.series_uid WHERE s.state='receiving'")

    def get_series(self, series_uid: str) -> sqlite3.Row | None:
        """The series row with ``released_at`` (see :meth:`receiving_series`)."""
        rows = self.query("SELECT s.*, r.released_at FROM series s LEFT JOIN releases r"
                          " ON r.series_uid=s.series_uid WHERE s.series_uid=?", (series_uid,))
        return rows[0] if rows else None

    def record_release(self, series_uids: Iterable[str], at: float) -> None:
        """An association that delivered these series ended by a clean A-RELEASE at ``at``.

        Kept apart from ``series``: with the journal, the series row may not exist yet."""
        with self.tx() as db:
            db.executemany("INSERT INTO releases (series_uid, released_at) VALUES (?, ?) ON CONFLICT"
                           "(series_uid) DO UPDATE SET released_at=MAX(released_at, excluded.released_at)",
                           [(uid, at) for uid in series_uids])

    def complete_series(self, series_uid: str, last_received: float) -> int | None:
        """Mark a series complete and queue a job, unless newer data arrived meanwhile.

        Returns the job id, or None when the series changed or a queued job already covers it.
        """
        now = time.time()
        with self.tx() as db:
            cur = db.execute(
                "UPDATE series SET state='complete', completed_at=?, generation=generation+1 "
                "WHERE series_uid=? AND state='receiving' AND last_received<=?",
                (now, series_uid, last_received))
            if cur.rowcount == 0:
                return None
            if db.execute("SELECT 1 FROM jobs WHERE series_uid=? AND state='queued'",
                          (series_uid,)).fetchone():
                return None
            cur = db.execute("INSERT INTO jobs (series_uid, state, created_at, updated_at) "
                             "VALUES (?, 'queued', ?, ?)", (series_uid, now, now))
            return int(cur.lastrowid or 0)

    # -- listings for ``wbspine status`` ---------------------------------------------
    def list_studies(self) -> list[sqlite3.Row]:
        return self.query(
            "SELECT s.study_uid, COUNT(DISTINCT r.series_uid) AS n_series, COUNT(i.sop_uid) AS n_instances,"
            " s.last_received FROM studies s LEFT JOIN series r ON r.study_uid=s.study_uid"
            " LEFT JOIN instances i ON i.series_uid=r.series_uid GROUP BY s.study_uid"
            " ORDER BY s.last_received DESC")

    def list_jobs(self) -> list[sqlite3.Row]:
        return self.query(
            "SELECT j.*, (SELECT COUNT(*) FROM outbox o WHERE o.job_id=j.id AND o.state='pending')"
            " AS pending, (SELECT COUNT(*) FROM outbox o WHERE o.job_id=j.id AND o.state='sent')"
            " AS sent, (SELECT COUNT(*) FROM outbox o WHERE o.job_id=j.id AND o.state='failed')"
            " AS failed, (SELECT COUNT(*) FROM outbox o WHERE o.job_id=j.id AND o.state='skipped')"
            " AS skipped FROM jobs j ORDER BY j.id")

    def list_outbox(self, include_sent: bool = False) -> list[sqlite3.Row]:
        """Outbox objects (not yet sent, unless ``include_sent``) in job, destination, id order."""
        where = "" if include_sent else " WHERE state != 'sent'"
        return self.query(f"SELECT * FROM outbox{where} ORDER BY job_id, destination, id")


def _insert_instance(db: sqlite3.Connection, rec: InstanceRecord, directory: str, assoc_key: str,
                     calling_ae: str, peer_host: str, now: float) -> None:
    db.execute(
        "INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (rec.sop_uid, rec.series_uid, rec.sop_class, rec.path, rec.sha256, rec.size, now,
         rec.transfer_syntax, rec.instance_number, rec.position_mm, rec.orientation,
         rec.images_in_acquisition, rec.number_of_frames))
    db.execute(
        "INSERT INTO studies VALUES (?,?,?) ON CONFLICT(study_uid) DO UPDATE "
        "SET last_received=MAX(last_received, excluded.last_received)", (rec.study_uid, now, now))
    db.execute(
        "INSERT INTO series (series_uid, study_uid, directory, calling_ae, peer_host, state,"
        " assoc_key, last_received) VALUES (?,?,?,?,?,'receiving',?,?) "
        "ON CONFLICT(series_uid) DO UPDATE SET state='receiving', assoc_key=excluded.assoc_key,"
        " calling_ae=excluded.calling_ae, peer_host=excluded.peer_host,"
        " last_received=MAX(last_received, excluded.last_received)",
        (rec.series_uid, rec.study_uid, directory, calling_ae, peer_host, assoc_key, now))
