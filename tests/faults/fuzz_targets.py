"""Fuzz targets and input strategies shared by tests/faults/test_fuzz.py (small fixed budget)
and tests/benchmarks/fuzz_node.py (bounded-time runs).

- :func:`intake_target`: untrusted C-STORE bytes → ``intake.inspect`` → spool write → index row,
  exactly the node's path. Only :class:`DicomStatusError` may escape; a refusal writes nothing;
  an accepted instance lands inside the spool and reads back.
- :func:`manifest_target`: untrusted manifest bytes → ``parse_manifest``. Only
  :class:`BundleError` may escape.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from appliance.bundle import parse_manifest
from appliance.errors import BundleError
from dicom_node.errors import DicomStatusError
from dicom_node.index import Index, InstanceRecord
from dicom_node.intake import inspect
from dicom_node.spool import Spool

CT = "1.2.840.10008.5.1.4.1.1.2"
SOP_UID = "1.2.826.0.1.3680043.8.498.1"
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@lru_cache(maxsize=2)
def seed_dataset(implicit: bool) -> bytes:
    """A small valid CT data set with a sequence, pixel data and the tags intake reads."""
    from pydicom.filewriter import write_dataset
    from pydicom.filebase import DicomBytesIO

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, SOP_UID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    ds.Modality, ds.InstanceNumber, ds.ImagesInAcquisition = "CT", 1, 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    ref = Dataset()
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.ReferencedImageSequence = [ref]
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\x01\x00" * 16
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


@st.composite
def mutated_dataset(draw: st.DrawFn) -> tuple[bytes, str]:
    """A seed data set with random flips, cuts, insertions and length-field rewrites."""
    syntax = draw(st.sampled_from(SYNTAXES))
    data = bytearray(seed_dataset(syntax == ImplicitVRLittleEndian))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "cut", "insert", "length", "dup"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at: at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif op == "length":
            data[at: at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\0\0\0\0",
                                                     b"\x10\0\0\0", b"\xfe\xff\x00\xe0"]))
        else:
            end = min(len(data), at + draw(st.integers(1, 128)))
            data[end:end] = data[at:end] * draw(st.integers(1, 50))
    return bytes(data), syntax


intake_inputs = st.one_of(mutated_dataset(), st.tuples(st.binary(max_size=512), st.sampled_from(SYNTAXES)))


def intake_target(raw: bytes, syntax: str, spool: Spool, index: Index) -> bool:
    """The node's C-STORE path without the network; True when the instance was stored."""
    before = {p for p in spool.root.rglob("*") if p.is_file()}
    try:
        info = inspect(raw, syntax, CT, SOP_UID, max_bytes=4 * 2**20)
    except DicomStatusError:
        after = {p for p in spool.root.rglob("*") if p.is_file()}
        assert after == before, "a refused data set changed the spool"
        return False
    path = spool.instance_path(info.series_uid, info.sop_uid)
    assert path.resolve().is_relative_to(spool.root.resolve())
    spool.write_atomic(path, [raw])
    index.add_instance(InstanceRecord(info.sop_uid, info.sop_class, info.series_uid, info.study_uid,
                                      str(path), info.sha256, len(raw), syntax, info.instance_number,
                                      info.position_mm, info.orientation, info.images_in_acquisition,
                                      info.number_of_frames), str(path.parent), "fuzz", "FUZZ", "127.0.0.1")
    assert Path(index.find_instance(info.sop_uid)["path"]).read_bytes() == raw
    return True


@lru_cache(maxsize=1)
def seed_manifest() -> dict:
    from appliance.bundle import FileEntry
    from tests.appliance.inference.inference_helpers import manifest_dict

    return manifest_dict([FileEntry(path="model.onnx", role="onnx", sha256="0" * 64, size_bytes=1)])


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4),
                           max_leaves=20)


@st.composite
def mutated_manifest(draw: st.DrawFn) -> bytes:
    """The valid seed manifest with fields replaced, removed or added, or raw byte damage."""
    data = json.loads(json.dumps(seed_manifest()))
    for _ in range(draw(st.integers(0, 4))):
        node, keys = data, []
        while isinstance(node, dict) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node)))
            keys.append(key)
            if not isinstance(node[key], dict):
                break
            node = node[key]
        if not keys:
            data[draw(st.text(max_size=8))] = draw(json_values)
            continue
        parent = data
        for k in keys[:-1]:
            parent = parent[k]
        if draw(st.booleans()):
            parent[keys[-1]] = draw(json_values)
        else:
            parent.pop(keys[-1], None)
    raw = bytearray(json.dumps(data).encode())
    if draw(st.integers(0, 4)) == 0 and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw[at] = draw(st.integers(0, 255))
    return bytes(raw)


deep_json = st.integers(1, 200_000).map(lambda n: b"[" * n) | \
    st.integers(1, 50_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
manifest_inputs = st.one_of(mutated_manifest(), st.binary(max_size=256), deep_json)


def manifest_target(raw: bytes) -> bool:
    """True when the bytes are a valid manifest; only BundleError may escape."""
    try:
        parse_manifest(raw)
    except BundleError:
        return False
    return True
