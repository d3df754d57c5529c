"""Load: N simulated scanners send studies at once while the worker is busy.

Each scanner is a DCMTK ``storescu`` (TCP_NODELAY) sending K studies of S slices one after
another; the node runs the test processor with a planted delay per job (the worker stays
busy) and sends results to a DCMTK ``storescp`` PACS. Checks: every acknowledged instance
kept, every result delivered, no association refused below the maximum. Prints one JSON
object: instances/s, queue depth over time, peak RSS of the node process (it runs in this
process; storescu/storescp are separate).

Run: ``python tests/benchmarks/bench_faults_load.py [SCANNERS] [STUDIES_PER_SCANNER] [SLICES] [JOB_DELAY_S]``
(defaults 8 3 40 0.5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.*

from pydicom import dcmread  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from appliance.phantom import generate_study, write_study  # noqa: E402
from dicom_node.config import build_config  # noqa: E402
from dicom_node.service import NodeService  # noqa: E402
from tests.dicom_node.conftest import free_port, node_config  # noqa: E402
from tests.dicom_node.node_processor import make_processor  # noqa: E402
from dicom_node.tools import dcmtk_command

ENV = {**os.environ, "TCP_NODELAY": "1"}


def rss_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_studies(root: Path, n: int, slices: int) -> list[Path]:
    write_study(generate_study(4, "small"), root / "phantom")
    source = sorted((root / "phantom" / "dicom").glob("*.dcm"))[:slices]
    templates = [dcmread(f) for f in source]
    out = []
    for k in range(n):
        d = root / f"study{k}"
        d.mkdir()
        study, series = generate_uid(), generate_uid()
        for i, ds in enumerate(templates):
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(d / f"{i:04d}.dcm", enforce_file_format=True)
        out.append(d)
    return out


def main() -> None:
    scanners, per_scanner, slices, delay = 8, 3, 40, 0.5
    args = sys.argv[1:]
    if args:
        scanners, per_scanner, slices, delay = (int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    root = Path(tempfile.mkdtemp(prefix="wbspine-load-"))
    studies = make_studies(root, scanners * per_scanner, slices)
    control = root / "control"
    control.mkdir()
    (control / "slow").write_text(str(delay))
    pacs_port, pacs_dir = free_port(), root / "pacs"
    pacs_dir.mkdir()
    pacs = subprocess.Popen([dcmtk_command("storescp"), "-aet", "PACS", "-od", str(pacs_dir), "+B", str(pacs_port)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = build_config(node_config(root / "spool", free_port(), node={"max_associations": scanners},
                                   series={"idle_timeout_s": 5},
                                   send={"destinations": [f"PACS@127.0.0.1:{pacs_port}"]}), environ={})
    node = NodeService(cfg, make_processor(control))
    node.start()
    Path("/proc/self/clear_refs").write_text("5")
    rss_start = rss_mb("VmRSS:")
    depth: list[tuple[float, int, int]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not done.wait(0.5):
            depth.append((round(time.monotonic() - t0, 1), node.worker.queue_depth(), node.sender.pending()))

    sampler = threading.Thread(target=sample)
    sampler.start()
    results: list[subprocess.CompletedProcess] = []

    def scanner(k: int) -> None:
        for d in studies[k * per_scanner:(k + 1) * per_scanner]:
            results.append(subprocess.run([dcmtk_command("storescu"), "-R", "-aet", f"SCANNER{k}", "-aec", "WBSPINE", "127.0.0.1",
                                           str(node.port), *sorted(map(str, d.glob("*.dcm")))],
                                          env=ENV, capture_output=True, text=True))

    threads = [threading.Thread(target=scanner, args=(k,)) for k in range(scanners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    received_s = time.monotonic() - t0
    n_instances = scanners * per_scanner * slices
    sent_ok = sum(1 for r in results if r.returncode == 0)  # studies whose storescu succeeded
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        states = [r["state"] for r in node.index.list_jobs()]
        if len(states) >= sent_ok and all(s in ("done", "failed") for s in states):
            break
        time.sleep(0.2)
    total_s = time.monotonic() - t0
    done.set()
    sampler.join()
    stored = node.index.query("SELECT COUNT(*) FROM instances")[0][0]
    jobs = [r["state"] for r in node.index.list_jobs()]
    delivered = sum(1 for _ in pacs_dir.iterdir())
    refused = [r.stderr[-300:] for r in results if r.returncode != 0]
    node.stop()
    pacs.terminate()
    pacs.wait()
    report = {
        "scanners": scanners, "studies": len(studies), "instances_sent": n_instances,
        "instances_kept": stored, "storescu_failures": len(refused), "refusals": refused[:3],
        "receive_s": round(received_s, 2), "instances_per_s": round(n_instances / received_s, 1),
        "jobs": {s: jobs.count(s) for s in set(jobs)}, "results_delivered": delivered,
        "results_expected": 2 * len(studies), "all_done_s": round(total_s, 2),
        "job_delay_s": delay, "peak_queue_depth": max((d for _, d, _ in depth), default=0),
        "peak_outbox_pending": max((p for *_, p in depth), default=0),
        "queue_depth_over_time": depth[:: max(1, len(depth) // 30)],
        "rss_start_mb": round(rss_start, 1), "peak_rss_mb": round(rss_mb("VmHWM:"), 1),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=1))
    ok = stored == n_instances and not refused and delivered == 2 * len(studies) and set(jobs) == {"done"}
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
