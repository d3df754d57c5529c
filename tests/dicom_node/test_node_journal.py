"""The write-ahead journal: record format, torn/partial records, replay into spool and index,
segment rolling, fallbacks; and the byte-exact pynetdicom shortcuts of ``dimse_fast``."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode, encode_file_meta

from dicom_node.config import build_config
from dicom_node.dimse_fast import encode_store_rsp, part10_header
from dicom_node.journal import RECORD_HEADER, SEGMENT_DATA_START, Journal, read_segment
from dicom_node.service import NodeService
from tests.dicom_node.conftest import free_port, node_config, storescu, wait_for
from tests.dicom_node.node_processor import make_processor


def _journal(tmp_path: Path, applied: list, segment_bytes: int = 1 << 20) -> Journal:
    return Journal(tmp_path / "journal", segment_bytes, lambda recs, replay: applied.extend(recs))


def _records(n: int) -> list[tuple[dict, list[bytes]]]:
    return [({"sop_uid": f"1.2.{i}", "i": i}, [b"head", os.urandom(1000 + i)]) for i in range(n)]


def test_records_round_trip_and_replay_applies_each_once(tmp_path: Path) -> None:
    applied: list = []
    j = _journal(tmp_path, applied)
    gate = threading.Event()
    j.apply = lambda recs, replay: gate.wait()  # never applies: as if the node died first
    j.start()
    sent = _records(20)
    for meta, chunks in sent:
        assert j.append(meta, chunks)
    assert j.pending("1.2.3") == {"sop_uid": "1.2.3", "i": 3}
    segment = next((tmp_path / "journal").glob("*.wal"))
    got = [r for _, r in read_segment(segment)]
    assert [r.meta for r in got] == [m for m, _ in sent]
    assert [r.data for r in got] == [b"".join(c) for _, c in sent]
    gate.set()

    replayed: list = []
    j2 = _journal(tmp_path, replayed)
    assert j2.replay() == 20
    assert [r.meta["i"] for r in replayed] == list(range(20))
    assert not list((tmp_path / "journal").glob("*.wal"))  # applied segments are removed


@pytest.mark.parametrize("damage", ["cut-data", "cut-header", "flip-byte", "bad-length"])
def test_a_torn_or_corrupt_last_record_ends_the_log(tmp_path: Path, damage: str) -> None:
    j = _journal(tmp_path, [])
    j.apply = lambda recs, replay: threading.Event().wait()
    j.start()
    for meta, chunks in _records(5):
        j.append(meta, chunks)
    segment = next((tmp_path / "journal").glob("*.wal"))
    ends = [end for end, _ in read_segment(segment)]
    last_start, last_end = ends[-2], ends[-1]
    with open(segment, "r+b") as fh:
        if damage == "cut-data":      # the tail of the last record never reached the disk
            fh.seek(last_end - 100)
            fh.write(bytes(100))
        elif damage == "cut-header":  # only part of its header did
            fh.seek(last_start + 10)
            fh.write(bytes(last_end - last_start - 10))
        elif damage == "flip-byte":
            fh.seek(last_start + RECORD_HEADER.size + 50)
            byte = fh.read(1)
            fh.seek(-1, 1)
            fh.write(bytes([byte[0] ^ 0xFF]))
        else:                         # a length that runs past the segment
            fh.seek(last_start + 16)
            fh.write((10**12).to_bytes(8, "little"))
    assert [r.meta["i"] for _, r in read_segment(segment)] == [0, 1, 2, 3]
    replayed: list = []
    assert _journal(tmp_path, replayed).replay() == 4


def test_garbage_and_foreign_files_in_the_journal_folder_are_harmless(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    (folder / "0000000000000001.wal").write_bytes(os.urandom(SEGMENT_DATA_START + 500))
    (folder / "0000000000000002.wal").write_bytes(b"")
    (folder / "spare-1-2.tmp").write_bytes(bytes(4096))  # a segment being prepared at the crash
    replayed: list = []
    assert _journal(tmp_path, replayed).replay() == 0
    assert not list(folder.iterdir())


def test_segments_roll_and_applied_ones_are_deleted(tmp_path: Path) -> None:
    applied: list = []
    j = Journal(tmp_path / "journal", 64 * 1024, lambda recs, replay: applied.extend(recs), linger_s=0)
    j.start()
    for i in range(60):
        assert j.append({"sop_uid": str(i)}, [os.urandom(8000)])
    assert not j.append({"sop_uid": "big"}, [bytes(70 * 1024)])  # does not fit a segment
    assert j.flush()
    assert [int(r.meta["sop_uid"]) for r in applied] == list(range(60))
    assert len(list((tmp_path / "journal").glob("*.wal"))) == 1  # only the active one is left
    assert j.pending("59") is None
    j.close()
    assert not list((tmp_path / "journal").iterdir())


def _start(tmp_path: Path, **spool: object) -> NodeService:
    cfg = build_config(node_config(tmp_path / "spool", free_port(), spool=spool), environ={})
    node = NodeService(cfg, make_processor(None))
    node.start()
    return node


def test_replay_after_a_crash_restores_files_and_rows(tmp_path: Path, short_series: Path) -> None:
    files = sorted(short_series.glob("*.dcm"))[:12]
    node = _start(tmp_path)
    stuck = threading.Event()
    node.scp.journal.apply = lambda recs, replay: stuck.wait()  # the applier never gets there
    node.scp.journal.flush = lambda timeout_s=30.0: True       # release does not wait for it
    storescu(node.port, files)                                   # all acknowledged
    assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 0
    # "crash": the process state is dropped without stop(); a file renamed but never synced
    # may be empty after a real crash, plant one to check replay rewrites it
    victim = node.spool.instance_path(str(dcmread(files[0]).SeriesInstanceUID),
                                      str(dcmread(files[0]).SOPInstanceUID))
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_bytes(b"")
    for part in (node.scp, node.tracker, node.worker, node.sender):
        part.stop()
    stuck.set()
    node.index.close()

    node = _start(tmp_path)
    try:
        rows = dict(node.index.query("SELECT sop_uid, path FROM instances"))
        assert len(rows) == len(files)
        for f in files:
            src = dcmread(f)
            assert dcmread(rows[str(src.SOPInstanceUID)]).PixelData == src.PixelData
        assert not list((node.spool.root / "journal").glob("0*.wal"))[1:]  # old segments gone
        assert not any((node.spool.root / "tmp").iterdir())
        # the replayed series is receiving; it completes by idle timeout (3 s here)
        wait_for(lambda: [r[0] for r in node.index.query("SELECT state FROM series")] == ["complete"],
                 timeout_s=10)
        storescu(node.port, files)                                  # resend: one copy each
        assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == len(files)
        assert node.index.query("SELECT COUNT(*) FROM quarantine")[0][0] == 0
        assert sum(1 for _ in (node.spool.root / "series").rglob("*.dcm")) == len(files)
    finally:
        node.stop()


def test_replaying_records_applied_long_ago_does_not_reopen_their_series(tmp_path: Path,
                                                                         short_series: Path) -> None:
    files = sorted(short_series.glob("*.dcm"))
    node = _start(tmp_path)
    storescu(node.port, files)
    wait_for(lambda: node.index.query("SELECT COUNT(*) FROM jobs WHERE state IN ('sending', 'done')")[0][0])
    assert node.scp.journal.flush()
    segment = next((node.spool.root / "journal").glob("*.wal"))
    assert len(list(read_segment(segment))) == len(files)  # the active segment still holds them
    for part in (node.scp, node.tracker, node.worker, node.sender):  # crash: no journal close
        part.stop()
    node.index.close()

    node = _start(tmp_path)
    try:
        assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == len(files)
        time.sleep(3.5)  # past the idle timeout: a re-opened series would be completed again
        assert [r[0] for r in node.index.query("SELECT state FROM series")] == ["complete"]
        assert node.index.query("SELECT COUNT(*) FROM jobs")[0][0] == 1
    finally:
        node.stop()


def test_duplicate_of_a_journaled_not_yet_applied_instance_is_one_copy(tmp_path: Path,
                                                                       short_series: Path) -> None:
    files = sorted(short_series.glob("*.dcm"))[:3]
    node = _start(tmp_path)
    try:
        gate = threading.Event()
        apply = node.scp.journal.apply
        node.scp.journal.apply = lambda recs, replay: (gate.wait(), apply(recs, replay))
        release = threading.Timer(2.0, gate.set)
        release.start()
        storescu(node.port, [*files, *files])  # the resends arrive while the first copies are pending
        release.join()
        assert node.metrics.get("wbspine_instances_duplicate_total") == 3
        assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 3
        assert node.index.query("SELECT COUNT(*) FROM quarantine")[0][0] == 0
        assert sum(1 for _ in (node.spool.root / "series").rglob("*.dcm")) == 3
    finally:
        node.stop()


def test_no_room_for_a_segment_means_direct_durable_writes(tmp_path: Path, short_series: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Journal) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journal, "_make_spare", full)
    files = sorted(short_series.glob("*.dcm"))[:5]
    node = _start(tmp_path)
    try:
        assert node.scp.journal is None
        storescu(node.port, files)
        rows = node.index.query("SELECT path FROM instances")
        assert len(rows) == 5 and all(Path(r["path"]).is_file() for r in rows)
    finally:
        node.stop()


def test_instances_larger_than_a_segment_are_written_directly(tmp_path: Path, short_series: Path) -> None:
    files = sorted(short_series.glob("*.dcm"))[:3]
    node = _start(tmp_path, journal_segment_mb=1)
    try:
        node.scp.journal.segment_bytes = 16 * 1024  # smaller than a slice: every record refused
        storescu(node.port, files)
        rows = node.index.query("SELECT path FROM instances")
        assert len(rows) == 3 and all(Path(r["path"]).is_file() for r in rows)
    finally:
        node.stop()


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xA900, 0xC000, 0xC211, 0xB000])
@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.840.113619.2.55.3.604688119.971.1387.5"])
def test_fast_store_response_is_byte_identical_to_pynetdicom(status: int, instance: str) -> None:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = instance
    rsp.Status = status
    msg = C_STORE_RSP()
    msg.primitive_to_message(rsp)
    assert encode_store_rsp(7, status, rsp.AffectedSOPClassUID, instance) == encode(msg.command_set, True, True)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70"])
def test_part10_header_is_byte_identical_to_pynetdicom(syntax: str) -> None:
    for cls, inst in [("1.2.840.10008.5.1.4.1.1.2", "1.2.3"), ("1.2.840.10008.5.1.4.1.1.2.1", "1.2.34")]:
        ref = b"\0" * 128 + b"DICM" + encode_file_meta(
            create_file_meta(sop_class_uid=cls, sop_instance_uid=inst, transfer_syntax=syntax))
        assert part10_header(cls, inst, syntax) == ref


def test_connection_closed_before_the_release_event_still_counts_as_released(tmp_path: Path) -> None:
    """pynetdicom's DUL thread may report the peer's close before its association thread
    reports the release it just answered; the series must still complete at once."""
    from types import SimpleNamespace

    from pynetdicom.pdu_primitives import A_RELEASE

    node = _start(tmp_path)
    try:
        calls: list = []
        node.scp.tracker = SimpleNamespace(association_ended=lambda key, released: calls.append(released))
        assoc = SimpleNamespace(native_id=1, is_released=False)
        node.scp._on_acse_recv(SimpleNamespace(assoc=assoc, primitive=A_RELEASE()))
        node.scp._on_closed(SimpleNamespace(assoc=assoc))    # close reported first
        node.scp._on_released(SimpleNamespace(assoc=assoc))  # then the release
        assert calls == [True, True]
        other = SimpleNamespace(native_id=2, is_released=False)
        node.scp._on_closed(SimpleNamespace(assoc=other))    # no release asked: an abort
        assert calls[-1] is False
    finally:
        node.stop()
