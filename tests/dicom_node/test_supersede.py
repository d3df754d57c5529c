"""Supersede bookkeeping (dicom_node/jobs.py): a later job of a grown series marks the
earlier one ``superseded``, skips its unsent results, records ``supersedes`` and hands the
processor the earlier results; the index migrates from schema 1 to 2."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_node.cli import main
from dicom_node.config import Destination
from dicom_node.index import SCHEMA_VERSION, Index, InstanceRecord
from dicom_node.jobs import JobError, PriorResult, Worker, resend, retry, skip
from dicom_node.metrics import Metrics
from dicom_node.spool import Spool

SERIES = "1.2.826.0.1.3680043.10.1.9"
STUDY = "1.2.826.0.1.3680043.10.1.8"
CT = "1.2.840.10008.5.1.4.1.1.2"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
PACS = Destination(ae_title="PACS", host="127.0.0.1", port=11199)


def result(path: Path, sop_class: str) -> Path:
    """A minimal DICOM result object of ``sop_class`` (fresh UIDs)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, generate_uid()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


class Recorder:
    """A processor that writes one SR and one other object and records what it was given."""

    def __init__(self) -> None:
        self.calls: list[list[PriorResult]] = []

    def __call__(self, series_dir: Path, work_dir: Path, previous=()) -> list[Path]:
        self.calls.append(list(previous))
        return [result(work_dir / "sr.dcm", COMPREHENSIVE_3D_SR), result(work_dir / "ct.dcm", CT)]


def receive(index: Index, spool: Spool, numbers: range) -> None:
    rows = [(InstanceRecord(f"1.2.3.{n}", CT, SERIES, STUDY, f"/x/{n}.dcm", f"{n:064x}", 1, "1.2.840.10008.1.2.1",
                            n, 2.5 * n, "1,0,0,0,1,0"), str(spool.series_dir(SERIES)), "a", "SCANNER", "127.0.0.1",
             float(n)) for n in numbers]
    index.add_received(rows, [])


def complete(index: Index) -> int:
    row = index.get_series(SERIES)
    job = index.complete_series(SERIES, row["last_received"])
    assert job is not None
    return job


@pytest.fixture
def setup(tmp_path: Path):
    spool = Spool(tmp_path / "spool")
    index = Index(spool.index_path)
    yield index, spool
    index.close()


def test_a_grown_series_supersedes_its_earlier_job(setup) -> None:
    index, spool = setup
    process = Recorder()
    worker = Worker(index, spool, process, Metrics(), [PACS])
    receive(index, spool, range(1, 167))
    first = complete(index)
    assert worker.run_one()
    old = {r["sop_class"]: r["sop_uid"] for r in index.query("SELECT * FROM outbox WHERE job_id=?", (first,))}
    index.query("UPDATE outbox SET state='sent' WHERE job_id=? AND sop_class=?", (first, COMPREHENSIVE_3D_SR))
    receive(index, spool, range(167, 333))                      # the rest arrives: a larger version
    second = complete(index)
    assert worker.run_one()
    jobs = {r["id"]: r for r in index.list_jobs()}
    assert jobs[first]["state"] == "superseded" and jobs[first]["reason"] == f"superseded by job {second}"
    assert jobs[second]["state"] == "sending" and jobs[second]["supersedes"] == first
    rows = {r["sop_class"]: r for r in index.query("SELECT * FROM outbox WHERE job_id=?", (first,))}
    assert rows[COMPREHENSIVE_3D_SR]["state"] == "sent"          # already at the PACS: stays sent
    assert rows[CT]["state"] == "skipped" and rows[CT]["last_error"] == f"superseded by job {second}"
    assert process.calls[0] == []
    assert {(p.sop_class_uid, p.sop_instance_uid) for p in process.calls[1]} == {
        (COMPREHENSIVE_3D_SR, old[COMPREHENSIVE_3D_SR]), (CT, old[CT])}
    assert all(p.study_uid == STUDY for p in process.calls[1])
    with pytest.raises(JobError, match=f"superseded by job {second}"):
        retry(index, first)                                     # reprocessing a stale version: no
    with pytest.raises(JobError, match="stale"):
        resend(index, first)                                    # nor sending it again
    assert skip(index, second) == 2                             # the new job settles as usual
    assert index.query("SELECT state FROM jobs WHERE id=?", (first,))[0][0] == "superseded"


def test_supersede_skips_a_failed_version_and_links_to_the_last_one_with_results(setup) -> None:
    index, spool = setup
    process = Recorder()
    worker = Worker(index, spool, process, Metrics(), [PACS])
    receive(index, spool, range(1, 11))
    first = complete(index)
    worker.run_one()
    sr_uid = index.query("SELECT sop_uid FROM outbox WHERE job_id=? AND sop_class=?", (first, COMPREHENSIVE_3D_SR))
    receive(index, spool, range(11, 21))
    second = complete(index)
    worker.process = lambda series_dir, work_dir: (_ for _ in ()).throw(RuntimeError("planted"))
    worker._pass_previous = False
    worker.run_one()                                            # the second version fails: no results
    assert [r["state"] for r in index.list_jobs()] == ["superseded", "failed"]
    receive(index, spool, range(21, 31))
    third = complete(index)
    worker.process, worker._pass_previous = process, True
    worker.run_one()
    jobs = {r["id"]: r for r in index.list_jobs()}
    assert jobs[second]["state"] == "superseded" and jobs[third]["supersedes"] == second
    assert jobs[first]["reason"] == f"superseded by job {second}"  # superseded once, by the next
    # the report still names the last report that exists (job 1's), across the failure
    assert (COMPREHENSIVE_3D_SR, sr_uid[0][0]) in {(p.sop_class_uid, p.sop_instance_uid) for p in process.calls[-1]}


def test_a_processor_without_previous_is_called_as_before(setup) -> None:
    index, spool = setup
    calls = []

    def process(series_dir: Path, work_dir: Path) -> list[Path]:
        calls.append(series_dir)
        return [result(work_dir / "sr.dcm", COMPREHENSIVE_3D_SR)]

    worker = Worker(index, spool, process, Metrics(), [PACS])
    for numbers in (range(1, 5), range(5, 9)):
        receive(index, spool, numbers)
        complete(index)
        worker.run_one()
    assert len(calls) == 2 and [r["state"] for r in index.list_jobs()] == ["superseded", "sending"]


#: The schema-1 index (as written by the code before schema 2), with a job done and a series
#: still receiving.
V1 = """
CREATE TABLE studies (study_uid TEXT PRIMARY KEY, first_received REAL NOT NULL, last_received REAL NOT NULL);
CREATE TABLE series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, directory TEXT NOT NULL,
    calling_ae TEXT, peer_host TEXT, state TEXT NOT NULL, assoc_key TEXT,
    last_received REAL NOT NULL, completed_at REAL, generation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, sop_class TEXT NOT NULL,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, received_at REAL NOT NULL,
    transfer_syntax TEXT, instance_number INTEGER, position_mm REAL, orientation TEXT,
    images_in_acquisition INTEGER, number_of_frames INTEGER);
CREATE INDEX instances_series ON instances(series_uid);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY, sop_uid TEXT NOT NULL, path TEXT NOT NULL, reason TEXT NOT NULL,
    received_at REAL NOT NULL);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, series_uid TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL, finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, destination TEXT NOT NULL,
    ae_title TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, path TEXT NOT NULL,
    sop_class TEXT, sop_uid TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL, last_error TEXT, sent_at REAL, enqueued_at REAL);
INSERT INTO series VALUES ('1.2.7', '1.2', '/x', 'SCANNER', '127.0.0.1', 'receiving', 'a', 5, NULL, 0);
INSERT INTO series VALUES ('1.2.8', '1.2', '/y', 'SCANNER', '127.0.0.1', 'complete', 'a', 5, 6, 1);
INSERT INTO jobs VALUES (1, '1.2.8', 'done', NULL, 6, 7, 6, 7, 1);
PRAGMA user_version=1;
"""


def test_a_schema_1_index_migrates_to_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "index.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V1)
    db.close()
    index = Index(path)
    try:
        assert SCHEMA_VERSION == 2 and index.query("PRAGMA user_version")[0][0] == 2
        assert [tuple(r) for r in index.query("SELECT id, state, supersedes FROM jobs")] == [(1, "done", None)]
        # a series receiving across the upgrade has no known release: it is not delivered
        assert index.get_series("1.2.7")["released_at"] is None
        index.record_release(["1.2.7"], 9.0)
        assert index.get_series("1.2.7")["released_at"] == 9.0
    finally:
        index.close()
    Index(path).close()                                          # opening again changes nothing
    assert main(["status", "--spool", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1.2.7  instances=0" in out and "released, waiting for the idle settle" in out
