"""Cases 28 and 29: SIGTERM while a scanner is sending and while a job is inferring (issue #19
items 3 and 4): exit 0 within the stop timeout, nothing answered after the index closed, the
partial series not processed, the interrupted job requeued; both processed once after restart.

Real peers: storescu (DCMTK) as the scanner, the node as a process; case 29 runs the appliance
pipeline (ONNX Runtime, smoothed oracle test bundle) as the processor.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.config import StopConfig
from dicom_node.tools import dcmtk_command
from tests.appliance.inference.inference_helpers import make_bundle
from tests.dicom_node.conftest import NODELAY_ENV, free_port, storescu, wait_for
from tests.dicom_node.test_node_crash import NodeProcess, acknowledged

STOP_TIMEOUT_S = StopConfig().timeout_s  # systemd TimeoutStopSec / docker stop -t
#: Seconds after the job starts when the pipeline is inside ONNX Runtime (reading the small
#: phantom takes about 1 s; the whole job, tens of seconds on two cores).
INFERENCE_AFTER_S = 4.0
ENCAPSULATED_STL = "1.2.840.10008.5.1.4.1.1.104.3"


def crashpoint_node(tmp_path: Path, control: Path, **env: str) -> NodeProcess:
    node = NodeProcess(tmp_path / "spool", control, free_port(), free_port())  # the PACS stays down
    node.cmd[node.cmd.index("node_processor:make_processor")] = "tests.faults.crashpoint:make_processor"
    node.env.update(env)
    return node


def node_log(tmp_path: Path) -> str:
    return (tmp_path / "node.log").read_text(errors="replace")


@pytest.mark.fault(28)
def test_sigterm_mid_association_aborts_after_the_drain_and_delivers_nothing(series_dir: Path,
                                                                             tmp_path: Path) -> None:
    files = sorted(series_dir.glob("*.dcm"))
    control = tmp_path / "control"
    control.mkdir()
    (control / "slow-store").write_text("0.05")  # ≈ 17 s for the series: still sending after the drain
    node = crashpoint_node(tmp_path, control, WBSPINE_STOP__DRAIN_S="1").start()
    try:
        sender = subprocess.Popen([dcmtk_command("storescu"), "-v", "-R", "-aet", "SCANNER", "-aec", "WBSPINE",
                                   "127.0.0.1", str(node.port), *map(str, files)], env=NODELAY_ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: node.query("SELECT COUNT(*) FROM instances")[0][0] >= 30, timeout_s=60, interval_s=0.02)
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=STOP_TIMEOUT_S) == 0, node_log(tmp_path)[-3000:]
        out, _ = sender.communicate(timeout=30)
        acked = acknowledged(out)
        assert 30 <= len(acked) < len(files), out[-2000:]      # aborted part-way, not allowed to finish
        assert "c211" not in out.lower(), out[-2000:]           # no store answered after the index closed
        log = node_log(tmp_path)
        assert "closed database" not in log and "0xC211" not in log, log[-3000:]
        assert "associations aborted at shutdown" in log
        assert node.query("SELECT COUNT(*) FROM jobs")[0][0] == 0  # the partial series is not processed
        assert node.query("SELECT COUNT(*) FROM instances")[0][0] >= len(acked)  # every Success kept
        (control / "slow-store").unlink()
        node.start()
        assert node.query("SELECT state FROM series") == [("receiving",)]
        storescu(node.port, files)                              # the scanner resends the series
        wait_for(lambda: node.query("SELECT state FROM jobs") in ([("sending",)], [("done",)]), timeout_s=60)
        assert node.query("SELECT COUNT(*) FROM jobs")[0][0] == 1
        (derived,) = [p for (p,) in node.query(f"SELECT path FROM outbox WHERE sop_class != '{ENCAPSULATED_STL}'")]
        assert dcmread(derived).ImageComments == f"{len(files)} input instances"  # the whole series, once
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "b", window=(16, 32, 32), spacing=(2.5, 2.5, 2.5),
                       oracle="smoothed")


@pytest.mark.fault(29)
def test_sigterm_during_inference_exits_0_and_the_job_runs_at_the_next_start(series_dir: Path, bundle: Path,
                                                                              tmp_path: Path) -> None:
    control = tmp_path / "control"
    control.mkdir()
    (control / "processor").write_text(f"appliance.pipeline:make_processor\n{bundle}")
    node = crashpoint_node(tmp_path, control, WBSPINE_STOP__JOB_GRACE_S="0").start()
    try:
        storescu(node.port, series_dir)
        wait_for(lambda: node.query("SELECT state FROM jobs") == [("running",)], timeout_s=30, interval_s=0.02)
        time.sleep(INFERENCE_AFTER_S)                           # past reading the series: inferring
        assert node.query("SELECT state FROM jobs") == [("running",)]
        node.proc.send_signal(signal.SIGTERM)                   # ONNX Runtime's threads are running
        assert node.proc.wait(timeout=STOP_TIMEOUT_S) == 0, node_log(tmp_path)[-3000:]
        assert node.query("SELECT state, reason FROM jobs") == [("queued", "requeued at shutdown")]
        assert node.query("SELECT COUNT(*) FROM outbox")[0][0] == 0
        node.start()
        wait_for(lambda: node.query("SELECT state FROM jobs") in ([("sending",)], [("done",)], [("failed",)]),
                 timeout_s=240, interval_s=0.2)
        assert node.query("SELECT state, attempts FROM jobs") == [("sending", 2)], node_log(tmp_path)[-3000:]
        assert node.query("SELECT COUNT(*) FROM outbox")[0][0] >= 3  # SEG, SR, STL … once
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()


@pytest.mark.fault(29)
def test_sigterm_lets_a_job_finish_within_the_grace(series_dir: Path, tmp_path: Path) -> None:
    control = tmp_path / "control"
    control.mkdir()
    (control / "slow").write_text("3")  # the test processor sleeps 3 s: well inside stop.job_grace_s
    node = crashpoint_node(tmp_path, control).start()
    try:
        storescu(node.port, sorted(series_dir.glob("*.dcm"))[:40])
        wait_for(lambda: (control / "started").exists(), timeout_s=30, interval_s=0.02)
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=STOP_TIMEOUT_S) == 0, node_log(tmp_path)[-3000:]
        assert node.query("SELECT state, attempts FROM jobs") == [("sending", 1)]  # finished, results queued
        assert node.query("SELECT COUNT(*) FROM outbox WHERE state='pending'")[0][0] == 2
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()
