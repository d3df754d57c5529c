"""Wires the node: listener → spool/index → series completion → worker → outbox sender.

``NodeService(config, process).start()`` runs everything on background threads and arms the
series tracker's idle completion only once the listener accepts (:mod:`dicom_node.series`).

Clean shutdown (SIGTERM/SIGINT; ``stop.*`` in :class:`dicom_node.config.StopConfig`), all within
``stop.timeout_s`` (30 s, systemd ``TimeoutStopSec``) of the signal:

1. the worker claims no further job; the listener stops accepting;
2. open associations may store for ``stop.drain_s`` (10 s); then every C-STORE is refused
   (0xA700) and every association still open is A-ABORTed — their series are not delivered
   and complete only when the scanner sends them again (:mod:`dicom_node.series`);
3. the journal is applied and closed, the tracker, sender and metrics stop;
4. a job still running may finish until ``stop.job_grace_s`` (20 s) after the signal; if it
   has not, it is requeued (``queued``, "requeued at shutdown") and runs from scratch at the
   next start — the result it might still produce is dropped;
5. the index is closed, and the process exits 0.

Why step 4 does not interrupt inference: ONNX Runtime and OpenVINO offer no way to cancel a
running call, and a thread left inside one when the interpreter exits makes the C++ runtime's
static destructors abort the process (SIGABRT, 134: "terminate called without an active
exception"). So when the worker thread is still inside the processor after step 5,
:meth:`serve_forever` flushes the logs and leaves with ``os._exit(0)``: everything durable is
already committed (the job is ``queued``), and no destructor runs on the busy native thread.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from dicom_node.config import Config
from dicom_node.index import Index
from dicom_node.jobs import Processor, Worker, recover
from dicom_node.journal import Journal
from dicom_node.metrics import Metrics, MetricsServer
from dicom_node.outbox import OutboxSender
from dicom_node.scp import StorageSCP
from dicom_node.series import SeriesTracker
from dicom_node.spool import Spool

log = logging.getLogger(__name__)


class NodeService:
    """The running DICOM node."""

    def __init__(self, config: Config, process: Processor) -> None:
        self.config = config
        self.metrics = Metrics()
        sc = config.spool
        self.spool = Spool(sc.directory, fsync=sc.fsync, min_free_mb=sc.min_free_mb,
                           max_used_percent=sc.max_used_percent)
        self.index = Index(self.spool.index_path)
        self.sender = OutboxSender(
            self.index, self.metrics, config.send.calling_ae_title,
            backoff_initial_s=config.send.backoff_initial_s, backoff_max_s=config.send.backoff_max_s,
            timeout_s=config.send.connect_timeout_s, give_up_after_s=config.send.give_up_after_s)
        self.worker = Worker(self.index, self.spool, process, self.metrics, config.send.destinations,
                             config.send.stl_export_dir, on_results=self.sender.wake)
        self.journal: Journal | None = None
        self.tracker = SeriesTracker(self.index, config.series.idle_timeout_s, self._on_complete,
                                     config.series.poll_interval_s, before_check=self._flush_journal)
        self.scp = StorageSCP(config.node, self.spool, self.index, self.tracker, self.metrics)
        if sc.journal and sc.fsync:
            self.journal = Journal(self.spool.root / "journal", sc.journal_segment_mb * 2**20,
                                   self.scp.apply, reserve=self.spool.check_space)
        self.metrics.gauges["wbspine_queue_depth"] = self.worker.queue_depth
        self.metrics.gauges["wbspine_outbox_pending"] = self.sender.pending
        self.http: MetricsServer | None = None
        self.port: int | None = None
        self.completed_at: dict[str, float] = {}  # series_uid -> time.time() of completion
        self._stopped = threading.Event()

    def _on_complete(self, job_id: int) -> None:
        row = self.index.query("SELECT series_uid FROM jobs WHERE id=?", (job_id,))
        if row:
            self.completed_at[row[0][0]] = time.time()
        self.metrics.inc("wbspine_series_completed_total")
        self.worker.wake()

    def _flush_journal(self) -> None:
        if self.scp.journal is not None:
            self.scp.journal.flush()

    def health(self) -> dict:
        return {"ok": self.port is not None and not self._stopped.is_set(), "port": self.port,
                "queue_depth": self.worker.queue_depth(), "outbox_pending": self.sender.pending()}

    def start(self) -> int:
        """Recover after a crash, then start every thread; returns the DICOM port."""
        removed = self.spool.clean_tmp()
        replayed = 0
        if self.journal is not None:
            replayed = self.journal.replay()
            try:
                self.journal.start()
                self.scp.journal = self.journal
            except Exception as exc:  # e.g. no room for a segment: every write goes direct
                log.warning("journal off: cannot make a segment", extra={"reason": str(exc)[:200]})
        requeued = recover(self.index)
        log.info("starting", extra={"partial_files_removed": removed, "journal_replayed": replayed,
                                    "jobs_requeued": requeued,
                                    "outbox_pending": self.sender.pending()})
        self.worker.start()
        self.sender.start()
        self.tracker.start()
        self.port = self.scp.start()
        self.tracker.arm()  # idle clocks run from now: a crash or a long stop delivers nothing
        mc = self.config.metrics
        if mc.enabled and mc.port is not None:
            self.http = MetricsServer(self.metrics, self.health, mc.bind_address, mc.port)
            self.http.start()
        return self.port

    def stop(self) -> bool:
        """Stop as the module docstring says; True when no thread is left inside the
        processor (False: the job was requeued and its thread still runs native code)."""
        if self._stopped.is_set():
            return not self.worker.busy()
        started = time.monotonic()
        sc = self.config.stop
        self._stopped.set()
        self.worker.request_stop()
        self.scp.stop(sc.drain_s)
        if self.scp.journal is not None:
            self.scp.journal.close()
        self.tracker.stop()
        self.sender.stop()
        if self.http is not None:
            self.http.stop()
        finished = self.worker.join(sc.job_grace_s - (time.monotonic() - started))
        requeued = None if finished else self.worker.abandon()
        self.index.close()
        log.info("stopped", extra={"seconds": round(time.monotonic() - started, 3), "job_requeued": requeued})
        return finished

    def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then stop gracefully (exit 0 even with a job requeued)."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        done.wait()
        if not self.stop():
            logging.shutdown()  # flush every handler: os._exit skips atexit
            os._exit(0)  # a worker thread is inside native inference: see the module docstring


def spool_index(spool_dir: Path) -> Index:
    """Open the index of an existing spool (for ``status`` and ``retry``)."""
    path = Path(spool_dir) / "index.sqlite"
    if not path.exists():
        from dicom_node.errors import ConfigError

        raise ConfigError(f"no index at {path}: is the spool folder right?")
    return Index(path)
