"""``wbspine doctor``: check an installation and say, one line each, what is wrong and how to fix it.

Every check is a plain function that returns :class:`CheckResult` values and never
raises for the condition it checks: Python dependencies, ONNX Runtime providers and
GPU visibility, the model bundle (schema, sha256, loads in ONNX Runtime) and its recorded
validation (:mod:`appliance.bundle_quality`: a warning when weak or missing), the spool
(permissions, fsync, free space), the listening ports, the configuration, and a
C-ECHO to every configured destination. Nothing is created or changed on disk except
one temporary file inside an existing spool. No patient data is read or printed.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dicom_node.errors import WbspineError

if TYPE_CHECKING:  # the CLI imports this module for --help: keep pydantic out until a check runs
    from dicom_node.config import Config, Destination

Status = Literal["ok", "warn", "fail"]

#: Looked for when ``--config`` is not given (the path used by the container and systemd unit).
SYSTEM_CONFIG = Path("/etc/wbspine/node.toml")
#: Modules whose import proves the binary wheels work on this machine (not just metadata).
CORE_MODULES = ("numpy", "scipy", "SimpleITK", "pydicom", "pynetdicom", "highdicom", "onnxruntime",
                "skimage", "trimesh", "pydantic", "stl")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: ``fix`` says what to do when ``status`` is not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.upper():<5} {self.name:<14} {self.detail}"
        return f"{text}  -> fix: {self.fix}" if self.fix and self.status != "ok" else text


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "ok", detail)


def warn(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, "warn", detail, fix)


def fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, "fail", detail, fix)


# --- Python ------------------------------------------------------------------------------

def base_requirements() -> list[str]:
    """The installed wbspine's own requirements, without optional extras."""
    from packaging.requirements import Requirement

    reqs = importlib.metadata.requires("wbspine") or []
    return [r for r in reqs if Requirement(r).marker is None or Requirement(r).marker.evaluate({"extra": ""})]


def check_python(requirements: Sequence[str] | None = None,
                 modules: Sequence[str] = CORE_MODULES) -> CheckResult:
    """Every requirement installed in a matching version, and the core modules import."""
    from packaging.requirements import Requirement

    try:
        reqs = list(base_requirements() if requirements is None else requirements)
    except importlib.metadata.PackageNotFoundError:
        return fail("python", "the wbspine package is not installed in this interpreter",
                    "install it: pip install . (or the wheelhouse: pip install --no-index --find-links wheelhouse wbspine)")
    problems: list[str] = []
    for spec in reqs:
        req = Requirement(spec)
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{req.name} missing")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} (needs {req.specifier})")
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken binary wheel raises all sorts of errors
            problems.append(f"import {name} failed ({type(exc).__name__}: {str(exc)[:120]})")
    if problems:
        return fail("python", "; ".join(problems),
                    "reinstall the dependencies: pip install --force-reinstall . (offline: add "
                    "--no-index --find-links wheelhouse), or use the container image")
    import sys

    return ok("python", f"Python {sys.version.split()[0]}, {len(reqs)} requirements met, "
                        f"{len(modules)} core modules import")


# --- ONNX Runtime and GPU ----------------------------------------------------------------

def visible_gpus() -> list[str]:
    """NVIDIA GPUs this process can see: ``nvidia-smi -L`` names, else ``/dev/nvidiaN`` nodes."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                return [line.split(" (UUID")[0] for line in out.stdout.splitlines() if line.startswith("GPU")]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))


def check_onnxruntime(require_gpu: bool = False, providers: Sequence[str] | None = None,
                      gpus: Sequence[str] | None = None) -> CheckResult:
    """ONNX Runtime imports with the CPU provider; GPU providers and GPUs agree (or are required)."""
    version = ""
    if providers is None:
        try:
            import onnxruntime as ort
        except Exception as exc:
            return fail("onnxruntime", f"cannot import onnxruntime ({exc})",
                        "pip install onnxruntime (CPU) or onnxruntime-gpu (the 'gpu' extra)")
        providers, version = list(ort.get_available_providers()), ort.__version__
    gpus = visible_gpus() if gpus is None else list(gpus)
    short = ", ".join(p.removesuffix("ExecutionProvider") for p in providers) or "none"
    gpu_text = ", ".join(gpus) if gpus else "none visible"
    detail = f"onnxruntime {version} providers: {short}; GPU: {gpu_text}".replace("  ", " ")
    has_gpu_provider = any(p in providers for p in GPU_PROVIDERS)
    if "CPUExecutionProvider" not in providers:
        return fail("onnxruntime", detail, "reinstall onnxruntime; the CPU provider must always be there")
    if require_gpu and not gpus:
        return fail("onnxruntime", detail, "no GPU visible: install the NVIDIA driver and container toolkit, "
                                           "run the container with --device nvidia.com/gpu=all (podman) or --gpus all (docker)")
    if require_gpu and not has_gpu_provider:
        return fail("onnxruntime", detail, "this is the CPU build: use the GPU image (VARIANT=gpu) or pip install 'wbspine[gpu]'")
    if gpus and not has_gpu_provider:
        return warn("onnxruntime", detail, "a GPU is visible but inference runs on the CPU: use the GPU image "
                                           "(VARIANT=gpu) for speed")
    if has_gpu_provider and not gpus:
        return warn("onnxruntime", detail, "GPU providers installed but no GPU visible: inference falls back to the "
                                           "CPU; pass the GPU to the container (--device nvidia.com/gpu=all / --gpus all)")
    return ok("onnxruntime", detail)


def check_openvino(devices: Sequence[str] | None = None, version: str = "") -> CheckResult:
    """OpenVINO (the automatic CPU engine) imports and offers its CPU device; without it the
    appliance still runs, on ONNX Runtime's CPU provider, about 1.8x slower."""
    if devices is None:
        try:
            import openvino as ov
            devices, version = list(ov.Core().available_devices), ov.__version__.split("-")[0]
        except Exception as exc:
            return warn("openvino", f"not usable ({str(exc)[:120]}); CPU inference uses ONNX Runtime",
                        "pip install openvino (part of the appliance install) for ~1.8x faster CPU inference")
    detail = f"openvino {version} devices: {', '.join(devices) or 'none'}".replace("  ", " ")
    if "CPU" not in devices:
        return warn("openvino", detail + "; CPU inference uses ONNX Runtime",
                    "this CPU is not supported by OpenVINO's CPU plugin; nothing to do unless inference is too slow")
    return ok("openvino", detail)


# --- model bundle ------------------------------------------------------------------------

_BUNDLE_FIXES = {
    "not_found": "copy the model bundle folder there (deploy/README.md, 'Swap the model bundle'), or point "
                 "processing.bundle / --bundle at it",
    "hash_mismatch": "the bundle was modified or copied incompletely: copy it again from the release medium "
                     "and compare its SHA256SUMS",
    "missing_file": "copy the whole bundle folder again (a file listed in manifest.json is absent)",
    "unknown_schema": "this appliance and the bundle do not match: update the appliance or re-export the bundle",
}


def check_bundle(directory: Path, load_model: bool = True) -> CheckResult:
    """Manifest schema, every file's size and sha256, and (optionally) that ONNX Runtime loads the model."""
    from appliance.bundle import load_bundle
    from appliance.errors import BundleError

    try:
        bundle = load_bundle(directory)
    except BundleError as exc:
        return fail("bundle", f"{directory}: {exc} [{exc.code}]",
                    _BUNDLE_FIXES.get(exc.code, "re-export the bundle with `wbspine export` or copy a released one"))
    except OSError as exc:
        return fail("bundle", f"{directory}: cannot be read ({exc.strerror})",
                    "make the bundle folder readable by the service user")
    m = bundle.manifest
    detail = (f"{directory}: {m.model.name} {m.model.version}, {len(m.files)} files match their sha256, "
              f"schema {m.schema_version}")
    if load_model:
        try:
            import onnxruntime as ort

            session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
            inputs = [i.name for i in session.get_inputs()]
            outputs = [o.name for o in session.get_outputs()]
        except Exception as exc:
            return fail("bundle", f"{directory}: ONNX Runtime cannot load {bundle.onnx_path.name} ({str(exc)[:200]})",
                        "the model needs a newer onnxruntime (update the appliance) or the file is not a valid model")
        if m.io.input_name not in inputs or m.io.output_name not in outputs:
            return fail("bundle", f"{directory}: the model's inputs {inputs} / outputs {outputs} do not match the "
                                  f"manifest ({m.io.input_name} -> {m.io.output_name})",
                        "re-export the bundle: its manifest does not describe its model")
        detail += ", loads in ONNX Runtime"
    return ok("bundle", detail)


# --- spool -------------------------------------------------------------------------------

def _owner(path: Path) -> str:
    st = path.stat()
    return f"uid {st.st_uid}, mode {st.st_mode & 0o7777:o}"


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_spool(directory: Path, fsync: bool = True) -> CheckResult:
    """The spool exists (or can be created) and this user can write, fsync and remove a file in it."""
    uid = os.getuid()
    fix_perm = f"give the service user (uid {uid}) the folder: chown -R {uid} {directory}"
    if not directory.exists():
        parent = _existing_ancestor(directory)
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return warn("spool", f"{directory} does not exist yet; the node creates it at start (in {parent})",
                        f"create it now as the service user: mkdir -p {directory}")
        return fail("spool", f"{directory} does not exist and {parent} is not writable by uid {uid}",
                    f"mkdir -p {directory} && chown {uid} {directory}")
    if not directory.is_dir():
        return fail("spool", f"{directory} is not a folder", "point spool.directory at a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".doctor-", dir=directory)
    except OSError as exc:
        return fail("spool", f"{directory} is not writable by uid {uid} ({exc.strerror}; {_owner(directory)})",
                    fix_perm if exc.errno in (errno.EACCES, errno.EPERM) else "remount the volume read-write")
    try:
        os.write(fd, b"wbspine doctor\n" * 256)
        if fsync:
            os.fsync(fd)
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        return fail("spool", f"writing or fsync in {directory} failed ({exc.strerror})",
                    "use a local disk that supports fsync (not a network share mounted without it)")
    finally:
        os.close(fd)
        os.unlink(name)
    blocked = [p.name for p in directory.iterdir()
               if p.name in ("index.sqlite", "instances", "tmp", "work", "quarantine") and not os.access(p, os.W_OK)]
    if blocked:
        return fail("spool", f"{', '.join(blocked)} in {directory} not writable by uid {uid}", fix_perm)
    return ok("spool", f"{directory} writable by uid {uid}" + (", fsync works" if fsync else " (fsync off)"))


def check_disk(directory: Path, min_free_mb: int, max_used_percent: float) -> CheckResult:
    """Free space above the node's refusal thresholds (below them it answers A700)."""
    where = _existing_ancestor(directory)
    usage = shutil.disk_usage(where)
    free_mb = usage.free // 2**20
    used_pct = 100.0 * (usage.total - usage.free) / usage.total if usage.total else 100.0
    detail = f"{free_mb} MB free, {used_pct:.0f} % used on the spool's disk ({where})"
    if free_mb < min_free_mb or used_pct > max_used_percent:
        return fail("disk", detail + f"; the node refuses studies below {min_free_mb} MB free or above "
                                     f"{max_used_percent:g} % used",
                    "free space (wbspine status; remove old studies from the spool) or give the spool a bigger disk")
    return ok("disk", detail)


# --- ports -------------------------------------------------------------------------------

@contextmanager
def _quiet_pynetdicom() -> Iterator[None]:
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _connect_error(host: str, port: int, timeout_s: float) -> str | None:
    """None when a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.timeout:
        return f"no answer within {timeout_s:g} s (host down or a firewall drops packets)"
    except OSError as exc:
        return exc.strerror or str(exc)


def c_echo(ae_title: str, host: str, port: int, calling_ae: str, timeout_s: float) -> tuple[bool, str]:
    """C-ECHO (PS3.4 A.4): (True, round trip) or (False, why)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    if (why := _connect_error(host, port, timeout_s)) is not None:
        return False, f"cannot connect to {host}:{port}: {why}"
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    ae.add_requested_context(Verification)
    t0 = time.perf_counter()
    with _quiet_pynetdicom():
        assoc = ae.associate(host, port, ae_title=ae_title)
        try:
            if assoc.is_rejected:
                rj = assoc.acceptor.primitive
                reason = {2: "application context not supported", 3: "calling AE title not recognised",
                          7: "called AE title not recognised"}.get(getattr(rj, "diagnostic", None))
                reason = reason or str(getattr(rj, "reason_str", "no reason given"))
                return False, f"association rejected by {host}:{port} ({reason})"
            if not assoc.is_established:
                return False, f"{host}:{port} accepted TCP but no DICOM association (aborted or timed out)"
            status = assoc.send_c_echo()
            code = getattr(status, "Status", None)
            if code != 0x0000:
                return False, f"C-ECHO answered status {code!r}" if code is not None else "C-ECHO got no answer"
            return True, f"C-ECHO ok in {1000 * (time.perf_counter() - t0):.0f} ms"
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()


def _healthz(host: str, port: int, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout_s) as r:
            return "queue_depth" in json.loads(r.read())
    except (OSError, ValueError):
        return False


def dicom_answers(host: str, port: int, timeout_s: float) -> bool:
    """True when a DICOM service answers an association request (accepted or rejected)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title="WBSPINE_DOCTOR")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    ae.add_requested_context(Verification)
    with _quiet_pynetdicom():
        assoc = ae.associate(host, port, ae_title="ANY-SCP")
        try:
            return bool(assoc.is_established or assoc.is_rejected)
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()


def check_port(name: str, bind: str, port: int, *, dicom: bool, timeout_s: float = 3.0) -> CheckResult:
    """``port`` can be bound on ``bind``; if taken, say whether a node-like service already holds it.

    ``dicom``: the holder of a DICOM port is probed with an association request; the holder of
    the metrics port with ``GET /healthz``.
    """
    if port == 0:
        return ok(name, "any free port (0)")
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
            return ok(name, f"{bind}:{port} is free")
        except OSError as exc:
            err = exc
    probe_host = "127.0.0.1" if bind in ("0.0.0.0", "") else ("::1" if bind == "::" else bind)
    if err.errno == errno.EADDRINUSE:
        if dicom and dicom_answers(probe_host, port, timeout_s):
            return warn(name, f"{bind}:{port} is in use by a DICOM service (this node, if it is running)",
                        "fine while this node runs (e.g. doctor inside the running container); otherwise stop "
                        f"the other DICOM program (ss -ltnp 'sport = :{port}') or change node.port")
        if not dicom and _healthz(probe_host, port, timeout_s):
            return warn(name, f"{bind}:{port} is in use by a running wbspine node (/healthz answers)",
                        "fine while this node runs; otherwise change metrics.port")
        return fail(name, f"{bind}:{port} is already in use by another program",
                    f"stop it (ss -ltnp 'sport = :{port}' shows which) or choose another port in the config")
    if err.errno == errno.EACCES:
        return fail(name, f"port {port} needs privileges on {bind}",
                    "use a port >= 1024 (11112 is DICOM's registered one) or grant CAP_NET_BIND_SERVICE")
    if err.errno == errno.EADDRNOTAVAIL:
        return fail(name, f"{bind} is not an address of this machine", "set the bind address to 0.0.0.0 or one of its IPs")
    return fail(name, f"cannot bind {bind}:{port} ({err.strerror})", "check the bind address and port")


# --- configuration and destinations ------------------------------------------------------

def check_config(path: Path | None) -> tuple[CheckResult, Config | None]:
    """Load and validate the configuration (file + WBSPINE_* environment); check what it names exists."""
    from dicom_node.config import load_config

    where = str(path) if path is not None else "defaults + environment (no file)"
    try:
        cfg = load_config(path)
    except WbspineError as exc:
        return fail("config", str(exc).replace("\n", ";"),
                    "correct the named keys (deploy/node.example.toml documents each)"), None
    problems: list[str] = []
    module = cfg.processing.processor.partition(":")[0]
    try:
        if importlib.util.find_spec(module) is None:
            problems.append(f"processor module {module!r} not found")
    except ModuleNotFoundError:
        problems.append(f"processor module {module!r} not found")
    tls = cfg.node.tls
    if tls is not None:
        for f in (tls.cert_file, tls.key_file, tls.ca_file):
            if f is not None and not os.access(f, os.R_OK):
                problems.append(f"TLS file {f} not readable")
    if problems:
        return fail("config", f"{where}: " + "; ".join(problems), "correct processing.processor / node.tls"), cfg
    dests = ", ".join(d.label() for d in cfg.send.destinations) or "none"
    allow = "any calling AE" if not cfg.node.allowed_calling else f"{len(cfg.node.allowed_calling)} allowed calling AEs"
    result = ok("config", f"{where}: AE {cfg.node.ae_title} on {cfg.node.bind_address}:{cfg.node.port}, "
                          f"{allow}, destinations: {dests}")
    if not cfg.node.allowed_calling:
        result = warn("config", result.detail, "set node.allowed_calling to the scanner's AE title and IP")
    return result, cfg


def check_destination(dest: Destination, calling_ae: str, timeout_s: float) -> CheckResult:
    """C-ECHO one configured destination with our calling AE title."""
    name = "destination"
    if dest.ae_title is None or dest.host is None:
        return ok(name, f"{dest.label()}: results go back to the AE that sent the study "
                        "(verify with a C-ECHO from the scanner's side)")
    good, text = c_echo(dest.ae_title, dest.host, dest.port, calling_ae, timeout_s)
    if good:
        return ok(name, f"{dest.label()}: {text}")
    if "calling AE" in text:
        fix = f"register calling AE {calling_ae} (this box's IP) in the destination's list of known modalities"
    elif "called AE" in text:
        fix = f"check the destination's AE title (configured: {dest.ae_title})"
    else:
        fix = "check the destination's host and port, that it runs, and the firewall between"
    return fail(name, f"{dest.label()}: {text}", fix)


# --- all together ------------------------------------------------------------------------

def run_checks(config_path: Path | None, bundle: Path | None = None, *, require_gpu: bool = False,
               timeout_s: float = 5.0) -> list[CheckResult]:
    """Every check, in the order a technician would fix things."""
    from appliance.bundle import DEFAULT_BUNDLE_DIR

    results = [check_python(), check_onnxruntime(require_gpu), check_openvino()]
    config_result, cfg = check_config(config_path)
    results.append(config_result)
    bundle_dir = bundle or (cfg.processing.bundle if cfg is not None else None) or DEFAULT_BUNDLE_DIR
    results.append(check_bundle(Path(bundle_dir)))
    if results[-1].status == "ok":
        from appliance.bundle_quality import check_bundle_quality

        results.append(check_bundle_quality(Path(bundle_dir)))
    if cfg is None:
        return results
    results += [check_spool(cfg.spool.directory, cfg.spool.fsync),
                check_disk(cfg.spool.directory, cfg.spool.min_free_mb, cfg.spool.max_used_percent),
                check_port("dicom-port", cfg.node.bind_address, cfg.node.port, dicom=True, timeout_s=timeout_s)]
    if cfg.metrics.enabled and cfg.metrics.port is not None:
        results.append(check_port("metrics-port", cfg.metrics.bind_address, cfg.metrics.port, dicom=False,
                                  timeout_s=timeout_s))
    if not cfg.send.destinations:
        results.append(warn("destination", "no result destination configured: results stay in the spool",
                            'set send.destinations = ["PACS@HOST:104"]'))
    timeout = min(timeout_s, cfg.send.connect_timeout_s)
    results += [check_destination(d, cfg.send.calling_ae_title, timeout) for d in cfg.send.destinations]
    return results


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check this installation and say what is wrong and how to fix it",
                       description="Check dependencies, ONNX Runtime and GPU, the model bundle, the spool, the "
                                   "ports, the configuration and every destination (C-ECHO). One line per check; "
                                   "exit status 1 when any check fails.")
    p.add_argument("--config", type=Path, default=None,
                   help=f"node configuration (default: {SYSTEM_CONFIG} when it exists)")
    p.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: the config's)")
    p.add_argument("--require-gpu", action="store_true", help="fail unless a GPU and a GPU provider are usable")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per network check (default 5)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # its threads log failed peers noisily
    config = args.config if args.config is not None else (SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None)
    t0 = time.perf_counter()
    results = run_checks(config, args.bundle, require_gpu=args.require_gpu, timeout_s=args.timeout)
    failed = sum(r.status == "fail" for r in results)
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results], "failed": failed}, indent=2))
    else:
        for r in results:
            print(r.line())
        print(f"{len(results)} checks, {failed} failed, "
              f"{sum(r.status == 'warn' for r in results)} warnings ({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0
