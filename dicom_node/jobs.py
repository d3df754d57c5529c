"""Durable job queue in the index and the worker that runs the injected processor.

States: ``queued → running → sending → done`` or ``failed`` (reason recorded, inputs kept),
and ``superseded`` (a later job of the same series replaced it). After a crash, ``running``
jobs go back to ``queued`` and run again from scratch in an emptied work folder;
``sending`` jobs are finished by the outbox.

The processor contract: ``process(series_dir, work_dir) -> list[Path]`` reads the series'
DICOM files in ``series_dir`` (never modifies them), writes results under ``work_dir`` and
returns the result DICOM files to send. Any exception fails the job with its message.
A processor that takes a keyword ``previous`` gets the results of the version it
supersedes as plain :class:`PriorResult` tuples (see :func:`supersede`).

Supersede rule (a series that grew or changed after it was processed): every version
gets new result objects (new SOP Instance UIDs, a new result SeriesInstanceUID). When the
worker starts job N of a series, every earlier finished job of that series (``sending``,
``done``, ``failed``) becomes ``superseded`` (reason "superseded by job N"), its results
not yet sent are skipped with that reason — so the PACS never receives a stale set after
the new one — and ``jobs.supersedes`` of N names the latest of them. The processor is
given the result objects of the latest earlier job that queued any to a destination (without
destinations nothing reached a PACS, so nothing needs a link); the appliance's SR
references the earlier SR in its Predecessor Documents Sequence (0040,A360), PS3.3
C.17.2.3. Two result sets of one series at the PACS are thus always linked.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from dicom_node.config import Destination
from dicom_node.errors import WbspineError
from dicom_node.index import Index
from dicom_node.metrics import Metrics
from dicom_node.outbox import enqueue, resolve, settle_jobs
from dicom_node.scu import FileInfo, read_file_info
from dicom_node.spool import Spool, fsync_dir, name_hash

log = logging.getLogger(__name__)

Processor = Callable[[Path, Path], list[Path]]
ENCAPSULATED_STL = "1.2.840.10008.5.1.4.1.1.104.3"


#: The reason a job abandoned by :meth:`Worker.abandon` carries while it waits for the next start.
REQUEUED_AT_SHUTDOWN = "requeued at shutdown"


class JobError(WbspineError):
    """A job cannot be found or retried."""


class PriorResult(NamedTuple):
    """One result object of the version a job supersedes (plain UIDs: the processor need
    not import the node)."""

    study_uid: str
    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str


def supersede(db, job_id: int, series_uid: str) -> int | None:
    """Mark the series' earlier finished jobs ``superseded`` by ``job_id`` and skip their
    unsent results, in the caller's transaction; returns the latest of them (or None)."""
    reason = f"superseded by job {job_id}"
    earlier = [int(r["id"]) for r in db.execute(
        "SELECT id FROM jobs WHERE series_uid=? AND id<? AND state IN ('sending','done','failed') ORDER BY id",
        (series_uid, job_id))]
    if not earlier:
        return db.execute("SELECT supersedes FROM jobs WHERE id=?", (job_id,)).fetchone()["supersedes"]
    marks = ",".join("?" * len(earlier))
    db.execute(f"UPDATE outbox SET state='skipped', last_error=? WHERE state='pending' AND job_id IN ({marks})",
               (reason, *earlier))
    now = time.time()
    db.execute(f"UPDATE jobs SET state='superseded', reason=?, updated_at=?, finished_at=COALESCE(finished_at, ?)"
               f" WHERE id IN ({marks})", (reason, now, now, *earlier))
    db.execute("UPDATE jobs SET supersedes=? WHERE id=?", (earlier[-1], job_id))
    log.info("earlier results superseded", extra={"job": job_id, "superseded": earlier})
    return earlier[-1]


def prior_results(index: Index, job_id: int, series_uid: str) -> list[PriorResult]:
    """The result objects of the latest earlier job of the series that has any (from its
    outbox rows; Study/Series Instance UID read from each kept file)."""
    from pydicom import dcmread

    row = index.query("SELECT MAX(job_id) FROM outbox WHERE job_id IN (SELECT id FROM jobs WHERE series_uid=?"
                      " AND id<?)", (series_uid, job_id))[0]
    if row[0] is None:
        return []
    out = []
    for r in index.query("SELECT path, sop_class, sop_uid FROM outbox WHERE job_id=? GROUP BY sop_uid"
                         " ORDER BY MIN(id)", (row[0],)):
        try:
            ds = dcmread(r["path"], stop_before_pixels=True,
                         specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
            out.append(PriorResult(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), r["sop_class"],
                                   r["sop_uid"]))
        except Exception as exc:  # a file gone cannot be referenced; the rest still is
            log.warning("earlier result not readable; not referenced",
                        extra={"job": job_id, "earlier_job": row[0], "reason": f"{type(exc).__name__}"})
    return out


def accepts_previous(process: Callable) -> bool:
    """True when the processor takes the ``previous`` keyword (or any keyword)."""
    try:
        params = inspect.signature(process).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "previous" or p.kind is p.VAR_KEYWORD for p in params)


def recover(index: Index) -> int:
    """Requeue jobs interrupted while running; returns how many."""
    with index.tx() as db:
        cur = db.execute("UPDATE jobs SET state='queued', updated_at=?, reason='requeued after restart'"
                         " WHERE state='running'", (time.time(),))
        return cur.rowcount


def retry(index: Index, job_id: int) -> None:
    """Queue a job again to be *reprocessed* (any state but running): its results not yet
    delivered (pending, failed, skipped) are dropped first — the rerun replaces their files."""
    with index.tx() as db:
        row = db.execute("SELECT state, reason FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no job {job_id}")
        if row["state"] == "running":
            raise JobError(f"job {job_id} is running")
        if row["state"] == "superseded":
            raise JobError(f"job {job_id} is {row['reason'] or 'superseded'}: retry that one")
        db.execute("DELETE FROM outbox WHERE job_id=? AND state != 'sent'", (job_id,))
        db.execute("UPDATE jobs SET state='queued', reason=NULL, updated_at=? WHERE id=?",
                   (time.time(), job_id))


#: The outbox states ``resend`` puts back to pending, by default and with ``--all``.
RESEND_DEFAULT = ("failed", "pending")
RESEND_ALL = ("failed", "pending", "sent", "skipped")
#: The reason a skipped row keeps (its last error, if any, follows in brackets).
SKIPPED_REASON = "skipped by operator"


def _outbox_rows_of(db, job_id: int, destination: str | None, states: Sequence[str]) -> tuple[str, tuple]:
    row = db.execute("SELECT state, reason FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        raise JobError(f"no job {job_id}")
    if row["state"] in ("queued", "running"):
        raise JobError(f"job {job_id} is {row['state']}: its results are not made yet")
    if not db.execute("SELECT 1 FROM outbox WHERE job_id=?", (job_id,)).fetchone():
        raise JobError(f"job {job_id} has no results in the outbox (use retry to process it again)")
    where = f"job_id=? AND state IN ({','.join('?' * len(states))})"
    params: tuple = (job_id, *states)
    if destination is not None:
        if not db.execute("SELECT 1 FROM outbox WHERE job_id=? AND destination=?",
                          (job_id, destination)).fetchone():
            raise JobError(f"job {job_id} has no results for destination {destination!r}")
        where += " AND destination=?"
        params += (destination,)
    return where, params


def resend(index: Index, job_id: int, destination: str | None = None, everything: bool = False) -> int:
    """Put a job's failed and pending results (``everything``: all of them) back to pending
    for immediate delivery — the same files, no reprocessing; the give-up deadline restarts.
    The job reads ``sending`` until the outbox settles it. Returns the rows queued."""
    with index.tx() as db:
        row = db.execute("SELECT state, reason FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is not None and row["state"] == "superseded":
            raise JobError(f"job {job_id} is {row['reason'] or 'superseded'}: its results are stale")
        where, params = _outbox_rows_of(db, job_id, destination, RESEND_ALL if everything else RESEND_DEFAULT)
        now = time.time()
        n = db.execute(f"UPDATE outbox SET state='pending', attempts=0, next_attempt_at=?, enqueued_at=?,"
                       f" sent_at=NULL WHERE {where}", (now, now, *params)).rowcount
        if n:
            db.execute("UPDATE jobs SET state='sending', reason=NULL, finished_at=NULL, updated_at=? WHERE id=?",
                       (now, job_id))
    log.info("results resent by operator", extra={"job": job_id, "destination": destination, "rows": n})
    return n


def skip(index: Index, job_id: int, destination: str | None = None, failed_too: bool = False) -> int:
    """Mark a job's pending results (``failed_too``: and failed ones) ``skipped`` so they never
    go; the job settles (``done`` with the skipped count as reason). Returns the rows skipped."""
    with index.tx() as db:
        where, params = _outbox_rows_of(db, job_id, destination,
                                        ("pending", "failed") if failed_too else ("pending",))
        n = db.execute(f"UPDATE outbox SET state='skipped', last_error=? || COALESCE(' (' || last_error || ')',"
                       f" '') WHERE {where}", (SKIPPED_REASON, *params)).rowcount
        if n:
            db.execute("UPDATE jobs SET state='sending', updated_at=? WHERE id=? AND state IN ('failed','done')",
                       (time.time(), job_id))
            settle_jobs(db, job_id)
    log.info("results skipped by operator", extra={"job": job_id, "destination": destination, "rows": n})
    return n


class Worker:
    """Runs queued jobs one at a time on a background thread."""

    def __init__(self, index: Index, spool: Spool, process: Processor, metrics: Metrics,
                 destinations: Sequence[Destination], stl_export_dir: Path | None = None,
                 on_results: Callable[[], None] = lambda: None) -> None:
        self.index, self.spool, self.process, self.metrics = index, spool, process, metrics
        self.destinations = tuple(destinations)
        self.stl_export_dir = stl_export_dir
        self.on_results = on_results
        self._pass_previous = accepts_previous(process)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Held while a job's outcome is written, and by :meth:`abandon`: exactly one of them
        #: decides what becomes of the running job.
        self._outcome = threading.Lock()
        self._current: int | None = None  # the job being processed now
        self._abandoned = False  # set by abandon(): the running job's outcome is not written

    def wake(self, _job_id: int | None = None) -> None:
        self._wake.set()

    def queue_depth(self) -> int:
        return int(self.index.query("SELECT COUNT(*) FROM jobs WHERE state IN ('queued','running')")[0][0])

    def _claim(self) -> tuple[int, str] | None:
        now = time.time()
        with self.index.tx() as db:
            row = db.execute("SELECT id, series_uid FROM jobs WHERE state='queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state='running', started_at=?, updated_at=?, attempts=attempts+1,"
                       " reason=NULL WHERE id=?", (now, now, row["id"]))
            supersede(db, int(row["id"]), str(row["series_uid"]))
            return int(row["id"]), str(row["series_uid"])

    def run_one(self) -> bool:
        """Run the oldest queued job; False when the queue is empty."""
        claimed = self._claim()
        if claimed is None:
            return False
        job_id, series_uid = claimed
        self._current = job_id
        try:
            self._run_job(job_id, series_uid)
        finally:
            self._current = None
        return True

    def _run_job(self, job_id: int, series_uid: str) -> None:
        series = self.index.get_series(series_uid)
        work = self.spool.work_dir(job_id)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.monotonic()
        try:
            if self._pass_previous:
                previous = prior_results(self.index, job_id, series_uid)
                paths = self.process(Path(series["directory"]), work, previous=previous)
            else:
                paths = self.process(Path(series["directory"]), work)
            files = self._durable(paths)
        except Exception as exc:
            with self._outcome:
                if not self._abandoned:
                    self._fail(job_id, f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.metrics.observe("wbspine_job_duration_seconds", time.monotonic() - started)
        with self._outcome:
            if self._abandoned:  # requeued at shutdown: these results are not the job's
                return
            self._export_stl(job_id, files)
            targets = resolve(self.destinations, series["calling_ae"], series["peer_host"])
            with self.index.tx() as db:
                n = enqueue(db, job_id, files, targets)
                state = "sending" if n else "done"
                db.execute("UPDATE jobs SET state=?, updated_at=?, finished_at=? WHERE id=?",
                           (state, time.time(), None if n else time.time(), job_id))
        self.metrics.inc("wbspine_jobs_finished_total", outcome="processed")
        log.info("job processed", extra={"job": job_id, "results": len(files), "outbox_rows": n,
                                         "seconds": round(time.monotonic() - started, 3)})
        self.on_results()

    def _durable(self, paths: Sequence[Path]) -> list[FileInfo]:
        files = []
        for p in paths:
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
            files.append(read_file_info(Path(p)))
        for parent in {Path(p).parent for p in paths}:
            fsync_dir(parent)
        return files

    def _export_stl(self, job_id: int, files: list[FileInfo]) -> None:
        """Copy Encapsulated STL objects' meshes to the 3D-printing folder (if configured)."""
        if self.stl_export_dir is None:
            return
        from pydicom import dcmread

        self.stl_export_dir.mkdir(parents=True, exist_ok=True)
        for f in files:
            if f.sop_class == ENCAPSULATED_STL:
                ds = dcmread(f.path)
                dest = self.stl_export_dir / f"job{job_id}-{name_hash(f.sop_uid, 16)}.stl"
                tmp = dest.with_suffix(".part")
                tmp.write_bytes(bytes(ds.EncapsulatedDocument))
                os.replace(tmp, dest)

    def _fail(self, job_id: int, reason: str) -> None:
        with self.index.tx() as db:
            db.execute("UPDATE jobs SET state='failed', reason=?, updated_at=?, finished_at=? WHERE id=?",
                       (reason[:2000], time.time(), time.time(), job_id))
        self.metrics.inc("wbspine_jobs_finished_total", outcome="failed")
        log.error("job failed; inputs kept", extra={"job": job_id, "reason": reason[:300]})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="job-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self.run_one():
                    pass
            except Exception:
                log.exception("worker loop error")
            self._wake.wait(1.0)
            self._wake.clear()

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request_stop(self) -> None:
        """Claim no further job (the queue is kept in the index); the running one goes on."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the worker thread to end; True when it did."""
        if self._thread is not None:
            self._thread.join(timeout=max(timeout_s, 0.0))
        return not self.busy()

    def abandon(self) -> int | None:
        """Give up the running job at shutdown: back to ``queued`` (reason "requeued at
        shutdown"), to run from scratch at the next start; whatever the processor still
        returns is dropped. Returns the job requeued, None if none was running."""
        with self._outcome:
            job_id = self._current
            if job_id is None:
                return None
            self._abandoned = True
            with self.index.tx() as db:
                db.execute("UPDATE jobs SET state='queued', reason=?, updated_at=? WHERE id=? AND state='running'",
                           (REQUEUED_AT_SHUTDOWN, time.time(), job_id))
        log.warning("job requeued at shutdown", extra={"job": job_id})
        return job_id

    def stop(self) -> None:
        """Stop after the current job (the queue is kept in the index)."""
        self.request_stop()
        self.join(2.0)
