"""PACS down, refusing and flapping: results wait in the outbox, then arrive in order, once (case 22);
a PACS that refuses one kind of result, one object backing off, operators resending and
skipping (cases 24–26).

The PACS here is a recording pynetdicom storage SCP on a real port (it can answer any status
and go down and up on demand); DCMTK ``storescp --refuse`` plays the PACS that rejects
associations. Orthanc down-then-up is in tests/dicom_node/test_node_pacs.py (referenced).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from appliance.cli import main as wbspine
from dicom_node.index import Index
from dicom_node.metrics import Metrics
from dicom_node.outbox import MAX_REFUSALS, OutboxSender
from dicom_node.tools import dcmtk_command
from tests.dicom_node.conftest import NODELAY_ENV, free_port, storescu, wait_for
from tests.dicom_node.peers import SEG, SR, STL, make_jobs, storescp_without_stl, stored_uids


class RecordingPacs:
    """Storage SCP that records the SOP Instance UIDs it stored, in arrival order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stored: list[str] = []
        self.refuse_next = 0          # answer 0xA700 to this many C-STOREs first
        self.refuse_uids: set[str] = set()  # answer 0xA700 to these SOP Instance UIDs, always
        self.refused = 0
        self._server = None
        self._lock = threading.Lock()

    def _store(self, event: evt.Event) -> int:
        with self._lock:
            if str(event.request.AffectedSOPInstanceUID) in self.refuse_uids:
                self.refused += 1
                return 0xA700
            if self.refuse_next > 0:
                self.refuse_next -= 1
                self.refused += 1
                return 0xA700
            self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def up(self) -> None:
        ae = AE(ae_title="PACS")
        ae.supported_contexts = AllStoragePresentationContexts
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # aborts associations in flight, closes the port
            self._server = None


def outbox_order(node) -> list[str]:
    return [r["sop_uid"] for r in node.index.query("SELECT sop_uid FROM outbox ORDER BY id")]


def job_states(node) -> list[str]:
    return [r["state"] for r in node.index.list_jobs()]


def series_copy(src: Path, dest: Path, k: int) -> Path:
    """The short series as a different series (new UIDs), so each send makes a new job."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True)
    series_uid = generate_uid(entropy_srcs=[str(k), "series"])
    for f in sorted(src.glob("*.dcm")):
        ds = dcmread(f)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(k), str(ds.SOPInstanceUID)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(dest / f.name, enforce_file_format=True)
    return dest


@pytest.mark.fault(22)
def test_refusing_pacs_then_flapping_pacs_get_every_result_in_order_once(
        start_node, short_series: Path, tmp_path: Path) -> None:
    port = free_port()
    pacs = RecordingPacs(port)
    node = start_node(send={"destinations": [f"PACS@127.0.0.1:{port}"], "backoff_initial_s": 0.05,
                            "backoff_max_s": 0.2})
    # 1. The PACS rejects every association (DCMTK storescp --refuse) while job 1 finishes.
    refusing = subprocess.Popen([dcmtk_command("storescp"), "--refuse", "-aet", "PACS", str(port)], env=NODELAY_ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        storescu(node.port, series_copy(short_series, tmp_path / "s1", 1))
        wait_for(lambda: (node.index.query("SELECT MAX(attempts) FROM outbox")[0][0] or 0) >= 3, timeout_s=30)
        assert job_states(node) == ["sending"]
    finally:
        refusing.terminate()
        refusing.wait(timeout=10)
    # 2. It is up but full: 0xA700 for more than MAX_REFUSALS stores; nothing is given up.
    pacs.refuse_next = MAX_REFUSALS + 5
    pacs.up()
    wait_for(lambda: pacs.refused == MAX_REFUSALS + 5, timeout_s=30)
    # 3. It flaps (up 0.3 s / down 0.5 s) while two more studies arrive and are processed.
    stop = threading.Event()

    def flap() -> None:
        while not stop.is_set():
            time.sleep(0.3)
            pacs.down()
            time.sleep(0.5)
            pacs.up()

    flapper = threading.Thread(target=flap)
    flapper.start()
    try:
        for k in (2, 3):
            storescu(node.port, series_copy(short_series, tmp_path / f"s{k}", k))
            time.sleep(0.4)
        wait_for(lambda: len(job_states(node)) == 3, timeout_s=30)
        time.sleep(2)
    finally:
        stop.set()
        flapper.join()
    wait_for(lambda: job_states(node) == ["done"] * 3, timeout_s=60)
    pacs.down()
    expected = outbox_order(node)
    assert len(expected) == 6 and len(set(expected)) == 6
    first_arrivals = list(dict.fromkeys(pacs.stored))
    assert sorted(first_arrivals) == sorted(expected)
    for job in (1, 2, 3):  # each study's results in the order they were queued (jobs back off alone)
        own = [r["sop_uid"] for r in node.index.query("SELECT sop_uid FROM outbox WHERE job_id=? ORDER BY id", (job,))]
        assert [u for u in first_arrivals if u in own] == own, "results of a job arrived out of order"
    assert node.index.query("SELECT COUNT(*) FROM outbox WHERE state != 'sent'")[0][0] == 0
    dupes = len(pacs.stored) - len(first_arrivals)
    print(f"\nrefused associations, {pacs.refused} A700 answers, flapping: 6 results delivered in order; "
          f"{dupes} harmless resends (a response lost when the PACS went down)")


def sender_for(index: Index, **kw) -> OutboxSender:
    opts = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 5.0, **kw}
    return OutboxSender(index, Metrics(), "WBSPINE", **opts)


def drain(sender: OutboxSender, until, timeout_s: float = 30) -> None:
    """Run sender passes (as its thread would) until ``until()`` holds."""
    def step():
        sender.deliver_due()
        return until()
    wait_for(step, timeout_s=timeout_s, interval_s=0.05)


def states(index: Index, job: int) -> list[str]:
    return [r["state"] for r in index.query("SELECT state FROM outbox WHERE job_id=? ORDER BY id", (job,))]


@pytest.mark.fault(24)
def test_pacs_refusing_stl_still_receives_every_seg_and_sr_of_later_studies(tmp_path: Path) -> None:
    port = free_port()
    index = Index(tmp_path / "index.sqlite")
    jobs = make_jobs(index, tmp_path / "results", 3, ("PACS", "127.0.0.1", port))
    sender = sender_for(index)
    with storescp_without_stl(port, tmp_path / "pacs") as stored:
        drain(sender, lambda: all(j["state"] != "sending" for j in index.list_jobs()))
        wanted = {r["sop_uid"]: r["sop_class"] for r in index.query(
            "SELECT sop_uid, sop_class FROM outbox WHERE sop_class IN (?, ?)", (SEG, SR))}
        wait_for(lambda: len(stored_uids(stored)) >= len(wanted), timeout_s=10)
        assert stored_uids(stored) == wanted and len(wanted) == 6
    for job in jobs:  # SEG, SR sent; the STL failed at once (not retried), file kept, job failed with why
        assert states(index, job) == ["sent", "sent", "failed"]
        stl = index.query("SELECT attempts, last_error, path FROM outbox WHERE job_id=? AND sop_class=?",
                          (job, STL))[0]
        assert stl["attempts"] == 1 and "no presentation context" in stl["last_error"]
        assert Path(stl["path"]).exists()
    assert {(j["state"], j["reason"].split(":")[0]) for j in index.list_jobs()} == {("failed", "not delivered")}
    index.close()


@pytest.mark.fault(25)
def test_one_object_backing_off_does_not_hold_back_another_job(tmp_path: Path) -> None:
    port = free_port()
    pacs = RecordingPacs(port)
    index = Index(tmp_path / "index.sqlite")
    first, second = make_jobs(index, tmp_path / "results", 2, ("PACS", "127.0.0.1", port))
    stuck = index.query("SELECT sop_uid FROM outbox WHERE job_id=? ORDER BY id", (first,))[0][0]
    pacs.refuse_uids.add(stuck)  # job 1's SEG: "out of resources" on every try
    pacs.up()
    try:
        sender = sender_for(index, give_up_after_s=3600)
        drain(sender, lambda: states(index, second) == ["sent"] * 3 and pacs.refused >= 3)
        assert states(index, first) == ["pending"] * 3  # its SR and STL wait behind its SEG
        row = index.query("SELECT attempts, last_error, next_attempt_at FROM outbox WHERE sop_uid=?", (stuck,))[0]
        assert row["attempts"] >= 3 and "0xA700" in row["last_error"] and row["next_attempt_at"] > 0
        assert [j["state"] for j in index.list_jobs()] == ["sending", "done"]
        pacs.refuse_uids.clear()  # room again: job 1 goes, in its order
        drain(sender, lambda: [j["state"] for j in index.list_jobs()] == ["done", "done"])
        own = [r[0] for r in index.query("SELECT sop_uid FROM outbox WHERE job_id=? ORDER BY id", (first,))]
        assert [u for u in pacs.stored if u in own] == own
    finally:
        pacs.down()
        index.close()


@pytest.mark.fault(25)
def test_transient_failures_give_up_at_the_configured_deadline(tmp_path: Path) -> None:
    index = Index(tmp_path / "index.sqlite")
    (job,) = make_jobs(index, tmp_path / "results", 1, ("PACS", "127.0.0.1", free_port()))  # nobody listens
    sender = sender_for(index, give_up_after_s=0.5)
    drain(sender, lambda: index.list_jobs()[0]["state"] == "failed")
    row = index.query("SELECT state, attempts, last_error FROM outbox WHERE job_id=? ORDER BY id", (job,))[0]
    assert row["state"] == "failed" and row["attempts"] >= 2
    assert row["last_error"].startswith("gave up after") and "connection failed" in row["last_error"]
    index.close()


@pytest.mark.fault(26)
def test_resend_after_failure_delivers_the_same_files_and_the_job_reads_done(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "spool").mkdir()
    index = Index(tmp_path / "spool" / "index.sqlite")
    (job,) = make_jobs(index, tmp_path / "results", 1, ("PACS", "127.0.0.1", port))
    sender = sender_for(index)
    with storescp_without_stl(port, tmp_path / "pacs1"):
        drain(sender, lambda: index.list_jobs()[0]["state"] == "failed")
    stl_uid = index.query("SELECT sop_uid FROM outbox WHERE sop_class=?", (STL,))[0][0]
    pacs = RecordingPacs(port)  # the PACS learnt STL
    pacs.up()
    try:
        assert wbspine(["resend", str(job), "--spool", str(tmp_path / "spool")]) == 0
        assert index.list_jobs()[0]["state"] == "sending"
        drain(sender, lambda: index.list_jobs()[0]["state"] == "done")
        assert pacs.stored == [stl_uid]  # the same instance, not a reprocessed one; SEG/SR not again
        assert index.list_jobs()[0]["reason"] is None and states(index, job) == ["sent"] * 3
    finally:
        pacs.down()
        index.close()


@pytest.mark.fault(26)
def test_skip_settles_a_job_whose_destination_is_down(tmp_path: Path, capsys) -> None:
    (tmp_path / "spool").mkdir()
    index = Index(tmp_path / "spool" / "index.sqlite")
    first, second = make_jobs(index, tmp_path / "results", 2, ("PACS", "127.0.0.1", free_port()))
    sender = sender_for(index, backoff_initial_s=60, backoff_max_s=60)
    drain(sender, lambda: index.query("SELECT COUNT(*) FROM outbox WHERE attempts > 0")[0][0] == 2)
    assert wbspine(["skip", str(first), "--spool", str(tmp_path / "spool")]) == 0
    assert "3 result(s) skipped" in capsys.readouterr().out
    jobs = index.list_jobs()
    assert (jobs[0]["state"], jobs[0]["reason"]) == ("done", "3 result(s) skipped by operator")
    assert jobs[1]["state"] == "sending" and states(index, first) == ["skipped"] * 3
    assert index.query("SELECT last_error FROM outbox WHERE job_id=? ORDER BY id", (first,))[0][0].startswith(
        "skipped by operator (connection failed")
    sender.deliver_due(now=10**12)  # even long after: skipped results never go
    assert states(index, first) == ["skipped"] * 3
    index.close()
