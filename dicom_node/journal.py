"""Write-ahead journal of received instances: one ``fdatasync`` per C-STORE instead of a
file + directory fsync and a SQLite commit.

A C-STORE is acknowledged once its record is durable here; a background thread then
materialises records into spool files and index rows (:func:`apply`, batched) and deletes
segments whose records are all applied. At start, :meth:`Journal.replay` applies whatever
a crash left behind; applying is idempotent, so a record applied twice is harmless.

Segments (``journal/<seq>.wal``) are written full of zeros and fsynced *before* use, so an
append overwrites allocated blocks and ``fdatasync`` has no file metadata to commit (on
this disk 0.16 ms for 40 KB, against 0.6–0.9 ms for a new file + fsync + rename + dir fsync).
The next segment is prepared in the background while the active one fills.

Record: ``<4s magic><Q segment seq><I meta length><Q data length><I crc32>`` (28 bytes),
then the JSON metadata, then the data. The CRC covers the header's first 24 bytes, the
metadata and the data. Reading stops at the first record that is not whole and valid (zero
magic = end of log, bad CRC or length = torn write): records are written one after the
other under a lock and each is acknowledged only after an ``fdatasync`` that started after
its write, so every acknowledged record precedes the first bad one.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dicom_node.spool import fsync_dir

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"WBSPJRN1"
SEGMENT_HEADER = struct.Struct("<8sQ")  # magic, sequence number
SEGMENT_DATA_START = 4096
RECORD_MAGIC = b"WBJR"
RECORD_HEADER = struct.Struct("<4sQIQI")
#: Largest metadata part accepted when reading (caps what a corrupt length can make us allocate).
MAX_META_BYTES = 1 << 20
_ZEROS = bytes(1 << 20)


@dataclass
class Record:
    """One journaled operation: JSON-able ``meta`` and the bytes it carries."""

    meta: dict
    data: bytes
    segment: int = 0
    chunks: list[bytes] = field(default_factory=list, repr=False)

    def payload(self) -> bytes:
        return self.data if not self.chunks else b"".join(self.chunks)


def _crc(header24: bytes, parts: list[bytes]) -> int:
    crc = zlib.crc32(header24)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def encode_record(seq: int, meta: dict, chunks: list[bytes]) -> list[bytes]:
    """The byte parts of one record (header, metadata, data chunks)."""
    meta_b = json.dumps(meta, separators=(",", ":")).encode()
    data_len = sum(len(c) for c in chunks)
    head24 = RECORD_HEADER.pack(RECORD_MAGIC, seq, len(meta_b), data_len, 0)[:24]
    crc = _crc(head24, [meta_b, *chunks])
    return [head24 + struct.pack("<I", crc), meta_b, *chunks]


def read_segment(path: Path) -> Iterator[tuple[int, Record]]:
    """Yield ``(end offset, record)`` for each whole, valid record of a segment, in order."""
    with open(path, "rb") as fh:
        head = fh.read(SEGMENT_HEADER.size)
        if len(head) < SEGMENT_HEADER.size:
            return
        magic, seq = SEGMENT_HEADER.unpack(head)
        if magic != SEGMENT_MAGIC:
            return
        size = os.fstat(fh.fileno()).st_size
        offset = SEGMENT_DATA_START
        while offset + RECORD_HEADER.size <= size:
            fh.seek(offset)
            header = fh.read(RECORD_HEADER.size)
            magic, rseq, meta_len, data_len, crc = RECORD_HEADER.unpack(header)
            end = offset + RECORD_HEADER.size + meta_len + data_len
            if magic != RECORD_MAGIC or rseq != seq or meta_len > MAX_META_BYTES or end > size:
                if magic != b"\0\0\0\0":
                    log.warning("journal: torn or invalid record ends the log",
                                extra={"segment": path.name, "offset": offset})
                return
            meta_b, data = fh.read(meta_len), fh.read(data_len)
            if _crc(header[:24], [meta_b, data]) != crc:
                log.warning("journal: record with a bad checksum ends the log",
                            extra={"segment": path.name, "offset": offset})
                return
            try:
                meta = json.loads(meta_b)
            except ValueError:
                return
            yield end, Record(meta, data, seq)
            offset = end


class _Segment:
    def __init__(self, path: Path, seq: int, fd: int, size: int) -> None:
        self.path, self.seq, self.fd, self.size = path, seq, fd, size
        self.offset = SEGMENT_DATA_START
        self.appended = 0  # records written
        self.applied = 0   # records materialised
        self.sealed = False
        self.syncing = 0   # appends between their write and their fdatasync (fd must stay open)


class Journal:
    """Durable append-only log with a background applier.

    ``apply(records, replay)`` must make a batch durable elsewhere (files + index) and be
    idempotent (``replay`` is True at start: the records of the active segment were mostly
    applied long ago, the last ones maybe half);
    ``reserve(nbytes)`` is called before a new segment is made (raise to refuse, e.g. a
    disk watermark). ``key`` names the record field used by :meth:`pending`.
    """

    def __init__(self, directory: Path, segment_bytes: int, apply: Callable[[list[Record], bool], None],
                 reserve: Callable[[int], None] = lambda n: None, key: str = "sop_uid",
                 max_batch: int = 64, linger_s: float = 0.05) -> None:
        self.dir = Path(directory)
        self.segment_bytes = max(int(segment_bytes), 2 * SEGMENT_DATA_START)
        self.apply, self.reserve, self.key, self.max_batch = apply, reserve, key, max_batch
        self.linger_s = linger_s
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()        # append order and segment switches
        self._cond = threading.Condition()    # queue of records to apply
        self._queue: deque[Record] = deque()
        self._pending: dict[str, dict] = {}
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._spare: Path | None = None
        self._spare_retry_at = 0.0
        self._appended = self._applied = 0
        self._stop = False
        self._urgent = 0  # flush() callers waiting: apply now, no lingering
        self._thread: threading.Thread | None = None
        self._seq = max((self._seq_of(p) for p in self.dir.glob("*.wal")), default=0)

    @staticmethod
    def _seq_of(path: Path) -> int:
        try:
            return int(path.stem)
        except ValueError:
            return 0

    # -- start: replay -----------------------------------------------------------------
    def replay(self) -> int:
        """Apply every valid record left in the segments (oldest first), then remove them."""
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        n = 0
        for path in sorted(self.dir.glob("*.wal"), key=self._seq_of):
            batch: list[Record] = []
            for _, record in read_segment(path):
                batch.append(record)
                if len(batch) >= self.max_batch:
                    self.apply(batch, True)
                    n += len(batch)
                    batch = []
            if batch:
                self.apply(batch, True)
                n += len(batch)
            path.unlink()
        fsync_dir(self.dir)
        if n:
            log.info("journal replayed", extra={"records": n})
        return n

    def start(self) -> None:
        """Make the first segment (raises OSError/DicomStatusError if it cannot) and start applying."""
        with self._lock:
            self._roll()
        self._thread = threading.Thread(target=self._run, name="journal-apply", daemon=True)
        self._thread.start()

    # -- append (the acknowledgement path) --------------------------------------------
    def append(self, meta: dict, chunks: list[bytes]) -> bool:
        """Durably log one record; False if it does not fit a segment (caller writes directly)."""
        size = RECORD_HEADER.size + sum(len(c) for c in chunks) + 4096  # + metadata, generous
        if size > self.segment_bytes - SEGMENT_DATA_START:
            return False
        with self._lock:
            seg = self._active
            if seg is None or seg.offset + size > seg.size:
                if seg is not None:
                    seg.sealed, self._active = True, None
                if self._thread is None:
                    return False  # not started or closed
                try:
                    seg = self._roll()
                except Exception as exc:  # e.g. disk above the watermark: write directly
                    log.warning("journal: cannot open a new segment", extra={"reason": str(exc)[:200]})
                    return False
            parts = encode_record(seg.seq, meta, chunks)
            length = sum(len(p) for p in parts)
            written = os.pwritev(seg.fd, parts, seg.offset)
            if written != length:
                raise OSError(f"short journal write ({written} of {length} bytes)")
            seg.offset += length
            seg.appended += 1
            seg.syncing += 1
            record = Record(meta, b"", seg.seq, chunks)
            key = meta.get(self.key)
            with self._cond:
                if key is not None:
                    self._pending[key] = meta
                self._queue.append(record)
                self._appended += 1
        try:
            os.fdatasync(seg.fd)  # group commit: covers this record and everything before it
        finally:
            with self._lock:
                seg.syncing -= 1
        with self._cond:
            self._cond.notify_all()
        return True

    def pending(self, key: str) -> dict | None:
        """Metadata of the latest not yet applied record with this key."""
        with self._cond:
            return self._pending.get(key)

    def _roll(self) -> _Segment:
        """Open the next segment (the prepared spare if there is one). Caller holds ``_lock``."""
        self._seq += 1
        path = self.dir / f"{self._seq:016d}.wal"
        spare, self._spare = self._spare, None
        if spare is None:
            spare = self._make_spare()
        fd = os.open(spare, os.O_RDWR)
        try:
            os.pwrite(fd, SEGMENT_HEADER.pack(SEGMENT_MAGIC, self._seq), 0)
            os.fdatasync(fd)
            os.replace(spare, path)
            fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            raise
        seg = _Segment(path, self._seq, fd, self.segment_bytes)
        self._segments[seg.seq] = seg
        self._active = seg
        return seg

    def _make_spare(self) -> Path:
        """A zero-filled, fsynced segment file (no header yet: not part of the log)."""
        self.reserve(self.segment_bytes)
        path = self.dir / f"spare-{os.getpid()}-{threading.get_ident()}.tmp"
        try:
            with open(path, "wb") as fh:
                left = self.segment_bytes
                while left > 0:
                    left -= fh.write(_ZEROS[:min(left, len(_ZEROS))])
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    # -- background: apply, prepare, clean --------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stop:
                    self._cond.wait(0.5)
                deadline = time.monotonic() + self.linger_s  # gather a bigger batch: fewer syncs
                while 0 < len(self._queue) < self.max_batch and not self._stop and not self._urgent:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stop and not self._queue:
                    return
                batch = [self._queue[i] for i in range(min(len(self._queue), self.max_batch))]
            if not batch:
                self._prepare_spare()
                continue
            try:
                self.apply(batch, False)
            except Exception:
                log.exception("journal: applying records failed; retrying")
                with self._cond:
                    self._cond.wait(1.0)
                continue
            with self._cond:
                for record in batch:
                    self._queue.popleft()
                    key = record.meta.get(self.key)
                    if key is not None and self._pending.get(key) is record.meta:
                        del self._pending[key]
                    self._segments[record.segment].applied += 1
                self._applied += len(batch)
                self._cond.notify_all()
            self._drop_applied_segments()
            self._prepare_spare()

    def _prepare_spare(self) -> None:
        seg = self._active
        if (self._spare is not None or seg is None or seg.offset < seg.size // 2
                or time.monotonic() < self._spare_retry_at):
            return
        try:
            spare = self._make_spare()
        except Exception as exc:  # full disk: the roll will try again, on the ack path
            log.warning("journal: cannot prepare the next segment", extra={"reason": str(exc)[:200]})
            self._spare_retry_at = time.monotonic() + 10.0
            return
        with self._lock:
            if self._spare is None:
                self._spare = spare
            else:
                spare.unlink(missing_ok=True)

    def _drop_applied_segments(self) -> None:
        with self._lock:
            done = [s for s in self._segments.values()
                    if s.sealed and s.applied == s.appended and not s.syncing]
            for seg in done:
                del self._segments[seg.seq]
                os.close(seg.fd)
                seg.path.unlink(missing_ok=True)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every record appended so far is applied; False on timeout."""
        with self._cond:
            target = self._appended
            self._urgent += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._applied >= target or self._thread is None,
                                           timeout_s)
            finally:
                self._urgent -= 1

    def close(self) -> None:
        """Apply what is queued, stop the applier, remove applied segments."""
        if self._thread is not None:
            self.flush()
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            for seg in list(self._segments.values()):
                seg.sealed = True
            self._active = None
        self._drop_applied_segments()
        if self._spare is not None:
            self._spare.unlink(missing_ok=True)
            self._spare = None
