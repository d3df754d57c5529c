"""PACS down, refusing and flapping: results wait in the outbox, then arrive in order, once (case 22).

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

from dicom_node.outbox import MAX_REFUSALS
from tests.dicom_node.conftest import NODELAY_ENV, free_port, storescu, wait_for
from dicom_node.tools import dcmtk_command


class RecordingPacs:
    """Storage SCP that records the SOP Instance UIDs it stored, in arrival order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stored: list[str] = []
        self.refuse_next = 0          # answer 0xA700 to this many C-STOREs first
        self.refused = 0
        self._server = None
        self._lock = threading.Lock()

    def _store(self, event: evt.Event) -> int:
        with self._lock:
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
    assert first_arrivals == expected, "results arrived out of order"
    assert node.index.query("SELECT COUNT(*) FROM outbox WHERE state != 'sent'")[0][0] == 0
    dupes = len(pacs.stored) - len(first_arrivals)
    print(f"\nrefused associations, {pacs.refused} A700 answers, flapping: 6 results delivered in order; "
          f"{dupes} harmless resends (a response lost when the PACS went down)")
