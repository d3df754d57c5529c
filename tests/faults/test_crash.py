"""SIGKILL at exact points around the C-STORE response (case 12).

The random-point kills while receiving, while a job runs and while results are sent are in
tests/dicom_node/test_node_crash.py (referenced by the catalogue).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.dicom_node.conftest import NODELAY_ENV, free_port, storescu, wait_for
from tests.dicom_node.test_node_crash import NodeProcess, acknowledged
from dicom_node.tools import dcmtk_command


@pytest.mark.fault(12)
@pytest.mark.parametrize("point", ["before-success", "after-success"])
def test_sigkill_just_before_or_after_success_loses_nothing_acknowledged(
        point: str, short_series: Path, tmp_path: Path) -> None:
    control = tmp_path / "control"
    control.mkdir()
    n = 7
    (control / "crash").write_text(f"{point} {n}")
    node = NodeProcess(tmp_path / "spool", control, free_port(), free_port())
    node.cmd[node.cmd.index("node_processor:make_processor")] = "tests.faults.crashpoint:make_processor"
    files = sorted(short_series.glob("*.dcm"))
    node.start()
    try:
        sent = subprocess.run([dcmtk_command("storescu"), "-v", "-R", "-aet", "SCANNER", "-aec", "WBSPINE", "127.0.0.1",
                               str(node.port), *map(str, files)], env=NODELAY_ENV, capture_output=True,
                              text=True, timeout=60)
        node.proc.wait(timeout=10)
        acked = acknowledged(sent.stdout + sent.stderr)
        journaled = any((node.spool / "journal").glob("*.wal"))
        (control / "crash").unlink()
        node.start()                                        # replays the journal
        committed = node.query("SELECT COUNT(*) FROM instances")[0][0]
        if point == "before-success":
            assert len(acked) == n - 1 and committed == n   # the n-th is durable, never acknowledged
        else:
            assert len(acked) == n and committed == n       # killed the moment the n-th Success was out
        assert journaled                                    # the node ran with its journal
        assert not any((node.spool / "journal").glob("*.tmp"))
        stored = dict(node.query("SELECT sop_uid, path FROM instances"))
        for f in acked:
            src = dcmread(f)
            assert dcmread(stored[str(src.SOPInstanceUID)]).PixelData == src.PixelData
        assert not any((node.spool / "tmp").iterdir())
        storescu(node.port, files)                          # the scanner resends everything
        wait_for(lambda: node.query("SELECT state FROM jobs") == [("sending",)], timeout_s=30)
        assert node.query("SELECT COUNT(*) FROM instances")[0][0] == len(files)
        assert sum(1 for _ in (node.spool / "series").rglob("*.dcm")) == len(files)  # one copy each
        assert node.query("SELECT COUNT(*) FROM quarantine")[0][0] == 0             # resends are identical
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()
