"""The completion rule of dicom_node/series.py on a real index, with planted clocks: only a
clean release delivers a series, idle completion runs from the later of release and the
listener's start, and every new instance re-arms it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.index import Index, InstanceRecord
from dicom_node.series import SeriesTracker

SERIES = "1.2.826.0.1.3680043.10.1.7"
CT = "1.2.840.10008.5.1.4.1.1.2"
IDLE_S = 30.0
T0 = 1_000_000.0  # the scanner's first instance (seconds of a planted clock)


@pytest.fixture
def index(tmp_path: Path) -> Index:
    idx = Index(tmp_path / "index.sqlite")
    yield idx
    idx.close()


def tracker(index: Index) -> tuple[SeriesTracker, list[int]]:
    jobs: list[int] = []
    return SeriesTracker(index, IDLE_S, jobs.append), jobs


def receive(index: Index, t: SeriesTracker, assoc: str, numbers: range, at: float) -> None:
    """Instances ``numbers`` (2.5 mm apart) stored by association ``assoc`` at time ``at``."""
    rows = [(InstanceRecord(f"1.2.3.{n}", CT, SERIES, "1.2.3", f"/spool/{n}.dcm", f"{n:064x}", 1, "1.2.840.10008.1.2.1",
                            n, 2.5 * n, "1,0,0,0,1,0"), "/spool", assoc, "SCANNER", "127.0.0.1", at)
            for n in numbers]
    index.add_received(rows, [])
    for _ in numbers:
        t.note_instance(SERIES, assoc)


def state(index: Index) -> str:
    return index.get_series(SERIES)["state"]


def test_a_restart_long_after_a_release_does_not_complete_before_the_listener_is_up(index: Index,
                                                                                    monkeypatch) -> None:
    t, jobs = tracker(index)
    receive(index, t, "a", range(1, 21), T0)
    receive(index, t, "a", range(22, 41), T0 + 1)  # slice 21 missing: only the idle settle completes it
    monkeypatch.setattr("dicom_node.series.time.time", lambda: T0 + 2)
    t.association_ended("a", released=True)
    assert jobs == [] and state(index) == "receiving"
    # The node went down; it starts again an hour later: a new tracker, not yet armed.
    t, jobs = tracker(index)
    t.tick(now=T0 + 3600)
    assert jobs == []                                          # the listener is not up yet
    t.arm(at=T0 + 3600)
    t.tick(now=T0 + 3600 + IDLE_S - 0.5)
    assert jobs == [] and state(index) == "receiving"          # idle clock runs from the listener's start
    t.tick(now=T0 + 3600 + IDLE_S)
    assert len(jobs) == 1 and state(index) == "complete"


def test_an_association_that_did_not_release_delivers_nothing(index: Index, monkeypatch) -> None:
    t, jobs = tracker(index)
    t.arm(at=T0)
    receive(index, t, "a", range(1, 167), T0)                  # a consistent prefix: 166 of 332
    t.association_ended("a", released=False)                   # abort, crash of the peer, node shutdown
    t.tick(now=T0 + 10 * IDLE_S)
    assert jobs == [] and state(index) == "receiving"
    assert index.get_series(SERIES)["released_at"] is None
    receive(index, t, "b", range(167, 333), T0 + 40)           # the rest, 40 s later, then a release
    monkeypatch.setattr("dicom_node.series.time.time", lambda: T0 + 41)
    t.association_ended("b", released=True)
    assert len(jobs) == 1                                      # consistent at release: at once
    assert len(index.series_instances(SERIES)) == 332


def test_a_resend_re_arms_the_idle_clock(index: Index, monkeypatch) -> None:
    t, jobs = tracker(index)
    t.arm(at=T0)
    receive(index, t, "a", range(1, 11), T0)
    receive(index, t, "a", range(12, 21), T0)                  # a gap: waits for the idle settle
    monkeypatch.setattr("dicom_node.series.time.time", lambda: T0 + 1)
    t.association_ended("a", released=True)
    receive(index, t, "b", range(11, 12), T0 + IDLE_S - 1)     # a late instance before the settle
    t.tick(now=T0 + IDLE_S + 5)
    assert jobs == []                                          # not delivered: b is still open
    t.association_ended("b", released=False)                   # ... and b never released
    t.tick(now=T0 + 10 * IDLE_S)
    assert jobs == [] and state(index) == "receiving"
    receive(index, t, "c", range(21, 23), T0 + 10 * IDLE_S)    # resend with two more, released:
    monkeypatch.setattr("dicom_node.series.time.time", lambda: T0 + 10 * IDLE_S + 1)
    t.association_ended("c", released=True)
    assert len(jobs) == 1                                      # 1..22 consistent at release


def test_the_release_time_survives_a_restart_and_counts_only_for_earlier_instances(index: Index) -> None:
    t, _ = tracker(index)
    receive(index, t, "a", range(1, 5), T0)
    index.record_release([SERIES], T0 + 1)
    assert index.get_series(SERIES)["released_at"] == T0 + 1
    index.record_release([SERIES], T0)                         # an older release never moves it back
    assert index.get_series(SERIES)["released_at"] == T0 + 1
    receive(index, t, "b", range(5, 6), T0 + 2)                # an instance after the release re-opens
    t2, jobs = tracker(index)
    t2.arm(at=T0)
    t2.tick(now=T0 + 100 * IDLE_S)
    assert jobs == []
