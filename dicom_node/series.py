"""Series completion without a fixed wait.

A series is complete as soon as every association that delivered it has been released
(A-RELEASE, PS3.8 7.2) *and* it is consistent with what the data announce:
ImagesInAcquisition when present, else one orientation, contiguous Instance Numbers and
slice positions on a regular grid (:mod:`dicom_node.geometry`, the reader's rule;
multi-frame objects are refused at intake).
Otherwise it completes after ``idle_timeout_s`` without new instances. An instance
arriving later re-opens the series and a new job is queued when it completes again.
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note_instance(self, series_uid: str, assoc_key: str) -> None:
        with self._lock:
            self._active.setdefault(series_uid, set()).add(assoc_key)

    def association_ended(self, assoc_key: str, released: bool) -> None:
        """Release → complete consistent series now; abort → leave them to the idle timer."""
        with self._lock:
            done = []
            for series_uid, assocs in list(self._active.items()):
                if assoc_key in assocs:
                    assocs.discard(assoc_key)
                    if not assocs:
                        del self._active[series_uid]
                        done.append(series_uid)
        if released:
            for series_uid in done:
                self._try_complete(series_uid, require_consistent=True)

    def _try_complete(self, series_uid: str, require_consistent: bool) -> None:
        self.before_check()
        row = self.index.get_series(series_uid)
        if row is None or row["state"] != "receiving":
            return
        rows = self.index.series_instances(series_uid)
        consistent = is_consistent(rows)
        if require_consistent and not consistent:
            log.info("series not yet consistent at release; waiting for idle timeout",
                     extra={"series": series_uid, "instances": len(rows)})
            return
        job_id = self.index.complete_series(series_uid, row["last_received"])
        if job_id is not None:
            log.info("series complete", extra={"series": series_uid, "instances": len(rows),
                                               "consistent": consistent, "job": job_id,
                                               "by": "release" if require_consistent else "idle"})
            self.on_complete(job_id)

    def tick(self, now: float | None = None) -> None:
        """Complete series idle for ``idle_timeout_s`` with no association delivering them."""
        now = time.time() if now is None else now
        with self._lock:
            active = set(self._active)
        for row in self.index.receiving_series():
            if row["series_uid"] not in active and now - row["last_received"] >= self.idle_timeout_s:
                self._try_complete(row["series_uid"], require_consistent=False)

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
