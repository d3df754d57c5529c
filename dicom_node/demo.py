"""`make demo`: the whole loop on one machine, with real DICOM peers on 127.0.0.1.

scanner simulator (DCMTK ``storescu``, else pynetdicom) → ``wbspine serve`` (a real
node process with the default model bundle) → local PACS (Orthanc when installed, else
a pynetdicom storage SCP) — then the measurements next to the phantom's planted truth,
where every result went, and the time from the last instance received to the last
result acknowledged by the PACS, by stage.

Run: ``python -m dicom_node.demo --out demo-out`` (``--size small`` for a quick loop).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dicom_node.errors import WbspineError
from dicom_node.ports import free_port
from dicom_node.tools import dcmtk

SCANNER_AE, NODE_AE, PACS_AE = "CBCT_SIM", "WBSPINE", "DEMO_PACS"
#: Parameters printed in the table: (measurements key, label).
PARAMETERS = (("cobb.angle_deg", "Cobb angle (major curve)"), ("thoracic_kyphosis_deg", "Thoracic kyphosis T1-T12"),
              ("thoracic_kyphosis_t4_t12_deg", "Thoracic kyphosis T4-T12"),
              ("lumbar_lordosis_deg", "Lumbar lordosis L1-L5"), ("lumbar_lordosis_l1_s1_deg", "Lumbar lordosis L1-S1"),
              ("sacral_slope_deg", "Sacral slope"), ("pelvic_tilt_deg", "Pelvic tilt"),
              ("pelvic_incidence_deg", "Pelvic incidence"))


class DemoError(WbspineError):
    """The demo loop could not finish (a peer did not start, the job failed, a timeout)."""


def _wait(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise DemoError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@dataclass
class LocalPacs:
    """Orthanc (when installed) or a pynetdicom storage SCP, on 127.0.0.1."""

    root: Path
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    kind: str = ""
    _proc: subprocess.Popen | None = None
    _server: object | None = None

    def start(self) -> "LocalPacs":
        self.root.mkdir(parents=True, exist_ok=True)
        if shutil.which("Orthanc"):
            self.kind = "Orthanc"
            cfg = {"Name": "wbspine-demo-pacs", "DicomAet": PACS_AE, "DicomPort": self.port,
                   "HttpPort": self.http_port, "StorageDirectory": str(self.root / "orthanc-db"),
                   "IndexDirectory": str(self.root / "orthanc-db"), "RemoteAccessAllowed": False,
                   "AuthenticationEnabled": False, "DicomCheckCalledAet": False}
            (self.root / "orthanc.json").write_text(json.dumps(cfg, indent=1))
            log = open(self.root / "orthanc.log", "ab")
            self._proc = subprocess.Popen(["Orthanc", str(self.root / "orthanc.json")], stdout=log,
                                          stderr=subprocess.STDOUT)
            _wait(self._orthanc_up, 30, "Orthanc to start")
        else:
            self.kind = "pynetdicom storage SCP"
            self._server = _storage_scp(self.root / "received", self.port)
        return self

    def _orthanc_up(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise DemoError(f"Orthanc exited (see {self.root / 'orthanc.log'})")
        try:
            self._get("/system")
            return True
        except OSError:
            return False

    def _get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=30) as r:
            return json.loads(r.read())

    def received(self) -> list[dict]:
        """Modality and SOP Class of every instance the PACS holds."""
        if self.kind == "Orthanc":
            tags = (self._get(f"/instances/{i}/simplified-tags") for i in self._get("/instances"))
            return [{k: v for k, v in t.items() if k in ("Modality", "SOPClassUID", "SeriesDescription")}
                    for t in tags]
        from pydicom import dcmread

        return [{k: str(getattr(ds, k, "")) for k in ("Modality", "SOPClassUID", "SeriesDescription")}
                for ds in (dcmread(p, stop_before_pixels=True) for p in sorted((self.root / "received").glob("*.dcm")))]

    def where(self) -> str:
        if self.kind == "Orthanc":
            return f"Orthanc {PACS_AE}@127.0.0.1:{self.port}, web UI http://127.0.0.1:{self.http_port}/"
        return f"storage SCP {PACS_AE}@127.0.0.1:{self.port}, files in {self.root / 'received'}"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._server is not None:
            self._server.shutdown()


def _storage_scp(folder: Path, port: int):
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    folder.mkdir(parents=True, exist_ok=True)

    def on_store(event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        return 0x0000

    ae = AE(ae_title=PACS_AE)
    ae.supported_contexts = AllStoragePresentationContexts
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])


def send_series(series_dir: Path, port: int) -> float:
    """The scanner: one association with every file of the series; returns seconds."""
    files = sorted(str(p) for p in series_dir.glob("*.dcm"))
    t = time.perf_counter()
    storescu = dcmtk("storescu")
    if storescu:
        proc = subprocess.run([storescu, "-aet", SCANNER_AE, "-aec", NODE_AE, "127.0.0.1", str(port), *files],
                              capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"})
        if proc.returncode != 0:
            raise DemoError(f"storescu failed: {proc.stderr[-1000:]}")
    else:
        from pydicom import dcmread
        from pynetdicom import AE
        from pynetdicom.sop_class import CTImageStorage

        ae = AE(ae_title=SCANNER_AE)
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
        if not assoc.is_established:
            raise DemoError("the node refused the scanner's association")
        try:
            for f in files:
                status = assoc.send_c_store(dcmread(f))
                if getattr(status, "Status", None) != 0x0000:
                    raise DemoError(f"C-STORE of {Path(f).name} failed: {status}")
        finally:
            assoc.release()
    return time.perf_counter() - t


def _value(m: dict, dotted: str):
    for part in dotted.split("."):
        m = m.get(part) if isinstance(m, dict) else None
    return m


def report(measured: dict, truth: dict) -> str:
    """Measured vs planted truth, one row per parameter."""
    lines = [f"{'parameter':<28} {'measured':>9} {'truth':>9} {'error':>7}"]
    for key, label in PARAMETERS:
        got, want = _value(measured, key), _value(truth, key)
        err = f"{got - want:+7.2f}" if None not in (got, want) else "      -"
        lines.append(f"{label:<28} {_fmt(got):>9} {_fmt(want):>9} {err}")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}°"


def run_demo(out: Path, seed: int = 1, size: str = "full", bundle: Path | None = None,
             timeout_s: float = 1800.0) -> dict:
    from appliance.phantom import generate_study, write_study
    from dicom_node.service import spool_index

    out = out.resolve()
    phantom_dir = out / f"phantom-seed{seed}-{size}"
    if not (phantom_dir / "truth.json").exists() or not any((phantom_dir / "dicom").glob("*.dcm")):
        print(f"generating the {size} phantom (seed {seed}) ...", flush=True)
        write_study(generate_study(seed, size), phantom_dir)
    truth = json.loads((phantom_dir / "truth.json").read_text())
    for stale in ("spool", "pacs", "stl"):
        shutil.rmtree(out / stale, ignore_errors=True)

    pacs = LocalPacs(out / "pacs").start()
    node_port = free_port()
    cmd = [sys.executable, "-m", "appliance.cli", "serve", "--ae-title", NODE_AE, "--port", str(node_port),
           "--bind", "127.0.0.1", "--spool", str(out / "spool"), "--allow-calling-ae", SCANNER_AE,
           "--destination", f"{PACS_AE}@127.0.0.1:{pacs.port}", "--stl-dir", str(out / "stl"),
           "--idle-timeout", "10"]
    if bundle is not None:
        cmd += ["--bundle", str(bundle)]
    node_log = open(out / "node.log", "ab")
    node = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: _listening(node_port, node, out), 60, "the node to listen")
        print(f"node {NODE_AE}@127.0.0.1:{node_port} up; PACS: {pacs.where()}", flush=True)
        n_files = len(list((phantom_dir / "dicom").glob("*.dcm")))
        send_s = send_series(phantom_dir / "dicom", node_port)
        print(f"scanner sent {n_files} instances in {send_s:.1f} s ({n_files / send_s:.0f} instances/s)", flush=True)
        index = spool_index(out / "spool")
        job = _wait(lambda: _finished_job(index), timeout_s, "the job to finish", interval_s=0.5)
        if job["state"] == "failed":
            raise DemoError(f"the job failed: {job['reason']} (see {out / 'node.log'})")
        return _summary(index, job, out, truth, pacs)
    finally:
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        pacs.stop()


def _listening(port: int, proc: subprocess.Popen, out: Path) -> bool:
    if proc.poll() is not None:
        raise DemoError(f"the node exited with {proc.returncode} (see {out / 'node.log'})")
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _finished_job(index):
    jobs = index.list_jobs()
    return next((j for j in jobs if j["state"] in ("done", "failed")), None)


def _summary(index, job, out: Path, truth: dict, pacs: LocalPacs) -> dict:
    work = out / "spool" / "work" / f"job-{job['id']}"
    measured = json.loads((work / "measurements.json").read_text())
    timing = json.loads((work / "timing.json").read_text())
    series = index.query("SELECT last_received, completed_at FROM series WHERE series_uid=?",
                         (job["series_uid"],))[0]
    sent = index.query("SELECT COUNT(*), MAX(sent_at) FROM outbox WHERE job_id=? AND state='sent'", (job["id"],))[0]
    last = series["last_received"]
    stages = {
        "series complete (after last instance)": series["completed_at"] - last,
        "queue → job start": job["started_at"] - series["completed_at"],
        **{f"  {k.removesuffix('_s')}": v for k, v in timing["timing_s"].items() if k != "total_s"},
        "processing (total)": timing["timing_s"]["total_s"],
        "sending to PACS (until last ack)": sent[1] - job["started_at"] - timing["timing_s"]["total_s"],
        "last instance → last result acknowledged": sent[1] - last,
    }
    received = pacs.received()
    print("\n" + report(measured, truth))
    for w in measured.get("warnings", []):
        print(f"  warning: {w}")
    print("\nTime, last instance received → last result acknowledged by the PACS:")
    for name, seconds in stages.items():
        print(f"  {name:<44} {seconds:8.2f} s")
    print(f"\nPACS ({pacs.where()}) holds {len(received)} results:")
    for item in received:
        print(f"  {item.get('Modality', '?'):<4} {item.get('SeriesDescription', '')}")
    print(f"STL for 3D printing: {out / 'stl'}\nwork folder (labels, measurements, timing): {work}\n"
          f"node log: {out / 'node.log'}")
    return {"measurements": measured, "truth": truth, "stages_s": stages, "pacs": received,
            "results_sent": sent[0], "work_dir": str(work), "engine": timing.get("engine")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dicom_node.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--size", choices=("small", "full"), default="full")
    p.add_argument("--bundle", type=Path, help="model bundle (default: the embedded default model)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the results")
    args = p.parse_args(argv)
    try:
        result = run_demo(args.out, args.seed, args.size, args.bundle, args.timeout)
    except WbspineError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    (args.out / "demo-summary.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
