"""When a series is complete: a rule that a crash, restart, refusal or shutdown cannot fake.

A series is **delivered** when an association that sent it (new instances or identical
resends) ended by a clean A-RELEASE (PS3.8 7.2) after its last instance: no C-STORE of that
association was refused, and no instance of the series arrived after the release. The
release time is kept in the index (``releases``), so it survives a restart. An association
that ends by A-ABORT, by a dropped connection, by a crash of the node or by its shutdown
(which aborts what is still open) delivers nothing: its series waits — for ever, if need be
(``wbspine status`` lists it) — until the scanner delivers it again.

A delivered series completes (a job is queued)

- at once at the release, when it is also consistent with what the data announce:
  ImagesInAcquisition when present, else one orientation, contiguous Instance Numbers and
  slice positions on a regular grid (:func:`is_consistent`, :mod:`dicom_node.geometry`,
  the reader's rule; multi-frame objects are refused at intake);
- otherwise ``idle_timeout_s`` after the later of its release and the moment the listener
  accepted again after a start (:meth:`SeriesTracker.arm`), with no association delivering
  it. Its job then says what is wrong with it (e.g. missing slices).

Every new instance (and every identical resend) re-opens the series and restarts this
clock: a late resend is never completed half-way, and a series processed before gets a new
job whose results supersede the old ones (:func:`dicom_node.jobs.supersede`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dicom_node.geometry import slice_grid
from dicom_node.index import Index

log = logging.getLogger(__name__)



def is_consistent(rows: Sequence[Any]) -> bool:
    """True when the stored instances of a series form the volume the data announce."""
    n = len(rows)
    if n < 2:  # one image is no volume (multi-frame objects are refused at intake)
        return False
    announced = {r["images_in_acquisition"] for r in rows if r["images_in_acquisition"]}
    if announced:
        return len(announced) == 1 and n == announced.pop()
    numbers = [r["instance_number"] for r in rows]
    if all(v is not None for v in numbers):
        if len(set(numbers)) != n or max(numbers) - min(numbers) != n - 1:
            return False
    if len({r["orientation"] for r in rows}) != 1 or any(r["position_mm"] is None for r in rows):
        return False
    return slice_grid(sorted(r["position_mm"] for r in rows)).regular


def delivered(row: Any) -> bool:
    """True when the series row's last instance came before a clean release (see above)."""
    released = row["released_at"]
    return released is not None and released >= row["last_received"]


class SeriesTracker:
    """Decides when series are complete; ``on_complete(job_id)`` is called for each new job."""

    def __init__(self, index: Index, idle_timeout_s: float, on_complete: Callable[[int], None],
                 poll_interval_s: float = 0.2, before_check: Callable[[], None] = lambda: None) -> None:
        self.index = index
        #: Called before a series is checked (the node applies its journal: rows up to date).
        self.before_check = before_check
        self.idle_timeout_s = idle_timeout_s
        self.poll_interval_s = poll_interval_s
        self.on_complete = on_complete
        self._lock = threading.Lock()
        self._active: dict[str, set[str]] = {}  # series_uid -> associations still delivering it
        #: time.time() when the listener accepted after start; None: idle completion disarmed.
        self.armed_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, at: float | None = None) -> None:
        """The listener accepts: idle clocks run from now (not from before a crash or stop)."""
        self.armed_at = time.time() if at is None else at

    def note_instance(self, series_uid: str, assoc_key: str) -> None:
        with self._lock:
            self._active.setdefault(series_uid, set()).add(assoc_key)

    def association_ended(self, assoc_key: str, released: bool) -> None:
        """``released``: a clean A-RELEASE (no refused C-STORE) → the series it sent are
        delivered, and those consistent and sent by no other open association complete now.
        Anything else (abort, closed connection, a refusal) delivers nothing."""
        at = time.time()
        with self._lock:
            sent, done = [], []
            for series_uid, assocs in list(self._active.items()):
                if assoc_key in assocs:
                    sent.append(series_uid)
                    assocs.discard(assoc_key)
                    if not assocs:
                        del self._active[series_uid]
                        done.append(series_uid)
        if not sent:
            return
        if not released:
            log.info("association ended without a clean release: its series are not delivered",
                     extra={"series": len(sent)})
            return
        self.index.record_release(sent, at)
        for series_uid in done:
            self._try_complete(series_uid, by="release")

    def _try_complete(self, series_uid: str, by: str) -> None:
        self.before_check()
        row = self.index.get_series(series_uid)
        if row is None or row["state"] != "receiving" or not delivered(row):
            return
        rows = self.index.series_instances(series_uid)
        consistent = is_consistent(rows)
        if by == "release" and not consistent:
            log.info("series not yet consistent at release; waiting for idle timeout",
                     extra={"series": series_uid, "instances": len(rows)})
            return
        job_id = self.index.complete_series(series_uid, row["last_received"])
        if job_id is not None:
            log.info("series complete", extra={"series": series_uid, "instances": len(rows),
                                               "consistent": consistent, "job": job_id, "by": by})
            self.on_complete(job_id)

    def tick(self, now: float | None = None) -> None:
        """Complete delivered series idle for ``idle_timeout_s`` (from their release, or from
        :meth:`arm` if later) with no association delivering them; nothing before :meth:`arm`."""
        if self.armed_at is None:
            return
        now = time.time() if now is None else now
        with self._lock:
            active = set(self._active)
        for row in self.index.receiving_series():
            if row["series_uid"] in active or not delivered(row):
                continue
            if now - max(row["released_at"], self.armed_at) >= self.idle_timeout_s:
                self._try_complete(row["series_uid"], by="idle")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="series-tracker", daemon=True)
        self._thread.start()
    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.tick()
            except Exception:  # keep the tracker alive; the next tick retries
                log.exception("series tracker tick failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
