"""SIGKILL the node (a subprocess) while receiving and while a job runs; nothing acknowledged is lost."""

from __future__ import annotations

import pytest

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from pydicom import dcmread

from tests.dicom_node.conftest import HERE, NODELAY_ENV, REPO, Orthanc, free_port, storescu, wait_for
from dicom_node.tools import dcmtk_command


class NodeProcess:
    def __init__(self, spool: Path, control: Path, port: int, pacs_port: int) -> None:
        self.cmd = [sys.executable, "-m", "dicom_node", "serve", "--port", str(port), "--bind", "127.0.0.1",
                    "--spool", str(spool), "--processor", "node_processor:make_processor",
                    "--bundle", str(control), "--destination", f"ORTHANC@127.0.0.1:{pacs_port}",
                    "--idle-timeout", "60", "--metrics-port", "0"]  # no idle completion of the partial series
        self.env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}",
                    "WBSPINE_SEND__BACKOFF_INITIAL_S": "0.2", "WBSPINE_SPOOL__MIN_FREE_MB": "0",
                    "WBSPINE_SPOOL__MAX_USED_PERCENT": "100"}
        self.spool, self.port, self.proc = spool, port, None
        self.log = open(spool.parent / "node.log", "ab")

    def start(self) -> NodeProcess:
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._listening, timeout_s=30)
        return self

    def _listening(self) -> bool:
        assert self.proc.poll() is None, (self.spool.parent / "node.log").read_text()[-3000:]
        return subprocess.run([dcmtk_command("echoscu"), "127.0.0.1", str(self.port), "-aec", "WBSPINE"], env=NODELAY_ENV,
                              capture_output=True).returncode == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def query(self, sql: str) -> list:
        db = sqlite3.connect(self.spool / "index.sqlite", timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


def acknowledged(storescu_log: str) -> list[Path]:
    """Files storescu saw a Success response for (``-v`` output)."""
    acked, current = [], None
    for line in storescu_log.splitlines():
        if m := re.search(r"Sending file: (.+)$", line):
            current = Path(m.group(1).strip())
        elif "Received Store Response (Success)" in line and current is not None:
            acked.append(current)
            current = None
    return acked


@pytest.mark.fault(12)  # issue #9 catalogue (tests/faults/table.py)
def test_sigkill_while_receiving_processing_and_sending(series_dir: Path, tmp_path: Path) -> None:
    pacs = Orthanc(tmp_path / "pacs", {})  # the PACS is down until step 3
    control = tmp_path / "control"
    control.mkdir()
    node = NodeProcess(tmp_path / "spool", control, free_port(), pacs.dicom_port).start()
    try:
        # 1. Kill while a series is arriving.
        files = sorted(series_dir.glob("*.dcm"))
        sender = subprocess.Popen([dcmtk_command("storescu"), "-v", "-R", "-aet", "SCANNER", "-aec", "WBSPINE", "127.0.0.1",
                                   str(node.port), *map(str, files)], env=NODELAY_ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: node.query("SELECT COUNT(*) FROM instances")[0][0] >= 100, timeout_s=60, interval_s=0.01)
        node.kill()
        out, _ = sender.communicate(timeout=60)
        acked = acknowledged(out)
        assert 50 <= len(acked) < len(files)  # committed-but-unacknowledged instances are fine
        node.start()
        stored = dict(node.query("SELECT sop_uid, path FROM instances"))
        for f in acked:
            src = dcmread(f)
            kept = dcmread(stored[str(src.SOPInstanceUID)])
            assert kept.PixelData == src.PixelData
        assert not any((node.spool / "tmp").iterdir())
        print(f"\nkilled after {len(acked)} acknowledged instances; all {len(acked)} present after restart")
        # 2. The scanner resends everything; kill while the job runs.
        (control / "slow").write_text("60")
        storescu(node.port, series_dir)
        wait_for(lambda: (control / "started").exists(), timeout_s=30)
        assert node.query("SELECT state FROM jobs") == [("running",)]
        node.kill()
        (control / "slow").unlink()
        node.start()
        # 3. The job reruns; its results wait in the outbox (PACS down); kill while sending.
        wait_for(lambda: node.query("SELECT MAX(attempts) FROM outbox")[0][0], timeout_s=30)
        assert node.query("SELECT state FROM jobs") == [("sending",)]
        node.kill()
        pacs.start()
        node.start()
        wait_for(lambda: node.query("SELECT state FROM jobs") == [("done",)], timeout_s=30)
        assert node.query("SELECT COUNT(*) FROM instances")[0][0] == len(files)
        assert node.query("SELECT attempts FROM jobs") == [(2,)]
        assert node.query("SELECT state FROM outbox") == [("sent",), ("sent",)]
        assert len(pacs.get("/instances")) == 2
        # 4. SIGTERM: graceful stop, exit status 0.
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=20) == 0
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()
        pacs.stop()
