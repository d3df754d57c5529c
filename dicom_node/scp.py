"""The storage SCP: Verification + Storage (PS3.4 Annex A and B) on a pynetdicom AE.

Status mapping of the C-STORE handler (PS3.4 B.2.3):
0x0000 only after the instance is durable: its journal record fdatasynced (the spool file
and index row follow in the background and are replayed after a crash), or, without the
journal, its file fsynced *and* its index row committed; 0xA700 spool above
watermark or disk full; 0xA900 data set does not match the command; 0xC000 cannot be
parsed; 0xC211 any unexpected error (the association stays up). An association with a refused
C-STORE delivers none of its series, even if it is released (:mod:`dicom_node.series`).
Association policy (PS3.8 7.1.1.9): unknown calling AE (or AE from another host) →
rejected-permanent, service-user, "calling AE title not recognised"; wrong called AE →
"called AE title not recognised"; over ``max_associations`` → rejected-transient,
service-provider (presentation), "local limit exceeded". The limit counts associations that
asked and were not yet released, aborted or closed: pynetdicom's own count includes threads
still winding down after a release, which refused scanners reconnecting at once.
Memory is bounded per association by :class:`PduGuard` (PDU length and data set size);
threads are bounded by :class:`GuardedServer` (timeouts on every accepted socket, TLS
handshakes off the accept thread).

Stop (:meth:`StorageSCP.stop`, SIGTERM): stop accepting; open associations may go on storing
for ``drain_s``; then every C-STORE is refused with 0xA700 ("node stopping", transient: the
scanner resends later), every association still open is A-ABORTed (pynetdicom's
``active_associations`` and ``Association.abort()``) and ``stop`` returns only when no store
handler runs any more, so the caller may close the index: no store is ever answered from a
closed index. An aborted association delivers nothing (:mod:`dicom_node.series`).
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node import dimse_fast
from dicom_node.config import NodeConfig, TlsConfig
from dicom_node.errors import DicomStatusError, OutOfResources
from dicom_node.index import Index, InstanceRecord
from dicom_node.intake import Inspected, inspect
from dicom_node.journal import Journal, Record
from dicom_node.metrics import Metrics
from dicom_node.policy import StoragePolicy
from dicom_node.series import SeriesTracker
from dicom_node.spool import Spool

log = logging.getLogger(__name__)

_N_LOCKS = 64
#: Largest PDU read whatever max_pdu_bytes says (an A-ASSOCIATE-RQ with 128 contexts fits).
MIN_PDU_LIMIT = 65_536
#: pynetdicom's thread-count limit is kept only as a backstop this far above ours.
THREAD_LIMIT_MARGIN = 64


class PduGuard:
    """Bounds what a peer can make pynetdicom buffer (PS3.8 9.3.1/9.3.5, pynetdicom #1086).

    Wraps the association socket's ``recv``: pynetdicom reads a 6-byte PDU header, then
    as many bytes as it announces. A PDU longer than ``max_pdu`` or a data set whose
    P-DATA fragments add up to more than ``max_dataset`` raises OSError, which the DUL turns
    into "transport closed": the peer is dropped instead of exhausting memory.
    """

    def __init__(self, sock: object, max_pdu: int, max_dataset: int) -> None:
        self._recv = sock.recv  # type: ignore[attr-defined]
        self.max_pdu, self.max_dataset = max_pdu, max_dataset
        self._pdu_type = 0
        self._dataset_bytes = 0
        sock.recv = self.recv  # type: ignore[attr-defined]

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes == 6 and self._pdu_type == 0:  # a PDU header
            header = self._recv(nr_bytes)
            if len(header) == 6:
                self._pdu_type = header[0]
            return header
        pdu_type, self._pdu_type = self._pdu_type, 0
        if nr_bytes > self.max_pdu:
            log.warning("PDU longer than the limit; dropping the peer",
                        extra={"pdu_bytes": nr_bytes, "limit": self.max_pdu})
            raise OSError(f"PDU of {nr_bytes} bytes exceeds the {self.max_pdu}-byte limit")
        body = self._recv(nr_bytes)
        if pdu_type == 0x04:
            self._count_pdvs(body)
        return body

    def _count_pdvs(self, body: bytearray) -> None:
        offset = 0
        while offset + 6 <= len(body):
            length = int.from_bytes(body[offset:offset + 4], "big")
            control = body[offset + 5]
            if not control & 0x01:  # data set fragment (PS3.8 E.2)
                self._dataset_bytes += max(length - 2, 0)
                if self._dataset_bytes > self.max_dataset:
                    log.warning("data set larger than the limit; dropping the peer",
                                extra={"limit": self.max_dataset})
                    raise OSError(f"data set exceeds the {self.max_dataset}-byte limit")
                if control & 0x02:
                    self._dataset_bytes = 0
            offset += 4 + length


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, hardened against peers that stall.

    pynetdicom accepts sockets without a timeout, so a peer that stops in the middle of a
    PDU holds its thread and association slot forever, and it runs the TLS handshake on
    the accept thread, so one silent client on a TLS port blocks every new association.
    Here every accepted socket reads with ``network_timeout``, and the handshake runs on
    the connection's own thread, bounded by ``acse_timeout``; a failed handshake is logged.
    """

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = self.socket.accept()  # type: ignore[union-attr]
        client.settimeout(self.ae.network_timeout)
        return client, address

    def process_request_thread(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        if self.ssl_context is not None:
            try:
                request.settimeout(self.ae.acse_timeout)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(self.ae.network_timeout)
            except OSError as exc:  # ssl.SSLError and timeouts are OSErrors
                log.warning("TLS handshake refused", extra={
                    "peer": client_address[0], "reason": f"{type(exc).__name__}: {exc}"[:300]})
                request.close()
                return
        super().process_request_thread(request, client_address)


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """Server-side TLS context: TLS ≥ 1.2 (or 1.3), client certificates required when a CA is set."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.ca_file is not None:
        ctx.load_verify_locations(str(tls.ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class StorageSCP:
    """Receives instances into the spool and index and notifies the series tracker."""

    def __init__(self, cfg: NodeConfig, spool: Spool, index: Index, tracker: SeriesTracker,
                 metrics: Metrics, policy: StoragePolicy | None = None,
                 journal: Journal | None = None) -> None:
        self.cfg, self.spool, self.index, self.tracker, self.metrics = cfg, spool, index, tracker, metrics
        self.journal = journal
        self.policy = policy or StoragePolicy.default()
        self._locks = [threading.Lock() for _ in range(_N_LOCKS)]
        self._open_lock = threading.Lock()
        self._open: set[str] = set()  # associations counted against max_associations
        self._releasing: set[str] = set()  # associations whose peer asked to release
        self._refused: set[str] = set()  # associations with a refused C-STORE: they deliver nothing
        self._server = None
        self._handling = threading.Condition()  # guards _in_store and _stopping
        self._in_store = 0  # C-STORE handlers running now
        self._stopping = False  # set after the drain: every further C-STORE is refused
        self.ae = self._make_ae()

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.cfg.ae_title)
        ae.maximum_associations = self.cfg.max_associations + THREAD_LIMIT_MARGIN
        ae.acse_timeout = self.cfg.acse_timeout_s
        ae.dimse_timeout = self.cfg.dimse_timeout_s
        ae.network_timeout = self.cfg.network_timeout_s
        ae.maximum_pdu_size = self.cfg.max_pdu_bytes
        ae.require_called_aet = self.cfg.require_called_ae
        ae.add_supported_context(Verification)
        for sop_class in self.policy.sop_classes:
            ae.add_supported_context(sop_class, list(self.policy.transfer_syntaxes))
        return ae

    # -- association events -----------------------------------------------------------
    def _on_conn_open(self, event: evt.Event) -> None:
        """Bound PDU reads and tune the DUL loop before the first byte is read."""
        dul = event.assoc.dul
        if hasattr(dul, "_run_loop_delay"):  # pynetdicom private tuning knob
            dul._run_loop_delay = self.cfg.dul_loop_delay_s
        if dul.socket is not None:
            PduGuard(dul.socket, max(self.cfg.max_pdu_bytes, MIN_PDU_LIMIT),
                     self.cfg.max_instance_mb * 2**20)
        dimse_fast.tune(event.assoc)

    def _on_acse_recv(self, event: evt.Event) -> None:
        """A-RELEASE-RQ: note it, and make what this association stored visible in spool and
        index before the A-RELEASE-RP goes out (a peer that queries right after release finds it)."""
        primitive = event.primitive
        if isinstance(primitive, A_RELEASE) and primitive.result is None:
            with self._open_lock:
                self._releasing.add(_assoc_key(event))
            if self.journal is not None:
                self.journal.flush()

    def _on_requested(self, event: evt.Event) -> None:
        """Enforce the calling-AE allow-list (optionally per host), then the association limit."""
        allowed = self.cfg.allowed_calling
        calling = event.assoc.requestor.primitive.calling_ae_title.strip()
        host = event.assoc.requestor.address
        if allowed and not any(p.ae_title == calling and p.host in (None, host) for p in allowed):
            log.warning("association rejected: calling AE not allowed",
                        extra={"calling_ae": calling, "peer": host})
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)
            event.assoc.kill()  # waits until the A-ASSOCIATE-RJ is out (as pynetdicom's ACSE does)
            return
        with self._open_lock:
            full = len(self._open) >= self.cfg.max_associations
            if not full:
                self._open.add(_assoc_key(event))
        if full:
            log.warning("association rejected: local limit exceeded",
                        extra={"calling_ae": calling, "peer": host, "limit": self.cfg.max_associations})
            event.assoc.acse.send_reject(0x02, 0x03, 0x02)
            event.assoc.kill()

    def _ended(self, event: evt.Event) -> None:
        with self._open_lock:
            self._open.discard(_assoc_key(event))

    def _on_released(self, event: evt.Event) -> None:
        self._ended(event)
        key = _assoc_key(event)
        with self._open_lock:
            self._releasing.discard(key)
            clean = key not in self._refused
        self.tracker.association_ended(key, released=clean)

    def _on_closed(self, event: evt.Event) -> None:
        """The connection closed. After an A-RELEASE-RQ this is a release, not an abort: the
        peer may close its socket as soon as the A-RELEASE-RP is out, and pynetdicom's DUL
        thread can report that before its association thread reports the release (the
        series then waited for the idle timeout instead of completing at once)."""
        self._ended(event)
        key = _assoc_key(event)
        with self._open_lock:
            released = (key in self._releasing or bool(event.assoc.is_released)) and key not in self._refused
            self._releasing.discard(key)
            self._refused.discard(key)  # the last event of an association
        self.tracker.association_ended(key, released=released)

    # -- DIMSE ------------------------------------------------------------------------
    def _on_echo(self, event: evt.Event) -> int:
        return 0x0000

    def _on_store(self, event: evt.Event) -> int:
        with self._handling:
            stopping = self._stopping
            if not stopping:
                self._in_store += 1
        if stopping:
            status = STOPPING_STATUS
            log.warning("C-STORE refused: node stopping", extra={"status": f"0x{status:04X}"})
        else:
            try:
                status = self._stored_status(event)
            finally:
                with self._handling:
                    self._in_store -= 1
                    self._handling.notify_all()
        if status != 0x0000:  # a refused instance: this association cannot deliver its series
            with self._open_lock:
                self._refused.add(_assoc_key(event))
        return status

    def _stored_status(self, event: evt.Event) -> int:
        try:
            return self._store(event)
        except DicomStatusError as exc:
            self.metrics.inc("wbspine_instances_rejected_total", status=f"0x{exc.status:04X}")
            log.warning("C-STORE refused", extra={"status": f"0x{exc.status:04X}", "reason": str(exc)})
            return exc.status
        except OSError as exc:
            self.metrics.inc("wbspine_instances_rejected_total", status="0xA700")
            log.error("C-STORE I/O error", extra={"reason": f"{type(exc).__name__}: {exc.strerror}"})
            return OutOfResources.status
        except Exception:
            self.metrics.inc("wbspine_instances_rejected_total", status="0xC211")
            log.exception("C-STORE handler failed")
            return 0xC211

    def _store(self, event: evt.Event) -> int:
        req = event.request
        raw = req.DataSet.getvalue()
        ts = event.context.transfer_syntax
        info = inspect(raw, ts, str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID),
                       self.cfg.max_instance_mb * 2**20)
        key = _assoc_key(event)
        with self._locks[hash(info.sop_uid) % _N_LOCKS]:
            known = self._known(info.sop_uid)
            if known is not None and known["sha256"] == info.sha256:
                self.tracker.note_instance(info.series_uid, key)
                self.index.touch_series(info.series_uid, key)
                self.metrics.inc("wbspine_instances_duplicate_total")
                return 0x0000
            chunks = [dimse_fast.part10_header(info.sop_class, info.sop_uid, str(ts)), raw]
            calling = event.assoc.requestor.ae_title.strip()
            host = event.assoc.requestor.address
            if known is not None:
                qpath = self.spool.quarantine_path(info.sop_uid, info.sha256)
                self._write(info, str(ts), qpath, chunks, "quarantine", key, calling, host)
                self.metrics.inc("wbspine_instances_quarantined_total")
                log.warning("conflicting resend quarantined; original kept",
                            extra={"sop_uid": info.sop_uid, "file": qpath.name})
                return 0x0000
            path = self.spool.instance_path(info.series_uid, info.sop_uid)
            self._write(info, str(ts), path, chunks, "instance", key, calling, host)
            self.tracker.note_instance(info.series_uid, key)
        self.metrics.inc("wbspine_instances_received_total")
        return 0x0000

    def _known(self, sop_uid: str) -> dict | sqlite3.Row | None:
        """The stored (or journaled, not yet applied) instance with this SOP Instance UID."""
        if self.journal is not None:
            pending = self.journal.pending(sop_uid)
            if pending is not None and pending["op"] == "instance":
                return pending
        known = self.index.find_instance(sop_uid)
        if known is not None and not Path(known["path"]).is_file():
            return None  # indexed but its file is gone (e.g. restored index): store it again
        return known

    def _write(self, info: Inspected, ts: str, path: Path, chunks: list[bytes], op: str,
               key: str, calling: str, host: str) -> None:
        """Make one received instance durable: a journal record, else file + index row."""
        size = sum(len(c) for c in chunks)
        if self.journal is not None:
            self.spool.check_space(size)
            meta = {"op": op, "path": str(path.relative_to(self.spool.root)), "t": time.time(),
                    "sop_uid": info.sop_uid, "sop_class": info.sop_class, "series_uid": info.series_uid,
                    "study_uid": info.study_uid, "sha256": info.sha256, "size": size - len(chunks[0]),
                    "ts": ts, "number": info.instance_number, "position": info.position_mm,
                    "orientation": info.orientation, "images": info.images_in_acquisition,
                    "frames": info.number_of_frames, "assoc": key, "calling": calling, "host": host}
            if self.journal.append(meta, chunks):
                return
        self.spool.write_atomic(path, chunks)
        try:
            if op == "quarantine":
                self.index.add_quarantine(info.sop_uid, str(path), QUARANTINE_REASON)
            else:
                self.index.add_instance(_record(info, ts, str(path), size - len(chunks[0])),
                                        str(path.parent), key, calling, host)
        except BaseException as exc:
            path.unlink(missing_ok=True)  # not indexed → not acknowledged → not kept
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise OutOfResources("index database full") from None
            raise

    def apply(self, records: list[Record], replay: bool = False) -> None:
        """The journal's applier: records → spool files and index rows, one batch, idempotent.

        A row is committed only after its file is synced, so a record whose row exists is
        done: at ``replay`` it is skipped even if its file was removed since (an old record of
        the active segment must not re-open a series that was processed long ago); a record
        without a row gets its file rewritten (renamed before a crash, maybe never synced)."""
        writes: list[tuple[Path, bytes]] = []
        instances, quarantined = [], []
        for record in records:
            m = record.meta
            path = self.spool.root / m["path"]
            if m["op"] == "instance":
                row = self.index.find_instance(m["sop_uid"])
                if (row is not None and row["sha256"] == m["sha256"]
                        and (replay or Path(row["path"]).is_file())):
                    continue
                rec = InstanceRecord(m["sop_uid"], m["sop_class"], m["series_uid"], m["study_uid"],
                                     str(path), m["sha256"], m["size"], m["ts"], m["number"],
                                     m["position"], m["orientation"], m["images"], m["frames"])
                instances.append((rec, str(path.parent), m["assoc"], m["calling"], m["host"], m["t"]))
            else:
                if not self.index.query("SELECT 1 FROM quarantine WHERE path=?", (str(path),)):
                    quarantined.append((m["sop_uid"], str(path), QUARANTINE_REASON, m["t"]))
            writes.append((path, record.payload()))
        self.spool.write_many(writes)
        self.index.add_received(instances, quarantined)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> int:
        """Start listening (non-blocking); returns the bound port."""
        if not self.cfg.allowed_calling:
            log.warning("no calling-AE allow-list configured: any calling AE is accepted")
        handlers: list[tuple[evt.EventType, Callable]] = [
            (evt.EVT_CONN_OPEN, self._on_conn_open), (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_RELEASED, self._on_released), (evt.EVT_ABORTED, self._ended),
            (evt.EVT_CONN_CLOSE, self._on_closed), (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_ACSE_RECV, self._on_acse_recv),
            (evt.EVT_C_STORE, self._on_store)]
        ssl_ctx = tls_context(self.cfg.tls) if self.cfg.tls else None
        # AE.start_server(block=False) with our server class (it hard-codes pynetdicom's own).
        self._server = self.ae.make_server((self.cfg.bind_address, self.cfg.port), evt_handlers=handlers,
                                           ssl_context=ssl_ctx, server_class=GuardedServer)
        self.ae._servers.append(self._server)  # AssociationServer.shutdown() removes it from there
        threading.Thread(target=self._server.serve_forever, name="dicom-acceptor", daemon=True).start()
        port = self._server.server_address[1]
        log.info("listening", extra={"ae_title": self.cfg.ae_title, "port": port, "tls": bool(ssl_ctx)})
        return port

    def stop(self, drain_s: float = 10.0) -> None:
        """Stop accepting, let open associations store for up to ``drain_s``, then refuse every
        C-STORE, A-ABORT the associations still open and wait (bounded) until no store handler
        runs and their threads ended; the index may be closed after this returns."""
        if self._server is None:
            return
        import socketserver

        server, self._server = self._server, None
        socketserver.BaseServer.shutdown(server)  # stop accepting, keep open associations
        deadline = time.monotonic() + drain_s
        while any(a.is_established for a in server.active_associations) and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._handling:
            self._stopping = True
        left = [a for a in server.active_associations if not (a.is_released or a.is_aborted)]
        for assoc in left:
            assoc.abort()
        if left:
            log.warning("associations aborted at shutdown", extra={"associations": len(left),
                                                                   "drain_s": drain_s})
        deadline = time.monotonic() + ABORT_WAIT_S
        with self._handling:
            self._handling.wait_for(lambda: self._in_store == 0, timeout=ABORT_WAIT_S)
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.02)
        server.server_close()
        if server in self.ae._servers:
            self.ae._servers.remove(server)


#: Status of a C-STORE arriving after the drain (0xA700 Refused: Out of Resources, PS3.4
#: B.2.3: transient, the scanner sends it again later).
STOPPING_STATUS = OutOfResources.status
#: How long stop waits for store handlers and association threads after the A-ABORTs (a
#: handler finishes its fsync; pynetdicom's threads end within their 1 ms loop).
ABORT_WAIT_S = 3.0


QUARANTINE_REASON = "same SOP Instance UID, other content"


def _record(info: Inspected, ts: str, path: str, size: int) -> InstanceRecord:
    return InstanceRecord(info.sop_uid, info.sop_class, info.series_uid, info.study_uid, path,
                          info.sha256, size, ts, info.instance_number, info.position_mm,
                          info.orientation, info.images_in_acquisition, info.number_of_frames)


def _assoc_key(event: evt.Event) -> str:
    return f"{id(event.assoc):x}-{event.assoc.native_id or 0}"
