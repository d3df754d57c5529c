"""Fixtures for the DICOM node: a phantom series, free ports, an in-process node, Orthanc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_node.config import build_config
from dicom_node.ports import free_port  # noqa: F401  (re-exported for the tests)
from dicom_node.service import NodeService
from dicom_node.tools import dcmtk_command

HERE = Path(__file__).parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from tests.dicom_node.node_processor import make_processor  # noqa: E402

NODELAY_ENV = {**os.environ, "TCP_NODELAY": "1"}


@pytest.fixture(scope="session")
def series_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small phantom CT series (≈ 330 files of 140×140)."""
    from appliance.phantom import generate_study, write_study

    out = tmp_path_factory.mktemp("phantom")
    write_study(generate_study(4, "small"), out)
    return out / "dicom"


@pytest.fixture(scope="session")
def short_series(tmp_path_factory: pytest.TempPathFactory, series_dir: Path) -> Path:
    """The first 40 slices of the phantom: a consistent, quick series."""
    from pydicom import dcmread

    out = tmp_path_factory.mktemp("short")
    for f in sorted(series_dir.glob("*.dcm"))[:40]:
        shutil.copy(f, out / f.name)
    assert dcmread(next(out.glob("*.dcm"))).Modality == "CT"
    return out


def node_config(spool_dir: Path, port: int, **sections: dict) -> dict:
    data = {"node": {"ae_title": "WBSPINE", "port": port, "bind_address": "127.0.0.1"},
            "spool": {"directory": str(spool_dir), "min_free_mb": 0, "max_used_percent": 100},
            "series": {"idle_timeout_s": 3, "poll_interval_s": 0.1},
            "send": {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "connect_timeout_s": 3},
            "metrics": {"port": None}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator:
    """``start_node(**sections)`` → a running in-process NodeService (stopped afterwards)."""
    nodes: list[NodeService] = []

    def start(control: Path | None = None, **sections: dict) -> NodeService:
        cfg = build_config(node_config(tmp_path / "spool", free_port(), **sections), environ={})
        node = NodeService(cfg, make_processor(control))
        node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def storescu(port: int, files: list[Path] | Path, calling: str = "SCANNER", called: str = "WBSPINE",
             check: bool = True, options: list[str] = ()) -> subprocess.CompletedProcess:
    paths = [str(files)] if isinstance(files, Path) else [str(f) for f in files]
    cmd = [dcmtk_command("storescu"), "-R", *options, "-aet", calling, "-aec", called, "127.0.0.1", str(port), *paths]
    if isinstance(files, Path) and files.is_dir():
        cmd[1:1] = ["+sd", "+r"]
    proc = subprocess.run(cmd, env=NODELAY_ENV, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def wait_for(predicate, timeout_s: float = 20.0, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


class Orthanc:
    """A throw-away Orthanc (PACS or scanner) on 127.0.0.1 with its own database."""

    def __init__(self, root: Path, modalities: dict[str, tuple[str, int]]) -> None:
        self.root, self.modalities = root, modalities
        self.dicom_port, self.http_port = free_port(), free_port()
        self.aet = "ORTHANC"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        cfg = {"Name": "wbspine-test", "DicomAet": self.aet, "DicomPort": self.dicom_port,
               "HttpPort": self.http_port, "StorageDirectory": str(self.root / "db"),
               "IndexDirectory": str(self.root / "db"), "RemoteAccessAllowed": False,
               "AuthenticationEnabled": False, "DicomCheckCalledAet": False,
               "DicomModalities": {k: [ae, "127.0.0.1", p] for k, (ae, p) in self.modalities.items()},
               "StableAge": 1, "HttpTimeout": 60}
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "orthanc.json").write_text(json.dumps(cfg))
        log = open(self.root / "orthanc.log", "ab")
        self.proc = subprocess.Popen(["Orthanc", str(self.root / "orthanc.json")], env=NODELAY_ENV,
                                     stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._up, timeout_s=20, interval_s=0.05)
        return self

    def _up(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            assert self.proc is not None and self.proc.poll() is None, "Orthanc exited"
            return False

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: bytes, ctype: str = "application/json"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body,
                                     headers={"Content-Type": ctype}, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read() or b"null")

    def instance_tags(self) -> list[dict]:
        return [self.get(f"/instances/{i}/simplified-tags") for i in self.get("/instances")]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None
