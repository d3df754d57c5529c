"""Hostile and broken C-STORE data sets on live associations (cases 1-4, 13-17)."""

from __future__ import annotations

import zlib
from copy import deepcopy
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless

from tests.dicom_node.rawscu import encode_ds
from tests.faults.conftest import files_under, peak_rss_growth_mb
from tests.faults.hostile import CT, associate, send, send_half_then_abort

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def nested_sequences(depth: int) -> bytes:
    """Referenced Image Sequence nested ``depth`` deep, undefined lengths (explicit VR LE)."""
    open_sq = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff"
    open_item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return (open_sq + open_item) * depth + close * depth


def instance_count(node) -> int:
    return int(node.index.query("SELECT COUNT(*) FROM instances")[0][0])


def assert_nothing_stored(node) -> None:
    spool = node.spool.root
    assert instance_count(node) == 0
    assert not any((spool / "series").rglob("*")), "a refused instance left a file"
    assert not any((spool / "tmp").iterdir()), "a partial file was left behind"
    assert not any((spool / "quarantine").iterdir())


@pytest.mark.fault(1)
def test_hostile_uids_are_refused_and_nothing_leaves_the_spool(start_node, one_ct: Dataset,
                                                               tmp_path: Path) -> None:
    node = start_node()
    before = files_under(tmp_path)
    assoc = associate(node.port)
    try:
        for bad in ("../../x", "/etc/x", "..", "1." + "2" * 70, "1.2.abc", "1.2.03", "1.2.\0"):
            for attr in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
                hostile = deepcopy(one_ct)
                setattr(hostile, attr, bad)
                command_uid = bad if attr == "SOPInstanceUID" and len(bad) <= 64 else str(one_ct.SOPInstanceUID)
                status = send(assoc, encode_ds(hostile), command_uid)
                assert status == 0xC000, (attr, bad, status)
        assert assoc.is_established
    finally:
        assoc.release()
    assert_nothing_stored(node)
    new = files_under(tmp_path) - before
    assert all(p.is_relative_to(node.spool.root) for p in new), new
    assert not Path("/etc/x").exists() and not (node.spool.root.parent.parent / "x").exists()


@pytest.mark.fault(2)
def test_dataset_uids_differing_from_the_command_get_a900(start_node, one_ct: Dataset) -> None:
    node = start_node()
    uid = str(one_ct.SOPInstanceUID)
    assoc = associate(node.port, sop_class=CT)
    try:
        assert send(assoc, encode_ds(one_ct), uid + ".9") == 0xA900          # other instance UID
        enhanced = deepcopy(one_ct)
        enhanced.SOPClassUID = ENHANCED_CT                                    # other SOP class
        assert send(assoc, encode_ds(enhanced), uid) == 0xA900
        multiframe = deepcopy(one_ct)
        multiframe.NumberOfFrames = 3                                       # frames the reader refuses
        multiframe.PixelData = bytes(one_ct.PixelData) * 3
        assert send(assoc, encode_ds(multiframe), uid) == 0xA900
        assert assoc.is_established
    finally:
        assoc.release()
    assert_nothing_stored(node)
    assert node.metrics.get("wbspine_instances_rejected_total", status="0xA900") == 3


@pytest.mark.fault(2)
def test_multiframe_ct_classes_are_refused_at_negotiation(start_node) -> None:
    """The pipeline reads single-frame CT only: Enhanced / Legacy Converted Enhanced CT must
    be refused when the association is set up, never acknowledged and then failed."""
    from pynetdicom import AE

    from dicom_node.policy import REFUSED_MULTIFRAME_CLASSES

    node = start_node()
    ae = AE(ae_title="SCANNER")
    for cls in (CT, *REFUSED_MULTIFRAME_CLASSES):
        ae.add_requested_context(cls, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="WBSPINE")
    try:
        assert assoc.is_established
        assert {c.abstract_syntax for c in assoc.accepted_contexts} == {CT}
        refused = {c.abstract_syntax for c in assoc.rejected_contexts}
        assert refused == set(REFUSED_MULTIFRAME_CLASSES)
    finally:
        assoc.release()


@pytest.mark.fault(3)
def test_malformed_bytes_get_c000_and_the_association_survives(start_node, one_ct: Dataset) -> None:
    node = start_node()
    raw, uid = encode_ds(one_ct), str(one_ct.SOPInstanceUID)
    cases = {
        "truncated element": raw[: len(raw) // 2],
        "cut inside an element header": raw[:13],
        "value length beyond the end": b"\x08\x00\x16\x00UI\xff\x7f" + b"garbage" * 10,
        "undefined length on a non-SQ VR": b"\x08\x00\x18\x00UI\x00\x00" + raw[8:64],
        "OB length past the end": raw[:200] + b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\x7f" + b"\0" * 64,
        "file preamble then garbage": b"\0" * 128 + b"DICM" + bytes(range(256)) * 8,
        "random bytes": bytes((i * 7919) % 251 for i in range(5000)),
    }
    assoc = associate(node.port)
    try:
        for name, data in cases.items():
            assert send(assoc, data, uid) == 0xC000, name
        assert_nothing_stored(node)
        assert send(assoc, raw, uid) == 0x0000  # same association, a good instance goes through
    finally:
        assoc.release()
    assert instance_count(node) == 1
    assert node.metrics.get("wbspine_instances_rejected_total", status="0xC000") == len(cases)


@pytest.mark.fault(4)
@pytest.mark.parametrize("depth", [17, 3000, 100_000])
def test_deep_sequences_get_c000_without_recursion_error(start_node, one_ct: Dataset, depth: int,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    node = start_node()
    uid = str(one_ct.SOPInstanceUID)
    assoc = associate(node.port)
    try:
        assert send(assoc, encode_ds(one_ct) + nested_sequences(depth), uid) == 0xC000
        assert send(assoc, encode_ds(one_ct), uid) == 0x0000
    finally:
        assoc.release()
    assert "RecursionError" not in caplog.text and "Traceback" not in caplog.text
    assert instance_count(node) == 1


@pytest.mark.fault(13, 14)
def test_identical_resend_is_one_copy_and_other_content_is_quarantined(
        start_node, one_ct: Dataset, caplog: pytest.LogCaptureFixture) -> None:
    node = start_node()
    raw, uid = encode_ds(one_ct), str(one_ct.SOPInstanceUID)
    other = deepcopy(one_ct)
    other.ImageComments = "tampered"
    assoc = associate(node.port)
    try:
        assert send(assoc, raw, uid) == 0x0000
        assert send(assoc, raw, uid) == 0x0000
        assert send(assoc, encode_ds(other), uid) == 0x0000
    finally:
        assoc.release()
    rows = node.index.query("SELECT path FROM instances")
    assert len(rows) == 1 and len(list((node.spool.root / "series").rglob("*.dcm"))) == 1
    assert dcmread(rows[0]["path"]).get("ImageComments") != "tampered"   # never overwritten
    quarantined = node.index.query("SELECT path, reason FROM quarantine")
    assert len(quarantined) == 1 and dcmread(quarantined[0]["path"]).ImageComments == "tampered"
    assert "same SOP Instance UID" in quarantined[0]["reason"]
    assert "conflicting resend quarantined" in caplog.text
    assert node.metrics.get("wbspine_instances_duplicate_total") == 1


@pytest.mark.fault(15)
def test_handler_exception_gives_c211_and_the_association_stays_up(start_node, one_ct: Dataset,
                                                                   monkeypatch) -> None:
    node = start_node()
    raw, uid = encode_ds(one_ct), str(one_ct.SOPInstanceUID)
    assoc = associate(node.port)
    try:
        monkeypatch.setattr(node.spool, "check_space", lambda *a, **k: 1 / 0)  # on the ack path
        assert send(assoc, raw, uid) == 0xC211
        monkeypatch.undo()
        assert assoc.is_established
        assert send(assoc, raw, uid) == 0x0000
    finally:
        assoc.release()
    assert instance_count(node) == 1
    assert not any((node.spool.root / "tmp").iterdir())


@pytest.mark.fault(16)
def test_abort_in_the_middle_of_a_c_store_leaves_nothing(start_node, one_ct: Dataset) -> None:
    node = start_node(node={"max_pdu_bytes": 16384})
    assoc = associate(node.port, max_pdu=16384)
    try:
        written = send_half_then_abort(assoc, encode_ds(one_ct), str(one_ct.SOPInstanceUID))
        assert written >= 2  # the command and at least one data fragment went out
    finally:
        if assoc.is_established:
            assoc.abort()
    assert_nothing_stored(node)
    assoc = associate(node.port)
    try:  # and the node still serves
        assert send(assoc, encode_ds(one_ct), str(one_ct.SOPInstanceUID)) == 0x0000
    finally:
        assoc.release()


def deflate_bomb(one_ct: Dataset, inflated_mb: int) -> bytes:
    """A deflated data set whose Pixel Data inflates to ``inflated_mb`` MiB of zeros."""
    head = encode_ds(deepcopy(one_ct))
    head = head[: head.index(b"\xe0\x7f\x10\x00")]  # everything before Pixel Data
    pixel = b"\xe0\x7f\x10\x00OW\x00\x00" + (inflated_mb * 2**20).to_bytes(4, "little")
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [z.compress(head + pixel)]
    zeros = b"\0" * 2**20
    parts += [z.compress(zeros) for _ in range(inflated_mb)]
    parts.append(z.flush())
    return b"".join(parts)


@pytest.mark.fault(17)
def test_huge_rows_columns_and_bombs_are_refused_or_stored_cleanly(start_node, one_ct: Dataset) -> None:
    node = start_node(node={"max_instance_mb": 16})
    uid = str(one_ct.SOPInstanceUID)
    huge = deepcopy(one_ct)
    huge.Rows = huge.Columns = 65535                          # pixel data far shorter than announced
    bomb = deflate_bomb(one_ct, 256)                          # ~256 KiB on the wire, 256 MiB inflated
    assert len(bomb) < 2**20
    rle = deepcopy(one_ct)                                       # RLE frame claiming 65535 x 65535
    rle.file_meta.TransferSyntaxUID = RLELossless
    rle.Rows = rle.Columns = 65535
    rle.PixelData = encapsulate([b"\0" * 64])
    rle["PixelData"].VR = "OB"
    rle.SOPInstanceUID = uid + ".1"
    assoc = associate(node.port, syntaxes=(ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                                           RLELossless))
    try:
        assert send(assoc, encode_ds(huge), uid) == 0xC000
        with peak_rss_growth_mb() as growth:
            assert send(assoc, bomb, uid, syntax=DeflatedExplicitVRLittleEndian) == 0xC000
        assert growth[0] < 64, f"deflate bomb grew the node by {growth[0]:.0f} MiB"
        # A compressed frame is stored as sent (not decoded at intake); inference refuses it (test_jobs).
        assert send(assoc, encode_ds(rle), uid + ".1", syntax=RLELossless) == 0x0000
        assert send(assoc, encode_ds(one_ct), uid) == 0x0000
    finally:
        assoc.release()
    assert instance_count(node) == 2
    assert not any((node.spool.root / "tmp").iterdir())
