"""DIMSE status mapping of the storage SCP, with crafted data sets on one association."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.dicom_node.rawscu import CT, associate, encode_ds, send_raw


def nested_sequences(depth: int) -> bytes:
    """Referenced Image Sequence nested ``depth`` deep, undefined lengths (explicit VR LE)."""
    open_sq = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff"
    open_item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return (open_sq + open_item) * depth + close * depth


@pytest.fixture
def one_ct(short_series: Path) -> Dataset:
    return dcmread(sorted(short_series.glob("*.dcm"))[0])


def test_status_mapping_keeps_the_association_up(start_node, one_ct: Dataset, monkeypatch) -> None:
    node = start_node()
    spool = node.spool.root
    raw = encode_ds(one_ct)
    uid = str(one_ct.SOPInstanceUID)
    assoc = associate(node.port)
    try:
        # Dataset UID differs from the command's → A900, nothing indexed.
        assert send_raw(assoc, CT, uid + ".9", raw) == 0xA900
        # Garbage, truncated element, hostile UIDs, deep nesting → C000.
        assert send_raw(assoc, CT, uid, b"\x08\x00\x16\x00UI\xff\x7f" + b"garbage" * 10) == 0xC000
        assert send_raw(assoc, CT, uid, raw[: len(raw) // 2]) == 0xC000
        for bad in ("../../x", "/etc/x", "..", "1." + "2" * 70, "1.2.abc"):
            hostile = dcmread(sorted(Path(one_ct.filename).parent.glob("*.dcm"))[1])
            hostile.SOPInstanceUID = bad
            command_uid = bad if len(bad) <= 64 else uid  # pynetdicom refuses to send > 64 chars
            assert send_raw(assoc, CT, command_uid, encode_ds(hostile)) == 0xC000, bad
        assert send_raw(assoc, CT, uid, raw + nested_sequences(3000)) == 0xC000
        assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 0
        # An unexpected error in the handler → C211; the association survives it.
        monkeypatch.setattr(node.index, "add_instance", lambda *a, **k: 1 / 0)
        assert send_raw(assoc, CT, uid, raw) == 0xC211
        monkeypatch.undo()
        assert send_raw(assoc, CT, uid, raw) == 0x0000
        # Identical resend: Success, one copy. Same UID, other content: original kept, newcomer quarantined.
        assert send_raw(assoc, CT, uid, raw) == 0x0000
        other = one_ct.copy()
        other.ImageComments = "tampered"
        assert send_raw(assoc, CT, uid, encode_ds(other)) == 0x0000
        assert assoc.is_established
    finally:
        assoc.release()
    rows = node.index.query("SELECT path FROM instances")
    assert len(rows) == 1
    assert dcmread(rows[0]["path"]).get("ImageComments") != "tampered"
    quarantined = node.index.query("SELECT path FROM quarantine")
    assert len(quarantined) == 1 and dcmread(quarantined[0]["path"]).ImageComments == "tampered"
    written = [p for p in spool.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(spool) for p in written)
    assert not any((spool / "tmp").iterdir())
    assert node.metrics.get("wbspine_instances_rejected_total", status="0xC000") == 8


def test_watermark_refuses_with_a700_and_leaves_no_partial_file(start_node, one_ct: Dataset) -> None:
    node = start_node(spool={"max_used_percent": 0.001})
    assoc = associate(node.port)
    try:
        assert send_raw(assoc, CT, str(one_ct.SOPInstanceUID), encode_ds(one_ct)) == 0xA700
        assert assoc.is_established
    finally:
        assoc.release()
    assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 0
    assert not any((node.spool.root / "tmp").iterdir())
    assert not any((node.spool.root / "series").iterdir())
