"""``wbspine doctor``: every check seen failing and passing against real files, sockets and DICOM peers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import doctor
from dicom_node.config import Destination, build_config
from dicom_node.service import NodeService
from tests.appliance.inference.inference_helpers import make_bundle, rewrite_manifest
from tests.dicom_node.conftest import free_port, node_config, wait_for
from tests.dicom_node.node_processor import make_processor
from dicom_node.tools import dcmtk_command

WBSPINE = Path(sys.executable).with_name("wbspine")


def _echo_ok(port: int) -> bool:
    return subprocess.run([dcmtk_command("echoscu"), "-aec", "PACS", "127.0.0.1", str(port)], capture_output=True).returncode == 0


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[int]:
    """DCMTK's storescp as a PACS (AE PACS) on 127.0.0.1; yields its port."""
    port = free_port()
    out = tmp_path / "pacs-in"
    out.mkdir()
    proc = subprocess.Popen([dcmtk_command("storescp"), "-aet", "PACS", "-od", str(out), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _echo_ok(port), timeout_s=10)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeService]:
    """A running wbspine node (AE WBSPINE, called AE enforced) with /metrics on a free port."""
    cfg = build_config(node_config(tmp_path / "node-spool", free_port(), metrics={"port": 0}), environ={})
    service = NodeService(cfg, make_processor(None))
    service.start()
    yield service
    service.stop()


def test_line_has_the_fix_only_when_something_is_wrong() -> None:
    assert doctor.ok("x", "fine").line().startswith("OK    x")
    line = doctor.fail("spool", "not writable", "chown it").line()
    assert line.startswith("FAIL  spool") and line.endswith("-> fix: chown it") and "\n" not in line


# --- python ----------------------------------------------------------------------------

def test_python_dependencies_of_this_install_pass() -> None:
    result = doctor.check_python()
    assert result.status == "ok", result.line()
    assert "requirements met" in result.detail


def test_python_missing_old_and_broken_packages_fail() -> None:
    result = doctor.check_python(["numpy>=999", "wbspine-no-such-package>=1"], modules=("json", "no_such_module_x"))
    assert result.status == "fail"
    assert "numpy" in result.detail and "needs >=999" in result.detail
    assert "wbspine-no-such-package missing" in result.detail
    assert "import no_such_module_x failed" in result.detail
    assert "pip install" in result.fix


# --- onnxruntime -----------------------------------------------------------------------

def test_onnxruntime_on_this_machine() -> None:
    result = doctor.check_onnxruntime()
    assert result.status != "fail", result.line()
    assert "CPU" in result.detail


def test_require_gpu_fails_without_a_visible_gpu_or_provider() -> None:
    import onnxruntime as ort

    gpus = doctor.visible_gpus()
    gpu_provider = any(p in ort.get_available_providers() for p in doctor.GPU_PROVIDERS)
    result = doctor.check_onnxruntime(require_gpu=True)
    assert (result.status == "fail") == (not gpus or not gpu_provider), result.line()


def test_onnxruntime_provider_and_gpu_combinations() -> None:
    cpu, cuda = "CPUExecutionProvider", "CUDAExecutionProvider"
    assert doctor.check_onnxruntime(providers=[cpu], gpus=[]).status == "ok"
    assert doctor.check_onnxruntime(providers=[cuda], gpus=["GPU 0"]).status == "fail"  # CPU provider gone
    lone_gpu = doctor.check_onnxruntime(providers=[cpu], gpus=["GPU 0: NVIDIA L4"])
    assert lone_gpu.status == "warn" and "GPU image" in lone_gpu.fix
    assert doctor.check_onnxruntime(providers=[cuda, cpu], gpus=[]).status == "warn"
    assert doctor.check_onnxruntime(True, providers=[cuda, cpu], gpus=["GPU 0"]).status == "ok"
    assert "GPU image" in doctor.check_onnxruntime(True, providers=[cpu], gpus=["GPU 0"]).fix


def test_openvino_on_this_machine_and_without_a_cpu_device() -> None:
    result = doctor.check_openvino()
    assert result.status == "ok" and "CPU" in result.detail, result.line()
    no_cpu = doctor.check_openvino(devices=["GPU"], version="2026.4.0")
    assert no_cpu.status == "warn" and "ONNX Runtime" in no_cpu.detail


def test_openvino_missing_is_a_warning_with_the_fix(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    result = doctor.check_openvino()
    assert result.status == "warn" and "pip install openvino" in result.fix and "ONNX Runtime" in result.detail


# --- bundle ----------------------------------------------------------------------------

def test_valid_bundle_passes_and_loads(tmp_path: Path) -> None:
    result = doctor.check_bundle(make_bundle(tmp_path / "bundle"))
    assert result.status == "ok", result.line()
    assert "test-threshold 0.0.1" in result.detail and "loads in ONNX Runtime" in result.detail


def test_bundle_with_a_modified_model_fails_on_its_hash(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    model.write_bytes(bytes(data))
    result = doctor.check_bundle(bundle)
    assert result.status == "fail" and "[hash_mismatch]" in result.detail and "model.onnx" in result.detail
    assert "copy it again" in result.fix


def test_absent_bundle_fails_clearly(tmp_path: Path) -> None:
    result = doctor.check_bundle(tmp_path / "no-bundle")
    assert result.status == "fail" and "[not_found]" in result.detail and "Swap the model bundle" in result.fix


def test_bundle_whose_manifest_names_other_tensors_fails(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    rewrite_manifest(bundle, io={"input_name": "volume", "output_name": "logits", "layout": "NCDHW",
                                 "num_classes": 4, "output": "logits"})
    result = doctor.check_bundle(bundle)
    assert result.status == "fail" and "do not match the manifest" in result.detail
    assert doctor.check_bundle(bundle, load_model=False).status == "ok"  # schema and hashes alone pass


# --- spool and disk --------------------------------------------------------------------

def test_writable_spool_passes_with_fsync_and_leaves_nothing(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    result = doctor.check_spool(spool)
    assert result.status == "ok" and "fsync works" in result.detail
    assert list(spool.iterdir()) == []


def test_missing_spool_is_a_warning_and_a_file_is_a_failure(tmp_path: Path) -> None:
    assert doctor.check_spool(tmp_path / "a" / "spool").status == "warn"
    assert not (tmp_path / "a").exists()  # the doctor creates nothing
    (tmp_path / "file").write_text("x")
    assert doctor.check_spool(tmp_path / "file").status == "fail"


def test_unwritable_spool_fails_with_a_chown_fix() -> None:
    """As root, run the check as 'nobody' on a root-owned spool (the container/volume mistake);
    as another user, on a read-only folder."""
    base = Path(tempfile.mkdtemp(prefix="wbspine-doctor-"))
    try:
        base.chmod(0o755)
        spool = base / "spool"
        spool.mkdir(mode=0o755)
        if os.getuid() == 0:
            code = ("import sys; from pathlib import Path; from appliance.doctor import check_spool; "
                    "print(check_spool(Path(sys.argv[1])).line())")
            proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                   sys.executable, "-c", code, str(spool)],
                                  capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
            assert proc.returncode == 0, proc.stderr
            line = proc.stdout.strip()
        else:
            spool.chmod(0o555)
            line = doctor.check_spool(spool).line()
        assert line.startswith("FAIL  spool"), line
        assert "not writable by uid" in line and f"chown -R {65534 if os.getuid() == 0 else os.getuid()}" in line
    finally:
        (base / "spool").chmod(0o755)
        shutil.rmtree(base)


def test_disk_space_thresholds(tmp_path: Path) -> None:
    assert doctor.check_disk(tmp_path, min_free_mb=0, max_used_percent=100).status == "ok"
    low = doctor.check_disk(tmp_path, min_free_mb=10**9, max_used_percent=100)
    assert low.status == "fail" and "refuses studies" in low.detail
    assert doctor.check_disk(tmp_path, min_free_mb=0, max_used_percent=0.001).status == "fail"


# --- ports -----------------------------------------------------------------------------

def test_free_port_passes() -> None:
    assert doctor.check_port("dicom-port", "127.0.0.1", free_port(), dicom=True).status == "ok"


def test_port_held_by_another_program_fails() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        dicom = doctor.check_port("dicom-port", "127.0.0.1", port, dicom=True, timeout_s=1)
        metrics = doctor.check_port("metrics-port", "127.0.0.1", port, dicom=False, timeout_s=1)
    for result in (dicom, metrics):
        assert result.status == "fail" and "already in use" in result.detail and "ss -ltnp" in result.fix


def test_ports_held_by_a_running_node_are_only_warnings(node: NodeService) -> None:
    dicom = doctor.check_port("dicom-port", "127.0.0.1", node.port, dicom=True)
    metrics = doctor.check_port("metrics-port", "127.0.0.1", node.http.port, dicom=False)
    assert dicom.status == "warn" and "DICOM service" in dicom.detail
    assert metrics.status == "warn" and "/healthz answers" in metrics.detail


# --- config ----------------------------------------------------------------------------

def test_valid_config_passes(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nport = 11112\nallowed_calling = ["SCANNER"]\n'
                    '[send]\ndestinations = ["PACS@127.0.0.1:104"]\n')
    result, cfg = doctor.check_config(path)
    assert result.status == "ok" and "PACS@127.0.0.1:104" in result.detail and cfg is not None


def test_invalid_config_fails_naming_every_key(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nport = 70000\nae_title = "THIS AE TITLE IS TOO LONG"\n')
    result, cfg = doctor.check_config(path)
    assert cfg is None and result.status == "fail"
    assert "node.port" in result.detail and "node.ae_title" in result.detail and "\n" not in result.line()
    (tmp_path / "p.toml").write_text('[processing]\nprocessor = "no_such_pkg.mod:make"\n')
    result, _ = doctor.check_config(tmp_path / "p.toml")
    assert result.status == "fail" and "no_such_pkg.mod" in result.detail


# --- destinations ----------------------------------------------------------------------

def test_reachable_destination_passes(storescp: int) -> None:
    result = doctor.check_destination(Destination.parse(f"PACS@127.0.0.1:{storescp}"), "WBSPINE", 5)
    assert result.status == "ok" and "C-ECHO ok" in result.detail


def test_unreachable_destination_fails() -> None:
    result = doctor.check_destination(Destination.parse(f"PACS@127.0.0.1:{free_port()}"), "WBSPINE", 2)
    assert result.status == "fail" and "refused" in result.detail.lower() and "firewall" in result.fix


def test_destination_rejecting_our_association_names_the_reason(node: NodeService) -> None:
    result = doctor.check_destination(Destination.parse(f"NOT_WBSPINE@127.0.0.1:{node.port}"), "WBSPINE", 5)
    assert result.status == "fail" and "rejected" in result.detail and "called AE title" in result.detail
    assert "AE title" in result.fix


def test_sender_destination_needs_no_echo() -> None:
    assert doctor.check_destination(Destination.parse("sender:104"), "WBSPINE", 1).status == "ok"


# --- the command -----------------------------------------------------------------------

def _write_config(path: Path, spool: Path, bundle: Path, dest_port: int) -> Path:
    path.write_text(f'[node]\nbind_address = "127.0.0.1"\nport = {free_port()}\nallowed_calling = ["SCANNER"]\n'
                    f'[spool]\ndirectory = "{spool}"\nmin_free_mb = 0\nmax_used_percent = 100\n'
                    f'[send]\ndestinations = ["PACS@127.0.0.1:{dest_port}"]\n'
                    f'[processing]\nbundle = "{bundle}"\n'
                    f'[metrics]\nport = {free_port()}\nbind_address = "127.0.0.1"\n')
    return path


def test_doctor_command_passes_on_a_good_install(tmp_path: Path, storescp: int) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = _write_config(tmp_path / "node.toml", spool, make_bundle(tmp_path / "bundle"), storescp)
    t0 = time.perf_counter()
    proc = subprocess.run([str(WBSPINE), "doctor", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    print(f"\n{proc.stdout}doctor took {elapsed:.1f} s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [line.split()[1] for line in proc.stdout.splitlines()[:-1]]
    assert names == ["python", "onnxruntime", "openvino", "config", "bundle", "model", "spool", "disk", "dicom-port",
                     "metrics-port",
                     "destination"]
    assert not any(line.startswith("FAIL") for line in proc.stdout.splitlines())


def test_doctor_command_exits_1_and_says_what_to_fix(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    bundle = make_bundle(tmp_path / "bundle")
    (bundle / "MODEL_CARD.md").write_text("edited by hand\n")
    cfg = _write_config(tmp_path / "node.toml", spool, bundle, free_port())
    proc = subprocess.run([str(WBSPINE), "doctor", "--config", str(cfg), "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    import json

    report = json.loads(proc.stdout)
    failed = {r["name"]: r for r in report["results"] if r["status"] == "fail"}
    assert set(failed) == {"bundle", "destination"} and report["failed"] == 2
    assert all(r["fix"] for r in failed.values())
