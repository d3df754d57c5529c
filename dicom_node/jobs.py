"""Durable job queue in the index and the worker that runs the injected processor.

States: ``queued → running → sending → done`` or ``failed`` (reason recorded, inputs kept).
After a crash, ``running`` jobs go back to ``queued`` and run again from scratch in an
emptied work folder; ``sending`` jobs are finished by the outbox.

The processor contract: ``process(series_dir, work_dir) -> list[Path]`` reads the series'
DICOM files in ``series_dir`` (never modifies them), writes results under ``work_dir`` and
returns the result DICOM files to send. Any exception fails the job with its message.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dicom_node.config import Destination
from dicom_node.errors import WbspineError
from dicom_node.index import Index
from dicom_node.metrics import Metrics
from dicom_node.outbox import enqueue, resolve
from dicom_node.scu import FileInfo, read_file_info
from dicom_node.spool import Spool, fsync_dir, name_hash

log = logging.getLogger(__name__)

Processor = Callable[[Path, Path], list[Path]]
ENCAPSULATED_STL = "1.2.840.10008.5.1.4.1.1.104.3"


class JobError(WbspineError):
    """A job cannot be found or retried."""


def recover(index: Index) -> int:
    """Requeue jobs interrupted while running; returns how many."""
    with index.tx() as db:
        cur = db.execute("UPDATE jobs SET state='queued', updated_at=?, reason='requeued after restart'"
                         " WHERE state='running'", (time.time(),))
        return cur.rowcount


def retry(index: Index, job_id: int) -> None:
    """Queue a job again (any state but running); pending results of it are dropped first."""
    with index.tx() as db:
        row = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no job {job_id}")
        if row["state"] == "running":
            raise JobError(f"job {job_id} is running")
        db.execute("DELETE FROM outbox WHERE job_id=? AND state='pending'", (job_id,))
        db.execute("UPDATE jobs SET state='queued', reason=NULL, updated_at=? WHERE id=?",
                   (time.time(), job_id))


class Worker:
    """Runs queued jobs one at a time on a background thread."""

    def __init__(self, index: Index, spool: Spool, process: Processor, metrics: Metrics,
                 destinations: Sequence[Destination], stl_export_dir: Path | None = None,
                 on_results: Callable[[], None] = lambda: None) -> None:
        self.index, self.spool, self.process, self.metrics = index, spool, process, metrics
        self.destinations = tuple(destinations)
        self.stl_export_dir = stl_export_dir
        self.on_results = on_results
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
            return int(row["id"]), str(row["series_uid"])

    def run_one(self) -> bool:
        """Run the oldest queued job; False when the queue is empty."""
        claimed = self._claim()
        if claimed is None:
            return False
        job_id, series_uid = claimed
        series = self.index.get_series(series_uid)
        work = self.spool.work_dir(job_id)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.monotonic()
        try:
            paths = self.process(Path(series["directory"]), work)
            files = self._durable(paths)
        except Exception as exc:
            self._fail(job_id, f"{type(exc).__name__}: {exc}")
            return True
        finally:
            self.metrics.observe("wbspine_job_duration_seconds", time.monotonic() - started)
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
        return True

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

    def stop(self) -> None:
        """Stop after the current job (the queue is kept in the index)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
