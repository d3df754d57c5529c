"""The appliance container for real: offline bundle → load → run → C-ECHO → study in → results out → SIGTERM.

Rootful podman with its own storage and containers.conf (see ../shared/notes/containers.md):
no registry is reachable, so ``deploy/local-base.sh`` makes the base image locally under the
name the Containerfile's FROM uses; ``deploy/offline.sh`` then builds the unchanged
Containerfile from a wheelhouse with no network and writes the image archive, which is
loaded back before running. The node runs the real pipeline with the tiny test bundle
mounted over the image's bundle; DCMTK's storescp plays the PACS. Set
WBSPINE_SKIP_CONTAINER=1 to skip (never in CI); without usable podman the test fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.appliance.inference.inference_helpers import make_bundle
from tests.conftest import cached_study
from tests.dicom_node.conftest import free_port, wait_for
from dicom_node.tools import dcmtk, dcmtk_command

REPO = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"
TAG = f"wbspine-node:{VERSION}"
NAME = "wbspine-container-test"
UID = 10001
SEG, SR3D = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34"
ENCAPSULATED_STL = "1.2.840.10008.5.1.4.1.1.104.3"
#: podman storage kept between runs on one machine (the base image is reused); build/ is ignored by git.
STATE = REPO / "build" / "container-test"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _podman_env() -> dict[str, str]:
    """containers.conf (runc, ulimits within this machine's hard limits) and a private storage root."""
    STATE.mkdir(parents=True, exist_ok=True)
    nofile = min(20000, _hard_limit("RLIMIT_NOFILE"))
    nproc = min(32768, _hard_limit("RLIMIT_NPROC"))
    (STATE / "containers.conf").write_text(
        '[engine]\nruntime = "runc"\n'
        f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n')
    runroot = f"/run/wbspine-container-test-{hashlib.sha256(str(STATE).encode()).hexdigest()[:8]}"
    (STATE / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{STATE / "storage"}"\nrunroot = "{runroot}"\n')
    return {**os.environ, "CONTAINERS_CONF": str(STATE / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(STATE / "storage.conf")}


def _hard_limit(name: str) -> int:
    import resource

    hard = resource.getrlimit(getattr(resource, name))[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def _usable_podman() -> dict[str, str]:
    if os.environ.get("WBSPINE_SKIP_CONTAINER") == "1":
        pytest.skip("WBSPINE_SKIP_CONTAINER=1")
    missing = [t for t in ("podman", "mmdebstrap", "runc") if not shutil.which(t)]
    missing += [t for t in ("storescu", "storescp", "echoscu") if not dcmtk(t)]
    if missing:
        pytest.fail(f"the container test needs {missing}: run `make system-deps` (as root), "
                    "or set WBSPINE_SKIP_CONTAINER=1 to skip it deliberately")
    if os.geteuid() != 0:
        pytest.fail("the container test uses rootful podman: run it as root, or set WBSPINE_SKIP_CONTAINER=1")
    env = _podman_env()
    info = subprocess.run(["podman", "info"], env=env, capture_output=True, text=True, timeout=120)
    if info.returncode != 0:
        pytest.fail(f"podman is installed but unusable here: {info.stderr[-1500:]}")
    return env


def podman(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """DCMTK storescp on 127.0.0.1 as the PACS (AE PACS); yields (port, folder it writes to)."""
    port, inbox = free_port(), tmp_path / "pacs"
    inbox.mkdir()
    proc = subprocess.Popen([dcmtk_command("storescp"), "-aet", "PACS", "-od", str(inbox), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port, inbox
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _echo(port: int, called: str = "WBSPINE") -> bool:
    return subprocess.run([dcmtk_command("echoscu"), "-aet", "SCANNER", "-aec", called, "127.0.0.1", str(port)],
                          capture_output=True, timeout=30).returncode == 0


def _site(tmp_path: Path, node_port: int, metrics_port: int, pacs_port: int) -> dict[str, Path]:
    """A site's host folders: configuration, spool (owned by the container user), model bundle."""
    site = tmp_path / "site"
    site.mkdir()
    site.chmod(0o755)
    config = site / "node.toml"
    config.write_text(f"""
[node]
ae_title = "WBSPINE"
bind_address = "127.0.0.1"
port = {node_port}
allowed_calling = ["SCANNER@127.0.0.1"]
[spool]
directory = "/var/lib/wbspine/spool"
min_free_mb = 0
max_used_percent = 100
[series]
idle_timeout_s = 5
[send]
destinations = ["PACS@127.0.0.1:{pacs_port}"]
calling_ae_title = "WBSPINE"
backoff_initial_s = 1
backoff_max_s = 5
[processing]
bundle = "/opt/wbspine/bundles/default"
[metrics]
port = {metrics_port}
bind_address = "127.0.0.1"
""")
    config.chmod(0o644)
    spool = site / "spool"
    spool.mkdir()
    os.chown(spool, UID, UID)
    bundle = make_bundle(site / "bundle", oracle="smoothed")
    for p in [bundle, *bundle.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return {"config": config, "spool": spool, "bundle": bundle}


def test_offline_image_receives_a_study_and_returns_results(tmp_path: Path, pacs: tuple[int, Path]) -> None:
    env = _usable_podman()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    base = subprocess.run([str(REPO / "deploy" / "local-base.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert base.returncode == 0, base.stdout + base.stderr
    timings["local base image"] = time.perf_counter() - t

    t = time.perf_counter()
    out = tmp_path / "offline"
    build = subprocess.run([str(REPO / "deploy" / "offline.sh"), str(out)], cwd=REPO, capture_output=True, text=True,
                           env={**env, "BUILD_ARGS": "--pull=never --network=none", "TAG": TAG}, timeout=900)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    timings["offline.sh (wheelhouse, build, save)"] = time.perf_counter() - t
    archive = out / f"wbspine-node-{VERSION}.tar"
    for name in ("SHA256SUMS", "compose.yaml", "wbspine-node.service", "node.example.toml", "README.md"):
        assert (out / name).is_file(), name
    assert any((out / "wheelhouse").glob("wbspine-*.whl"))
    sums = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr

    # What the site does: load the archive (no registry), then run.
    t = time.perf_counter()
    podman(env, "rm", "--force", "--ignore", NAME)
    podman(env, "rmi", "--force", TAG)
    podman(env, "load", "--quiet", "-i", str(archive), timeout=300)
    timings["podman load"] = time.perf_counter() - t
    archive_mb = archive.stat().st_size / 1e6
    shutil.rmtree(out)  # about 1.2 GB; pytest keeps the last runs' tmp folders
    size_mb = int(podman(env, "image", "inspect", "--format", "{{.Size}}", TAG).stdout.strip()) / 1e6
    user = podman(env, "image", "inspect", "--format", "{{.Config.User}}", TAG).stdout.strip()
    assert user == f"{UID}:{UID}"

    pacs_port, inbox = pacs
    node_port, metrics_port = free_port(), free_port()
    site = _site(tmp_path, node_port, metrics_port, pacs_port)
    t = time.perf_counter()
    podman(env, "run", "--detach", "--name", NAME, "--network=host",
           "-e", f"WBSPINE_METRICS__PORT={metrics_port}",
           "-v", f"{site['config']}:/etc/wbspine/node.toml:ro",
           "-v", f"{site['spool']}:/var/lib/wbspine",
           "-v", f"{site['bundle']}:/opt/wbspine/bundles/default:ro", TAG)
    try:
        wait_for(lambda: _running(env) and _echo(node_port), timeout_s=60, interval_s=0.25)
        timings["container start → C-ECHO answered"] = time.perf_counter() - t
        assert not _echo(node_port, called="SOMEONE_ELSE")  # the called AE title is enforced
        health = podman(env, "healthcheck", "run", NAME, check=False)
        assert health.returncode == 0 and "unhealthy" not in health.stdout, health.stdout + health.stderr

        t = time.perf_counter()
        doctor = podman(env, "exec", NAME, "wbspine", "doctor", check=False)
        timings["doctor inside the container"] = time.perf_counter() - t
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "OK    destination" in doctor.stdout and "OK    bundle" in doctor.stdout

        series = tmp_path / "study"
        from appliance.phantom.dicom_series import write_ct_series

        write_ct_series(cached_study(4, "small"), series)
        t = time.perf_counter()
        send = subprocess.run([dcmtk_command("storescu"), "+sd", "+r", "-aet", "SCANNER", "-aec", "WBSPINE", "127.0.0.1",
                               str(node_port), str(series)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TCP_NODELAY": "1"})
        assert send.returncode == 0, send.stderr[-2000:]
        timings[f"storescu {len(list(series.iterdir()))} instances"] = time.perf_counter() - t

        t = time.perf_counter()
        wait_for(lambda: len(list(inbox.iterdir())) >= 7, timeout_s=240, interval_s=0.5)
        time.sleep(1.0)  # the last file is complete once storescp acknowledged it; let it close
        timings["last instance → results in the PACS"] = time.perf_counter() - t
        classes = sorted(str(dcmread(f, stop_before_pixels=True).SOPClassUID) for f in inbox.iterdir())
        assert classes.count(SEG) == 1 and classes.count(SR3D) == 1 and ENCAPSULATED_STL in classes, classes

        t = time.perf_counter()
        podman(env, "stop", "--time", "30", NAME, timeout=60)
        timings["podman stop (SIGTERM)"] = time.perf_counter() - t
        assert podman(env, "inspect", "--format", "{{.State.ExitCode}}", NAME).stdout.strip() == "0"
        logs = podman(env, "logs", NAME).stderr + podman(env, "logs", NAME).stdout
        assert "stopped" in logs
        for secret in ("Phantom^Wbspine", "WBSPINE-PHANTOM-"):  # no patient identifiers in the logs
            assert secret not in logs
    except BaseException:
        print(podman(env, "logs", NAME, check=False).stderr[-5000:])
        raise
    finally:
        podman(env, "rm", "--force", "--ignore", NAME, check=False)
        podman(env, "rmi", "--force", TAG, check=False)  # the base image stays for the next run

    status = subprocess.run([str(Path(sys.executable).with_name("wbspine")), "status", "--spool", str(site["spool"] / "spool")],
                            capture_output=True, text=True)
    assert status.returncode == 0 and " done " in status.stdout, status.stdout + status.stderr
    print(f"\nimage {TAG}: {size_mb:.0f} MB, archive {archive_mb:.0f} MB")
    for what, seconds in timings.items():
        print(f"  {what:<42} {seconds:7.1f} s")


def _running(env: dict[str, str]) -> bool:
    state = podman(env, "inspect", "--format", "{{.State.Status}}", NAME, check=False).stdout.strip()
    assert state in ("created", "running", "configured", ""), f"container {state}:\n" + \
        podman(env, "logs", NAME, check=False).stderr[-4000:]
    return state == "running"
