"""SIGTERM while a scanner is sending and a job is running: the association finishes, every
instance is kept, the process exits 0, and the interrupted job runs at the next start."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.dicom_node.conftest import NODELAY_ENV, free_port, wait_for
from tests.dicom_node.test_node_crash import NodeProcess, acknowledged
from dicom_node.tools import dcmtk_command


def test_sigterm_finishes_the_association_and_keeps_the_queue(series_dir: Path, tmp_path: Path) -> None:
    files = sorted(series_dir.glob("*.dcm"))[:150]
    control = tmp_path / "control"
    control.mkdir()
    (control / "slow").write_text("60")  # the job is still running when SIGTERM arrives
    node = NodeProcess(tmp_path / "spool", control, free_port(), free_port()).start()
    try:
        sender = subprocess.Popen([dcmtk_command("storescu"), "-v", "-R", "-aet", "SCANNER", "-aec", "WBSPINE", "127.0.0.1",
                                   str(node.port), *map(str, files)], env=NODELAY_ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: node.query("SELECT COUNT(*) FROM instances")[0][0] >= 20, timeout_s=60, interval_s=0.01)
        node.proc.send_signal(signal.SIGTERM)
        out, _ = sender.communicate(timeout=60)
        assert sender.returncode == 0, out[-2000:]  # the open association was allowed to finish
        assert len(acknowledged(out)) == len(files)
        assert node.proc.wait(timeout=30) == 0
        assert node.query("SELECT COUNT(*) FROM instances")[0][0] == len(files)
        assert not any((node.spool / "tmp").iterdir())
        # The series completed when the association ended; its job is kept for the next start.
        states = [s for (s,) in node.query("SELECT state FROM jobs")]
        assert states in (["queued"], ["running"]), states
        (control / "slow").unlink()
        node.start()
        wait_for(lambda: node.query("SELECT state FROM jobs")[0][0] in ("sending", "done"), timeout_s=30)
        assert node.query("SELECT COUNT(*) FROM jobs")[0][0] == 1
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()
