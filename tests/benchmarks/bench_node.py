"""Receive throughput of the DICOM node vs DCMTK ``storescp``, same machine, same run.

Sender: DCMTK ``storescu -R`` with TCP_NODELAY=1 (one association, the whole series).
Receivers, best of REPEATS each:
- ``storescp``: DCMTK, writes files without fsync (it has no such option);
- ``storescp_sync``: DCMTK with ``-xcr "sync FILE DIR" -xs`` (fsync per file before the
  response, plus a fork/exec per file) — the nearest durable DCMTK baseline;
- ``pynetdicom_noop``: a pynetdicom AE that discards each data set (the library's ceiling);
- ``node_fsync``: the NodeService (parse, checks, temp file + fsync + rename + dir fsync,
  SQLite commit with synchronous=FULL, then Success); ``node_no_fsync``: same, spool fsync off.
Prints one JSON object. Run: ``python tests/benchmarks/bench_node.py [small] [full]``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.phantom import generate_study, write_study
from dicom_node.config import build_config
from dicom_node.service import NodeService

ENV = {**os.environ, "TCP_NODELAY": "1"}
REPEATS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(port: int, files: list[Path]) -> float:
    start = time.perf_counter()
    subprocess.run(["storescu", "-R", "-aet", "BENCH", "-aec", "WBSPINE", "127.0.0.1", str(port),
                    *map(str, files)], env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_storescp(files: list[Path], root: Path, sync: bool = False) -> float:
    best = float("inf")
    for i in range(REPEATS):
        out = root / f"scp{i}"
        out.mkdir()
        port = free_port()
        extra = ["-xcr", "/usr/bin/sync #p/#f #p", "-xs"] if sync else []
        proc = subprocess.Popen(["storescp", "-aet", "WBSPINE", "-od", str(out), "+B", *extra, str(port)],
                                env=ENV)
        try:
            for _ in range(100):
                if subprocess.run(["echoscu", "127.0.0.1", str(port)], env=ENV, capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
            best = min(best, send(port, files))
            assert len(list(out.iterdir())) == len(files)
        finally:
            proc.terminate()
            proc.wait()
        shutil.rmtree(out)
    return best


def bench_pynetdicom_noop(files: list[Path]) -> float:
    from pynetdicom import AE, evt

    best = float("inf")
    for _ in range(REPEATS):
        ae = AE(ae_title="WBSPINE")
        ae.maximum_pdu_size = 262_144
        ae.add_supported_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        port = free_port()

        def fast(event) -> None:
            event.assoc.dul._run_loop_delay = 0.0002  # same tuning as the node

        server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_CONN_OPEN, fast)])
        try:
            best = min(best, send(port, files))
        finally:
            server.shutdown()
    return best


def bench_node(files: list[Path], root: Path, fsync: bool) -> float:
    best = float("inf")
    for i in range(REPEATS):
        spool = root / f"node{i}-{fsync}"
        cfg = build_config({"node": {"port": free_port(), "bind_address": "127.0.0.1"},
                            "spool": {"directory": str(spool), "min_free_mb": 0, "fsync": fsync},
                            "metrics": {"enabled": False}}, environ={})
        node = NodeService(cfg, lambda series_dir, work_dir: [])
        node.start()
        try:
            best = min(best, send(node.port, files))
            assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == len(files)
        finally:
            node.stop()
        shutil.rmtree(spool)
    return best


def main() -> None:
    result: dict[str, dict] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    sizes = sys.argv[1:] or ["small", "full"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for size in sizes:
            write_study(generate_study(1, size), root / size)
            files = sorted((root / size / "dicom").glob("*.dcm"))
            mb = sum(f.stat().st_size for f in files) / 2**20
            scp = bench_storescp(files, root)
            scp_sync = bench_storescp(files, root, sync=True)
            noop = bench_pynetdicom_noop(files)
            node = bench_node(files, root, fsync=True)
            node_nofsync = bench_node(files, root, fsync=False)
            result[size] = {
                "instances": len(files), "mb": round(mb, 1),
                "storescp_inst_per_s": round(len(files) / scp, 1),
                "storescp_sync_inst_per_s": round(len(files) / scp_sync, 1),
                "pynetdicom_noop_inst_per_s": round(len(files) / noop, 1),
                "node_fsync_inst_per_s": round(len(files) / node, 1),
                "node_no_fsync_inst_per_s": round(len(files) / node_nofsync, 1),
                "ratio_node_fsync_vs_storescp": round(scp / node, 2),
                "ratio_node_fsync_vs_storescp_sync": round(scp_sync / node, 2),
                "storescp_mb_per_s": round(mb / scp, 1), "node_fsync_mb_per_s": round(mb / node, 1),
            }
            shutil.rmtree(root / size)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
