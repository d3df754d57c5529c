"""Fixtures of the fault suite: the DICOM node fixtures, one CT data set, a tiny filesystem."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.dicom_node.conftest import series_dir, short_series, start_node  # noqa: F401  (fixtures)


@pytest.fixture
def one_ct(short_series: Path) -> Dataset:  # noqa: F811
    """The first slice of the short phantom series (fresh copy per test)."""
    return dcmread(sorted(short_series.glob("*.dcm"))[0])


@pytest.fixture
def cts(short_series: Path) -> list[Dataset]:  # noqa: F811
    """All 40 slices of the short phantom series as data sets."""
    return [dcmread(f) for f in sorted(short_series.glob("*.dcm"))]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@contextmanager
def peak_rss_growth_mb() -> Iterator[list[float]]:
    """Yield a list that receives this process's peak-RSS growth (MiB) over the block.

    Resets the kernel's high-water mark (``/proc/self/clear_refs`` 5) first, so an earlier
    peak of the test session cannot hide one caused inside the block.
    """
    def status(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"{key} not in /proc/self/status")

    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS:")
    out: list[float] = []
    yield out
    out.append(status("VmHWM:") - before)


def association_threads(node) -> list[str]:
    """Names of the node's association threads still alive (pynetdicom's acceptor threads)."""
    server = node.scp._server
    return [] if server is None else [t.name for t in server.active_associations]


def wait_threads_gone(node, timeout_s: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while association_threads(node) and time.monotonic() < deadline:
        time.sleep(0.05)
    return association_threads(node)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for this test (root only: CI and the box's build machine are)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"cannot mount a tmpfs (needs root): {proc.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/faults must name its catalogue case(s)."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here) and item.get_closest_marker("fault") is None:
            raise pytest.UsageError(f"{item.nodeid} has no @pytest.mark.fault(case) marker")





def thread_stacks() -> str:
    """Stacks of every live thread (for assertion messages)."""
    import sys
    import traceback

    frames = sys._current_frames()
    return "\n".join(f"{t.name}:\n{''.join(traceback.format_stack(frames[t.ident], limit=5))}"
                     for t in threading.enumerate() if t.ident in frames)
