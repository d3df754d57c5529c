"""Receive throughput of the DICOM node vs DCMTK ``storescp``, same machine, same run.

Sender: DCMTK ``storescu -R`` with TCP_NODELAY=1 (one association, the whole series).
Every rate is the best of REPEATS; every ratio compares figures of this one run.

- ``storescp``: DCMTK, writes files without fsync (it has no such option) — the headline;
- ``durable_floor``: this disk's cost of making one instance durable, measured here on the
  same bytes: (a) new file + fsync + rename + dir fsync, (b) append into a pre-zeroed
  segment + fdatasync (what the node's journal does);
- ``storescp_durable``: the honest durable DCMTK baseline, storescp's time per instance plus
  floor (a) — what storescp would take if it made each file durable before answering
  (floors measured before and after the receivers; the lower, i.e. stricter, is used).
  (The earlier ``-xcr sync`` baseline forked a process per file and was unfairly slow.)
- ``pynetdicom_noop``: a stock pynetdicom SCP that discards each data set (the library's
  ceiling); ``pynetdicom_noop_tuned``: the same with the node's per-association trims
  (:mod:`dicom_node.dimse_fast`);
- ``node``: the NodeService in a child process (parse, checks, durable journal record, Success);
  ``node_no_journal``: file + dir fsync + SQLite commit per instance before Success;
  ``node_no_fsync``: no fsync at all (not durable; shows the cost of durability).
  ``--before DIR`` adds ``node_before`` from another source tree (e.g. a git worktree of an
  older commit), run the same way.
- ``cpu_ms_per_instance``: server and storescu CPU per instance (the rest of the wall time is
  waiting: thread hand-offs, polling, the disk);
- ``micro_ms``: per-call costs on the receive path (per PDU, per message, ours);
- ``node_handler_ms``: where the node's C-STORE handler spends its time (in-process run).

Run: ``python tests/benchmarks/bench_node.py [small] [full] [--before DIR]``; prints JSON.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections import defaultdict
from pathlib import Path

from appliance.phantom import generate_study, write_study
from dicom_node.ports import free_port
from dicom_node.tools import dcmtk_command

ENV = {**os.environ, "TCP_NODELAY": "1"}
REPEATS = 3
REPO = Path(__file__).resolve().parents[2]

#: Started in a child process with ``sys.path[0]`` = a source tree: prints the port, runs until stdin closes.
NODE_CHILD = """
import sys, json
sys.path.insert(0, sys.argv[1])
from dicom_node.config import build_config
from dicom_node.service import NodeService
cfg = build_config(json.loads(sys.argv[2]), environ={})
node = NodeService(cfg, lambda series_dir, work_dir: [])
print(node.start(), flush=True)
sys.stdin.read()
node.stop()
"""


def send(port: int, files: list[Path]) -> float:
    start = time.perf_counter()
    subprocess.run([dcmtk_command("storescu"), "-R", "-aet", "BENCH", "-aec", "WBSPINE", "127.0.0.1", str(port),
                    *map(str, files)], env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_storescp(files: list[Path], root: Path) -> dict:
    best, cpu = float("inf"), {}
    for i in range(REPEATS):
        out = root / f"scp{i}"
        out.mkdir()
        port = free_port()
        proc = subprocess.Popen([dcmtk_command("storescp"), "-aet", "WBSPINE", "-od", str(out), "+B", str(port)], env=ENV)
        try:
            for _ in range(100):
                if subprocess.run([dcmtk_command("echoscu"), "127.0.0.1", str(port)], env=ENV, capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
            c0, s0 = _children_cpu(), _proc_cpu(proc.pid)
            t = send(port, files)
            if t < best:
                best, cpu = t, {"server": _proc_cpu(proc.pid) - s0, "storescu": _children_cpu() - c0}
            assert len(list(out.iterdir())) == len(files)
        finally:
            proc.terminate()
            proc.wait()
        shutil.rmtree(out)
    return {"s": best, "cpu": cpu}


def durable_floor(files: list[Path], root: Path) -> dict:
    """Seconds per instance to make these bytes durable on this disk, best of REPEATS."""
    blobs = [f.read_bytes() for f in files]
    folder, tmp = root / "floor", root / "floor-tmp"

    def new_files() -> float:
        folder.mkdir()
        tmp.mkdir()
        start = time.perf_counter()
        for blob in blobs:
            part = tmp / f"{uuid.uuid4().hex}.part"
            with open(part, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(part, folder / f"{uuid.uuid4().hex}.dcm")
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)
        elapsed = time.perf_counter() - start
        shutil.rmtree(folder)
        shutil.rmtree(tmp)
        return elapsed / len(blobs)

    def journal() -> float:
        size = sum(len(b) + 4096 for b in blobs)
        path = root / "floor.wal"
        with open(path, "wb") as fh:
            fh.write(bytes(size))
            os.fsync(fh.fileno())
        fd = os.open(path, os.O_RDWR)
        offset = 0
        start = time.perf_counter()
        for blob in blobs:
            offset += os.pwrite(fd, blob, offset)
            os.fdatasync(fd)
        elapsed = time.perf_counter() - start
        os.close(fd)
        path.unlink()
        return elapsed / len(blobs)

    return {"new_file_fsync_rename_dirfsync_s": min(new_files() for _ in range(REPEATS)),
            "prezeroed_append_fdatasync_s": min(journal() for _ in range(REPEATS))}


def bench_pynetdicom_noop(files: list[Path], tuned: bool) -> dict:
    from pynetdicom import AE, evt

    from dicom_node import dimse_fast

    best, cpu = float("inf"), {}
    for _ in range(REPEATS):
        ae = AE(ae_title="WBSPINE")
        ae.maximum_pdu_size = 262_144
        ae.add_supported_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        port = free_port()

        def opened(event) -> None:
            event.assoc.dul._run_loop_delay = 0.0002  # same DUL tuning as the node
            if tuned:
                dimse_fast.tune(event.assoc)

        server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_CONN_OPEN, opened)])
        try:
            c0, s0 = _children_cpu(), _self_cpu()
            t = send(port, files)
            if t < best:
                best, cpu = t, {"server": _self_cpu() - s0, "storescu": _children_cpu() - c0}
        finally:
            server.shutdown()
    return {"s": best, "cpu": cpu}


def bench_node(files: list[Path], root: Path, src: Path, spool: dict) -> dict:
    import sqlite3

    best, cpu = float("inf"), {}
    for i in range(REPEATS):
        directory = root / f"node-{uuid.uuid4().hex[:8]}-{i}"
        cfg = {"node": {"port": free_port(), "bind_address": "127.0.0.1"},
               "spool": {"directory": str(directory), "min_free_mb": 0, **spool},
               "metrics": {"enabled": False}}
        proc = subprocess.Popen([sys.executable, "-c", NODE_CHILD, str(src), json.dumps(cfg)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, cwd=src)
        try:
            port = int(proc.stdout.readline())
            c0, s0 = _children_cpu(), _proc_cpu(proc.pid)
            t = send(port, files)
            if t < best:
                best, cpu = t, {"server": _proc_cpu(proc.pid) - s0, "storescu": _children_cpu() - c0}
        finally:
            proc.stdin.close()
            proc.wait(timeout=120)
        db = sqlite3.connect(directory / "index.sqlite")
        assert db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == len(files)
        db.close()
        shutil.rmtree(directory)
    return {"s": best, "cpu": cpu}


def micro(files: list[Path]) -> dict:
    """Milliseconds per call of the steps a received instance goes through."""
    from io import BytesIO

    from pydicom import dcmread
    from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import create_file_meta, encode, encode_file_meta
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    from dicom_node.dimse_fast import encode_store_rsp, part10_header
    from dicom_node.intake import inspect

    ds = dcmread(files[len(files) // 2])
    raw = files[len(files) // 2].read_bytes()
    body = raw[ds.file_meta["FileMetaInformationGroupLength"].value + 144:]
    cls, inst, ts = str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID)
    rq = C_STORE()
    rq.MessageID, rq.AffectedSOPClassUID, rq.AffectedSOPInstanceUID, rq.Priority = 1, cls, inst, 2
    rq.DataSet = BytesIO(body)
    msg = C_STORE_RQ()
    msg.primitive_to_message(rq)
    command = encode(msg.command_set, True, True)
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((1, b"\x02" + body))
    pdu = P_DATA_TF()
    pdu.from_primitive(pdata)
    pdu_bytes = pdu.encode()
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo, rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID, rsp.Status = 1, cls, inst, 0

    def rsp_pynetdicom() -> bytes:
        m = C_STORE_RSP()
        m.primitive_to_message(rsp)
        return encode(m.command_set, True, True)

    def command_decode() -> None:
        from pynetdicom.dsutils import decode
        decode(BytesIO(command), True, True)

    def pdu_decode() -> None:
        pdu = P_DATA_TF()
        pdu.decode(pdu_bytes)
        pdu.to_primitive()

    cases = {
        "pdata_pdu_decode_40kb": pdu_decode,
        "command_set_decode": command_decode,
        "store_rsp_encode_pynetdicom": rsp_pynetdicom,
        "store_rsp_encode_dimse_fast": lambda: encode_store_rsp(1, 0, cls, inst),
        "file_meta_pynetdicom": lambda: encode_file_meta(create_file_meta(
            sop_class_uid=cls, sop_instance_uid=inst, transfer_syntax=ts)),
        "file_meta_dimse_fast": lambda: part10_header(cls, inst, ts),
        "intake_inspect": lambda: inspect(body, ts, cls, inst),
    }
    out = {}
    for name, fn in cases.items():
        n = 200
        out[name] = round(1e3 * min(timeit.repeat(fn, number=n, repeat=REPEATS)) / n, 4)
    return out


def node_handler(files: list[Path], root: Path) -> dict:
    """Mean ms per instance in each step of the C-STORE handler (in-process node, this tree)."""
    import dicom_node.scp as scp
    from dicom_node.config import build_config
    from dicom_node.index import Index
    from dicom_node.journal import Journal
    from dicom_node.service import NodeService
    from dicom_node.spool import Spool

    spent: dict[str, float] = defaultdict(float)
    patched = []

    def wrap(owner: object, name: str, label: str) -> None:
        fn = getattr(owner, name)
        patched.append((owner, name, fn))

        def timed(*a, **k):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[label] += time.perf_counter() - t
        setattr(owner, name, timed)

    wrap(scp.StorageSCP, "_on_store", "handler_total")
    wrap(scp, "inspect", "parse_and_checks")
    wrap(scp.StorageSCP, "_known", "duplicate_lookup")
    wrap(scp.dimse_fast, "part10_header", "file_meta")
    wrap(Spool, "check_space", "watermark_check")
    wrap(Journal, "append", "journal_append_fdatasync")
    wrap(Spool, "write_atomic", "direct_file_fsync_rename_dirfsync")
    wrap(Index, "add_instance", "direct_sqlite_commit")
    wrap(scp.StorageSCP, "apply", "background_apply (not on the ack path)")
    out = {}
    try:
        for journal in (True, False):
            spent.clear()
            cfg = build_config({"node": {"port": free_port(), "bind_address": "127.0.0.1"},
                                "spool": {"directory": str(root / f"prof-{journal}"), "min_free_mb": 0,
                                          "journal": journal}, "metrics": {"enabled": False}}, environ={})
            node = NodeService(cfg, lambda series_dir, work_dir: [])
            node.start()
            try:
                wall = send(node.port, files)
            finally:
                node.stop()
            shutil.rmtree(root / f"prof-{journal}")
            out["journal" if journal else "no_journal"] = {
                "wall_per_instance": round(1e3 * wall / len(files), 3),
                **{k: round(1e3 * v / len(files), 3) for k, v in sorted(spent.items())}}
    finally:
        for owner, name, fn in patched:
            setattr(owner, name, fn)
    return out


def main() -> None:
    args = sys.argv[1:]
    before = None
    if "--before" in args:
        i = args.index("--before")
        before = Path(args[i + 1]).resolve()
        del args[i:i + 2]
    result: dict[str, dict] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                           "load_avg_at_start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        for size in args or ["small", "full"]:
            write_study(generate_study(1, size), root / size)
            files = sorted((root / size / "dicom").glob("*.dcm"))
            n = len(files)
            mb = sum(f.stat().st_size for f in files) / 2**20
            floor = durable_floor(files, root)
            runs = {"storescp": bench_storescp(files, root)}
            runs["pynetdicom_noop"] = bench_pynetdicom_noop(files, tuned=False)
            runs["pynetdicom_noop_tuned"] = bench_pynetdicom_noop(files, tuned=True)
            runs["node"] = bench_node(files, root, REPO, {"fsync": True, "journal": True})
            runs["node_no_journal"] = bench_node(files, root, REPO, {"fsync": True, "journal": False})
            runs["node_no_fsync"] = bench_node(files, root, REPO, {"fsync": False})
            if before is not None:
                runs["node_before"] = bench_node(files, root, before, {"fsync": True})
            # the disk's floor again at the end; the faster of the two (the stricter baseline)
            floor = {k: min(v, w) for (k, v), w in zip(floor.items(), durable_floor(files, root).values(),
                                                       strict=True)}
            scp_s = runs["storescp"]["s"] / n
            durable_s = scp_s + floor["new_file_fsync_rename_dirfsync_s"]
            rate = {k: round(n / v["s"], 1) for k, v in runs.items()}
            rate["storescp_durable"] = round(1 / durable_s, 1)
            result[size] = {
                "instances": n, "mb": round(mb, 1),
                "inst_per_s": rate,
                "durable_floor_ms": {k.removesuffix("_s"): round(1e3 * v, 3) for k, v in floor.items()},
                "ratios": {
                    **{f"{k}_vs_storescp": round(rate[k] / rate["storescp"], 3)
                       for k in runs if k.startswith("node")},
                    **{f"{k}_vs_storescp_durable": round(rate[k] / rate["storescp_durable"], 3)
                       for k in runs if k.startswith("node")},
                    "node_vs_pynetdicom_noop": round(rate["node"] / rate["pynetdicom_noop"], 3),
                    "node_vs_pynetdicom_noop_tuned": round(rate["node"] / rate["pynetdicom_noop_tuned"], 3)},
                "cpu_ms_per_instance": {k: {p: round(1e3 * c / n, 3) for p, c in v["cpu"].items()}
                                        for k, v in runs.items()},
                "micro_ms": micro(files),
                "node_handler_ms": node_handler(files, root),
            }
            shutil.rmtree(root / size)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
