"""Durable on-disk spool: temp file → fsync → atomic rename → directory fsync.

Received instances reach it through the journal (:mod:`dicom_node.journal`): the C-STORE
is acknowledged once the journal record is durable, and :meth:`Spool.write_many` writes
files in batches in the background (a direct :meth:`Spool.write_atomic` when the journal
is off or an instance does not fit a segment).

Layout under the spool root (every name is derived from a SHA-256, never from a raw UID)::

    index.sqlite                 the SQLite index (WAL)
    journal/<seq>.wal            write-ahead journal segments (pre-zeroed, fdatasync per record)
    series/<h(series)>/<h(sop)>.dcm   received instances, one folder per series
    quarantine/<h(sop)>-<sha>.dcm     conflicting resends (same SOP Instance UID, other content)
    work/job-<id>/               processor output per job
    tmp/                         partial writes; emptied at start
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path

from dicom_node.errors import OutOfResources

log = logging.getLogger(__name__)

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def name_hash(value: str, length: int = 40) -> str:
    """A file-system-safe name for an untrusted string (hex SHA-256 prefix)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The node's spool folder, with a free-space watermark checked before each write."""

    def __init__(self, root: Path, *, fsync: bool = True, min_free_mb: int = 0,
                 max_used_percent: float = 100.0) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.min_free_bytes = int(min_free_mb) * 1024 * 1024
        self.max_used_percent = float(max_used_percent)
        for sub in ("series", "quarantine", "work", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def index_path(self) -> Path:
        return self.root / "index.sqlite"

    def clean_tmp(self) -> int:
        """Remove partial writes left by a crash; returns how many."""
        removed = 0
        for part in (self.root / "tmp").iterdir():
            part.unlink(missing_ok=True)
            removed += 1
        return removed

    def series_dir(self, series_uid: str) -> Path:
        return self.root / "series" / name_hash(series_uid, 32)

    def instance_path(self, series_uid: str, sop_uid: str) -> Path:
        return self.series_dir(series_uid) / f"{name_hash(sop_uid)}.dcm"

    def quarantine_path(self, sop_uid: str, sha256: str) -> Path:
        return self.root / "quarantine" / f"{name_hash(sop_uid)}-{sha256[:16]}.dcm"

    def work_dir(self, job_id: int) -> Path:
        return self.root / "work" / f"job-{int(job_id)}"

    def check_space(self, nbytes: int) -> None:
        """Raise OutOfResources (A700) if writing ``nbytes`` would cross the watermark."""
        usage = shutil.disk_usage(self.root)
        used_after = (usage.used + nbytes) * 100.0 / max(usage.total, 1)
        if usage.free - nbytes < self.min_free_bytes or used_after > self.max_used_percent:
            raise OutOfResources(
                f"spool above watermark: {usage.free // 2**20} MiB free, "
                f"{used_after:.1f}% used after write (limits {self.min_free_bytes // 2**20} MiB, "
                f"{self.max_used_percent:.1f}%)")

    def write_atomic(self, dest: Path, chunks: list[bytes]) -> None:
        """Write ``chunks`` to ``dest`` so that ``dest`` is either absent or complete and durable."""
        self.check_space(sum(len(c) for c in chunks))
        parent = dest.parent
        created = not parent.exists()
        tmp = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            if created:
                parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            if self.fsync:
                fsync_dir(parent)
                if created:
                    fsync_dir(parent.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in _NO_SPACE:
                raise OutOfResources(f"no space left while writing ({exc.strerror})") from None
            raise

    def write_many(self, items: list[tuple[Path, bytes]]) -> None:
        """Durably write a batch of files (the journal's applier; the bytes are journaled).

        Writes and renames every file, then makes the whole batch durable with one
        ``syncfs`` of the spool file system (one journal commit instead of a file fsync and a
        directory fsync per instance; per-file fsyncs where ``syncfs`` is missing). Until
        this returns a file may be empty after a crash: the index rows are committed only
        afterwards, and journal replay rewrites the file of every record without a row.
        No watermark check: the bytes were accepted already.
        """
        if not items:
            return
        dirs: set[Path] = set()
        tmp = None
        try:
            for dest, data in items:
                tmp = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    if self.fsync and _syncfs is None:
                        os.fsync(fh.fileno())
                if dest.parent not in dirs:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dirs.add(dest.parent)
                os.replace(tmp, dest)
                tmp = None
            if self.fsync:
                if _syncfs is not None:
                    sync_filesystem(self.root)
                else:
                    for parent in dirs:
                        fsync_dir(parent)
                        fsync_dir(parent.parent)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if exc.errno in _NO_SPACE:
                raise OutOfResources(f"no space left while writing ({exc.strerror})") from None
            raise


def _load_syncfs():  # type: ignore[no-untyped-def]
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
        fn.argtypes = [ctypes.c_int]
        return fn
    except (AttributeError, OSError):
        return None


_syncfs = _load_syncfs()


def sync_filesystem(path: Path) -> None:
    """``syncfs(2)``: every dirty page and metadata change of the file system holding ``path``."""
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)
