"""C-STORE SCU for result files (PS3.4 Annex B, PS3.8 presentation context negotiation).

One presentation context is proposed per (SOP Class, transfer syntax of the file), plus
Explicit/Implicit VR Little Endian per uncompressed class, so any storage class can be
sent — SEG, Comprehensive 3D SR, Secondary Capture, Encapsulated STL included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, UID
from pynetdicom import AE, build_context

from dicom_node.failures import NO_CONTEXT, AssociationRejected

log = logging.getLogger(__name__)

#: Status values of C-STORE that mean "stored" (PS3.4 B.2.3: success and warnings).
STORED = {0x0000, 0xB000, 0xB006, 0xB007}
MAX_CONTEXTS = 120  # PS3.8 allows 128 presentation contexts per association


@dataclass(frozen=True)
class FileInfo:
    path: Path
    sop_class: str
    sop_uid: str
    transfer_syntax: str


def read_file_info(path: Path) -> FileInfo:
    """SOP Class/Instance and transfer syntax of a DICOM file, without its pixel data."""
    ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
    meta = ds.file_meta
    return FileInfo(Path(path), str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID),
                    str(meta.TransferSyntaxUID))


def contexts_for(files: list[FileInfo]) -> list:
    wanted: dict[tuple[str, str], None] = {}
    for f in files:
        wanted[(f.sop_class, f.transfer_syntax)] = None
        if not UID(f.transfer_syntax).is_compressed:
            wanted[(f.sop_class, ExplicitVRLittleEndian)] = None
            wanted[(f.sop_class, ImplicitVRLittleEndian)] = None
    return [build_context(c, [t]) for c, t in wanted]


def send_files(ae_title: str, host: str, port: int, files: list[FileInfo], calling_ae: str,
               timeout_s: float = 10.0, max_pdu: int = 262_144) -> list[int | str]:
    """Send ``files`` in order on one association; one result per file sent.

    A result is the DIMSE status (int), an :class:`AssociationRejected` (PS3.8 §9.3.4), or
    a string when no status came back (:data:`NO_CONTEXT` when the PACS accepted no
    presentation context for the file's SOP class). Sending stops at the first file not
    stored, so later files never overtake it; :mod:`dicom_node.failures` says what it means.
    """
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    ae.maximum_pdu_size = max_pdu
    contexts = contexts_for(files)
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError("too many presentation contexts for one association")
    assoc = ae.associate(host, port, contexts=contexts, ae_title=ae_title)
    if not assoc.is_established:
        rsp = getattr(assoc.acceptor, "primitive", None)
        if assoc.is_rejected and rsp is not None and rsp.result in (1, 2):
            return [AssociationRejected(int(rsp.result), int(rsp.result_source or 0), int(rsp.diagnostic or 0))]
        if assoc.is_rejected:
            return ["association rejected"]
        if assoc.rejected_contexts and not assoc.accepted_contexts:  # pynetdicom aborts then
            return [NO_CONTEXT]
        return ["connection failed" if rsp is None else "association aborted"]
    results: list[int | str] = []
    try:
        for f in files:
            accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
            if (f.sop_class, f.transfer_syntax) in accepted:
                status = assoc.send_c_store(f.path)
            elif any(cls == f.sop_class for cls, _ in accepted) and not UID(f.transfer_syntax).is_compressed:
                status = assoc.send_c_store(dcmread(f.path))  # pynetdicom re-encodes uncompressed data
            else:
                results.append(NO_CONTEXT)
                break
            code = int(status.Status) if status and "Status" in status else None
            results.append(code if code is not None else "no response")
            if code not in STORED:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return results
