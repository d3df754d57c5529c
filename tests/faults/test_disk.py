"""Disk full while writing, and the free-space watermark (case 11).

The spool lives on a 3 MiB tmpfs: a filler file leaves only a few slices' worth of space.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.dicom_node.rawscu import encode_ds
from tests.faults.hostile import associate, send


def fill(fs: Path, leave_bytes: int) -> Path:
    """Write a filler file so that about ``leave_bytes`` stay free on ``fs``."""
    filler = fs / "filler"
    free = shutil.disk_usage(fs).free
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(free - leave_bytes, 0))
        fh.flush()
        os.fsync(fh.fileno())
    return filler


def assert_intact(node, sent: list[Dataset]) -> None:
    stored = {r["sop_uid"]: r["path"] for r in node.index.query("SELECT sop_uid, path FROM instances")}
    assert set(stored) == {str(ds.SOPInstanceUID) for ds in sent}
    for ds in sent:
        assert dcmread(stored[str(ds.SOPInstanceUID)]).PixelData == ds.PixelData


@pytest.mark.fault(11)
@pytest.mark.parametrize(("leave_kib", "precheck"), [(150, True), (40, True), (150, False), (40, False)])
def test_disk_full_gives_a700_keeps_earlier_instances_and_recovers(start_node, tiny_fs: Path, cts: list,
                                                                     caplog: pytest.LogCaptureFixture,
                                                                     monkeypatch, leave_kib: int,
                                                                     precheck: bool) -> None:
    """``precheck=False``: another process takes the space between the free-space check and the
    write (the check is switched off), so the write itself meets ENOSPC on the real file system."""
    node = start_node(spool={"directory": str(tiny_fs / "spool"), "min_free_mb": 0, "max_used_percent": 100})
    if not precheck:
        monkeypatch.setattr(node.spool, "check_space", lambda nbytes: None)
    assoc = associate(node.port)
    try:
        assert send(assoc, encode_ds(cts[0]), str(cts[0].SOPInstanceUID)) == 0x0000
        filler = fill(tiny_fs, leave_kib * 1024)
        stored, refused = [cts[0]], None
        for ds in cts[1:]:
            status = send(assoc, encode_ds(ds), str(ds.SOPInstanceUID))
            if status == 0xA700:
                refused = ds
                break
            assert status == 0x0000, hex(status or 0)
            stored.append(ds)
        assert refused is not None, "the 3 MiB file system never filled up"
        assert not any((node.spool.root / "tmp").iterdir()), "temp file left after ENOSPC"
        assert assoc.is_established
        assert_intact(node, stored)                     # earlier instances intact and indexed
        filler.unlink()                                 # space comes back: the node keeps running
        assert send(assoc, encode_ds(refused), str(refused.SOPInstanceUID)) == 0x0000
        stored.append(refused)
    finally:
        assoc.release()
    assert_intact(node, stored)
    files = list((node.spool.root / "series").rglob("*.dcm"))
    assert len(files) == len(stored), "a file without an index row was left behind"
    assert node.metrics.get("wbspine_instances_rejected_total", status="0xA700") == 1
    reasons = [getattr(r, "reason", "") for r in caplog.records if r.getMessage() == "C-STORE refused"]
    if not precheck:
        assert any("no space left" in r or "index database full" in r for r in reasons), reasons
    print(f"\nleave {leave_kib} KiB: {len(stored) - 1} stored, then A700 ({reasons}); recovered")


@pytest.mark.fault(11)
def test_watermark_refuses_with_a700_and_leaves_no_partial_file(start_node, one_ct: Dataset) -> None:
    node = start_node(spool={"max_used_percent": 0.001})
    assoc = associate(node.port)
    try:
        assert send(assoc, encode_ds(one_ct), str(one_ct.SOPInstanceUID)) == 0xA700
        assert assoc.is_established
    finally:
        assoc.release()
    assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 0
    assert not any((node.spool.root / "tmp").iterdir())
    assert not any((node.spool.root / "series").iterdir())
