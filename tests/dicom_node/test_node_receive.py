"""Receiving with real DCMTK peers: C-ECHO, allow-list, storescu of a phantom series."""

from __future__ import annotations

import pytest

import subprocess
import time
from pathlib import Path

from tests.dicom_node.conftest import NODELAY_ENV, storescu, wait_for
from dicom_node.spool import name_hash
from dicom_node.tools import dcmtk_command


def echoscu(port: int, calling: str, called: str = "WBSPINE") -> subprocess.CompletedProcess:
    return subprocess.run([dcmtk_command("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
                          env=NODELAY_ENV, capture_output=True, text=True, timeout=30)


@pytest.mark.fault(9)  # issue #9 catalogue (tests/faults/table.py)
def test_echo_allowed_and_unknown_calling_ae_rejected(start_node) -> None:
    node = start_node(node={"allowed_calling": ["SCANNER", "OTHER@10.9.9.9"]})
    assert echoscu(node.port, "SCANNER").returncode == 0
    denied = echoscu(node.port, "INTRUDER")
    assert denied.returncode != 0
    assert "Calling AE Title Not Recognized" in denied.stderr + denied.stdout
    # Allowed title but from another host → rejected as well.
    assert echoscu(node.port, "OTHER").returncode != 0
    wrong_called = echoscu(node.port, "SCANNER", called="NOTME")
    assert "Called AE Title Not Recognized" in wrong_called.stderr + wrong_called.stdout


def test_storescu_series_is_durable_indexed_and_completed_fast(start_node, series_dir: Path) -> None:
    node = start_node()
    files = sorted(series_dir.glob("*.dcm"))
    started = time.monotonic()
    storescu(node.port, series_dir)
    released = time.time()
    sent_s = time.monotonic() - started
    rows = node.index.query("SELECT sop_uid, path FROM instances")
    assert len(rows) == len(files)
    for row in rows:
        path = Path(row["path"])
        assert path.is_file() and path.name == f"{name_hash(row['sop_uid'])}.dcm"
        assert path.is_relative_to(node.spool.root / "series")
    series_uid = node.index.query("SELECT series_uid FROM series")[0][0]
    wait_for(lambda: series_uid in node.completed_at, timeout_s=10)
    latency = node.completed_at[series_uid] - released
    last = node.index.get_series(series_uid)["last_received"]
    after_last = node.completed_at[series_uid] - last
    print(f"\n{len(files)} instances in {sent_s:.2f} s ({len(files) / sent_s:.0f}/s); completion "
          f"{after_last * 1000:.0f} ms after the last instance, {latency * 1000:.0f} ms after storescu exited")
    assert after_last < 2.0 and latency < 2.0
    assert node.metrics.get("wbspine_instances_received_total") == len(files)
    assert not any((node.spool.root / "tmp").iterdir())


@pytest.mark.fault(13)  # issue #9 catalogue (tests/faults/table.py)
def test_resend_identical_is_one_copy_and_reopens_nothing_twice(start_node, short_series: Path) -> None:
    node = start_node()
    storescu(node.port, short_series)
    storescu(node.port, short_series)
    assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 40
    assert sum(1 for _ in (node.spool.root / "series").rglob("*.dcm")) == 40
    assert node.metrics.get("wbspine_instances_duplicate_total") == 40
