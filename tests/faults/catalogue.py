"""The fault catalogue of issue #9: case number → (fault, expected behaviour).

Tests carry ``@pytest.mark.fault(n, ...)``; ``tests/faults/table.py`` runs them (and the
tests elsewhere listed in :data:`REFERENCED`) and prints one row per case.
"""

from __future__ import annotations

CASES: dict[int, tuple[str, str]] = {
    1: ("SOP Instance UID with ../, /etc/x, .., >64 chars, non-numeric",
        "C000, no file anywhere, nothing outside the spool"),
    2: ("data set UIDs differ from the command's Affected SOP Class/Instance",
        "A900, nothing stored or indexed"),
    3: ("truncated element, bad VR length, garbage after the preamble",
        "C000, no partial file, association survives"),
    4: ("sequences nested thousands deep", "C000, no RecursionError, node serves on"),
    5: ("P-DATA PDU or data set far beyond the negotiated maximum (pynetdicom #1086)",
        "peer dropped unread, memory bounded, node serves on"),
    6: ("huge A-ASSOCIATE-RQ, HTTP request, TLS ClientHello on the DICOM port",
        "closed/aborted at once, no memory spike"),
    7: ("client connects and stays silent, or stalls mid-PDU",
        "closed at the ACSE/network timeout, no leaked threads"),
    8: ("more associations than the maximum", "rejected-transient, ongoing transfer unaffected"),
    9: ("unknown calling AE, wrong called AE", "rejected-permanent with the right reason"),
    10: ("unsupported SOP class or transfer syntax", "presentation context rejected"),
    11: ("disk full while writing; spool above the watermark",
         "A700, temp file removed, earlier instances intact, node keeps running"),
    12: ("SIGKILL before/after Success, during a job, while sending",
         "nothing acknowledged lost, every result delivered once, duplicates harmless"),
    13: ("same instance sent twice", "Success, one copy"),
    14: ("same SOP Instance UID, other content", "original kept, newcomer quarantined and logged"),
    15: ("exception inside the C-STORE handler", "C211 for that instance, association stays up"),
    16: ("A-ABORT in the middle of a C-STORE", "no partial file visible or indexed"),
    17: ("Rows/Columns 65535, deflate or RLE compression bomb",
         "C000 or stored; inference refuses before allocating, clear job error"),
    18: ("missing slices, uneven spacing, mixed orientation, two series, localizer",
         "job failed with a clear reason (localizer excluded), inputs kept, no results sent"),
    19: ("non-CT modality or secondary capture", "context rejected or job refused, never processed"),
    20: ("TLS: plain client, untrusted or expired client certificate, TLS 1.0",
         "handshake refused and logged; TLS 1.2 client works"),
    21: ("model bundle tampered (hash mismatch) or unknown schema",
         "node refuses to start and says why"),
    22: ("PACS down, refusing, or flapping", "results kept in the outbox, delivered in order, once"),
    23: ("fuzzed C-STORE data sets and bundle manifests (hypothesis)",
         "only typed errors (DicomStatusError / BundleError), nothing written on refusal"),
    24: ("PACS refuses one kind of result for good (no presentation context for STL, C000, A900, 0122)",
         "that object failed at once, reason and file kept; every SEG and SR of later studies delivered"),
    25: ("one object keeps failing transiently (A700, PACS down) at a destination",
         "it backs off alone until send.give_up_after_s, then fails; other jobs' results keep flowing"),
    26: ("operator resends or skips a job's results",
         "resend sends the same files (no reprocessing) and the job reads done; skip settles the job"),
    27: ("series cut short: SIGKILL mid-series and the rest long after the idle timeout, a refused tail, "
         "an A-ABORT; then a later, larger version of a processed series",
         "nothing processed until a clean release; exactly one result set, or a superseding set whose SR "
         "names the first (Predecessor Documents Sequence) and the first job superseded"),
    28: ("SIGTERM while a scanner is still sending a long series",
         "stores for stop.drain_s, then A-ABORT; no C211, exit 0 within stop.timeout_s; the partial series "
         "is not processed, the resent one once"),
    29: ("SIGTERM while a job is inside native inference (ONNX Runtime threads)",
         "job finished within stop.job_grace_s or requeued; exit 0 (no SIGABRT) within stop.timeout_s; "
         "processed once at the next start"),
}

#: Tests outside tests/faults that prove a case (kept where they are, not duplicated).
REFERENCED: tuple[str, ...] = (
    "tests/dicom_node/test_node_receive.py::test_echo_allowed_and_unknown_calling_ae_rejected",
    "tests/dicom_node/test_node_receive.py::test_resend_identical_is_one_copy_and_reopens_nothing_twice",
    "tests/dicom_node/test_node_crash.py::test_sigkill_while_receiving_processing_and_sending",
    "tests/dicom_node/test_node_pacs.py::test_pacs_down_results_wait_in_outbox_then_delivered_once",
)
