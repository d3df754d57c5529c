"""Hostile peers at the transport and association level (cases 5-10, 20).

Moved here from tests/dicom_node/test_node_limits.py and extended.
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node.policy import COMPRESSED_CANDIDATES, decodable_syntaxes
from tests.dicom_node.conftest import NODELAY_ENV, storescu, wait_for
from tests.dicom_node.rawscu import encode_ds
from tests.faults.conftest import association_threads, peak_rss_growth_mb, thread_stacks, wait_threads_gone
from tests.faults.hostile import CT, associate, paused, send
from dicom_node.tools import dcmtk_command

TIMEOUTS = {"acse_timeout_s": 1.0, "network_timeout_s": 2.0, "dimse_timeout_s": 2.0}


def echo_ok(port: int, calling: str = "SCANNER") -> bool:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="WBSPINE")
    ok = assoc.is_established and assoc.send_c_echo().Status == 0x0000
    if assoc.is_established:
        assoc.release()
    return ok


def closed_within(sock: socket.socket, timeout_s: float) -> float:
    """Seconds until the peer closed ``sock`` (reading and discarding what it sent)."""
    sock.settimeout(timeout_s)
    started = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {timeout_s} s") from None
    return time.monotonic() - started


@pytest.mark.fault(5)
def test_oversized_pdu_is_dropped_without_buffering(start_node) -> None:
    node = start_node()
    for claimed in (2**31, 8 * 2**20):  # far beyond, and a few times beyond, the 256 KiB maximum
        with peak_rss_growth_mb() as growth, socket.create_connection(("127.0.0.1", node.port)) as s:
            s.sendall(b"\x04\x00" + struct.pack(">L", claimed) + b"\x00" * 4096)
            try:
                s.sendall(b"\x00" * min(claimed, 4 * 2**20))  # keep pushing: none of it may be buffered
            except OSError:
                pass
            assert closed_within(s, 5) < 5
        assert growth[0] < 32, f"{growth[0]:.0f} MiB"
    # An established association sending a P-DATA PDU longer than the negotiated maximum.
    assoc = associate(node.port)
    with paused(assoc):
        assoc.dul.socket.socket.sendall(b"\x04\x00" + struct.pack(">L", 64 * 2**20) + b"\x00" * 65536)
    wait_for(lambda: not assoc.is_established, timeout_s=10)
    assert echo_ok(node.port)


@pytest.mark.fault(5)
def test_dataset_over_the_size_limit_drops_the_peer_not_the_node(start_node, short_series: Path) -> None:
    node = start_node(node={"max_instance_mb": 1})
    files = sorted(short_series.glob("*.dcm"))
    big = dcmread(files[0])
    big.ImageComments = "x" * 1_500_000  # ≈ 1.5 MB data set in many legal-sized PDUs
    assoc = associate(node.port)
    assert send(assoc, encode_ds(big), str(big.SOPInstanceUID)) is None
    wait_for(lambda: not assoc.is_established, timeout_s=10)
    small = dcmread(files[1])
    assoc = associate(node.port)
    try:
        assert send(assoc, encode_ds(small), str(small.SOPInstanceUID)) == 0x0000
    finally:
        assoc.release()
    assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 1


def tls_client_hello() -> bytes:
    """The first bytes a real TLS client sends (captured from Python's ssl module)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="wbspine")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.fault(6)
@pytest.mark.parametrize("name", ["http", "tls_client_hello", "associate_rq_10MB", "associate_rq_60kB_junk"])
def test_non_dicom_or_huge_requests_are_closed_without_a_memory_spike(start_node, name: str) -> None:
    node = start_node(node=TIMEOUTS)
    payload = {
        "http": b"GET /wado?studyUID=1 HTTP/1.1\r\nHost: node\r\nUser-Agent: probe\r\n\r\n",
        "tls_client_hello": tls_client_hello(),
        "associate_rq_10MB": b"\x01\x00" + struct.pack(">L", 10 * 2**20) + b"\x00\x01\x00\x00" + b"A" * 2**20,
        "associate_rq_60kB_junk": b"\x01\x00" + struct.pack(">L", 60000) + b"\x00\x01\x00\x00" + b"\xff" * 59996,
    }[name]
    with peak_rss_growth_mb() as growth, socket.create_connection(("127.0.0.1", node.port)) as s:
        try:
            s.sendall(payload)
        except OSError:
            pass
        s.settimeout(1.0)
        try:
            first = s.recv(10)
        except ConnectionResetError:
            first = b""
        assert first[:1] in (b"", b"\x07"), first  # closed, or an A-ABORT at once
        assert closed_within(s, 3) < 1.0 + 1.5     # then closed by the ARTIM (= ACSE) timeout
    assert growth[0] < 16, f"{growth[0]:.0f} MiB"
    assert wait_threads_gone(node) == [], thread_stacks()
    assert echo_ok(node.port)


@pytest.mark.fault(7)
def test_silent_and_stalled_clients_are_closed_at_the_timeouts(start_node, one_ct) -> None:
    node = start_node(node=TIMEOUTS)
    assert wait_threads_gone(node) == []
    with socket.create_connection(("127.0.0.1", node.port)) as silent:
        assert closed_within(silent, 5) < 1.0 + 1.5               # ARTIM = ACSE timeout
    with socket.create_connection(("127.0.0.1", node.port)) as stalled:
        stalled.sendall(b"\x01\x00" + struct.pack(">L", 1000) + b"\x00" * 10)   # 10 of 1000 bytes
        assert closed_within(stalled, 8) < 2.0 + 1.5              # network timeout mid-PDU
    assoc = associate(node.port)                                  # stalls mid P-DATA after associating
    with paused(assoc):
        assoc.dul.socket.socket.sendall(b"\x04\x00" + struct.pack(">L", 5000) + b"\x00" * 100)
        started = time.monotonic()
        wait_for(lambda: not association_threads(node), timeout_s=8)
        assert time.monotonic() - started < 2.0 + 1.5
    assoc.abort()
    idle = associate(node.port)                                   # associated, then silent
    wait_for(lambda: not idle.is_established, timeout_s=2.0 + 3)
    assert wait_threads_gone(node) == [], thread_stacks()
    assert echo_ok(node.port)


@pytest.mark.fault(8)
def test_over_max_associations_is_transient_and_ongoing_transfers_complete(start_node,
                                                                           series_dir: Path) -> None:
    node = start_node(node={"max_associations": 2})
    files = sorted(series_dir.glob("*.dcm"))
    held = AE(ae_title="SCANNER")
    held.add_requested_context(Verification)
    first = held.associate("127.0.0.1", node.port, ae_title="WBSPINE")
    assert first.is_established
    result: dict = {}
    transfer = threading.Thread(target=lambda: result.setdefault("proc", storescu(node.port, files)))
    transfer.start()
    try:
        wait_for(lambda: node.index.query("SELECT COUNT(*) FROM instances")[0][0] >= 20, timeout_s=30)
        third = subprocess.run([dcmtk_command("echoscu"), "-aet", "SCANNER", "-aec", "WBSPINE", "127.0.0.1", str(node.port)],
                               env=NODELAY_ENV, capture_output=True, text=True, timeout=30)
        assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] < len(files), "transfer already over"
        assert third.returncode != 0
        assert "Transient" in third.stderr and "Local Limit Exceeded" in third.stderr, third.stderr
        assert first.send_c_echo().Status == 0x0000
    finally:
        transfer.join(timeout=120)
        first.release()
    assert result["proc"].returncode == 0
    assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == len(files)


def rejection(port: int, calling: str, called: str) -> tuple[int, int, int]:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    return rj.result, rj.result_source, rj.diagnostic


@pytest.mark.fault(9)
def test_unknown_calling_and_wrong_called_ae_are_rejected_permanently(
        start_node, caplog: pytest.LogCaptureFixture) -> None:
    node = start_node(node={"allowed_calling": ["SCANNER"]})
    # PS3.8 9.3.4: result 1 = rejected-permanent, source 1 = service user, reason 3 / 7.
    assert rejection(node.port, "INTRUDER", "WBSPINE") == (0x01, 0x01, 0x03)
    assert rejection(node.port, "SCANNER", "NOTME") == (0x01, 0x01, 0x07)
    assert "calling AE not allowed" in caplog.text
    assert echo_ok(node.port, "SCANNER")


@pytest.mark.fault(10, 19)
def test_unsupported_sop_classes_and_transfer_syntaxes_are_refused(start_node) -> None:
    node = start_node()
    ae = AE(ae_title="SCANNER")
    refused_classes = ["1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture
                       "1.2.840.10008.5.1.4.1.1.4",      # MR Image Storage
                       "1.2.840.10008.5.1.4.1.1.1.1"]    # Digital X-Ray (a non-CT modality)
    for uid in refused_classes:
        ae.add_requested_context(uid)
    ae.add_requested_context(CT, ["1.2.840.10008.1.2.4.100"])   # MPEG-2: never decodable here
    ae.add_requested_context(CT, ["1.2.3.4.5.6.7"])             # not a transfer syntax at all
    candidates = list(COMPRESSED_CANDIDATES)
    for ts in candidates:
        ae.add_requested_context(CT, [ts])
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="WBSPINE")
    try:
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        rejected = {c.abstract_syntax for c in assoc.rejected_contexts}
    finally:
        assoc.release()
    assert set(refused_classes) <= rejected
    assert not any(ts in ("1.2.840.10008.1.2.4.100", "1.2.3.4.5.6.7") for _, ts in accepted)
    decodable = set(decodable_syntaxes())
    for ts in candidates:  # a compressed syntax is accepted exactly when it can be decoded
        assert ((CT, ts) in accepted) == (ts in decodable), ts
    assert (Verification, ExplicitVRLittleEndian) not in rejected


# -- TLS ------------------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate, a good, an expired and a foreign client certificate."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)
    (d / "db.txt").write_text("")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca=c\n[c]\ndatabase=db.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\n"
        "policy=p\nunique_subject=no\ncopy_extensions=copy\n[p]\ncommonName=supplied\n")
    (d / "serial").write_text("1000\n")
    for name, signer, dates in (("server", "ca", None), ("client", "ca", None),
                                ("expired", "ca", ("20200101000000Z", "20200201000000Z")),
                                ("foreign", "rogue", None)):
        ext = ["-addext", "subjectAltName=IP:127.0.0.1"] if name == "server" else []
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", *ext,
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        period = ["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "2"]
        _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", f"{signer}.crt", "-keyfile", f"{signer}.key",
                 *period, "-in", f"{name}.csr", "-out", f"{name}.crt", "-notext", cwd=d)
    return d


def tls_client(pki: Path, cert: str | None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def echo_tls(port: int, ctx: ssl.SSLContext) -> bool:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="WBSPINE", tls_args=(ctx, "127.0.0.1"))
    except (OSError, ssl.SSLError):
        return False
    ok = assoc.is_established and assoc.send_c_echo().Status == 0x0000
    if assoc.is_established:
        assoc.release()
    return ok


@pytest.mark.fault(20)
def test_tls_refuses_plain_untrusted_expired_and_tls10_and_logs_it(
        start_node, pki: Path, caplog: pytest.LogCaptureFixture) -> None:
    node = start_node(node={**TIMEOUTS, "tls": {"cert_file": str(pki / "server.crt"),
                                                "key_file": str(pki / "server.key"),
                                                "ca_file": str(pki / "ca.crt")}})
    with socket.create_connection(("127.0.0.1", node.port)) as silent:  # must not block the others
        assert echo_tls(node.port, tls_client(pki, "client"))
        assert closed_within(silent, 5) < 1.0 + 1.5
    assert not echo_tls(node.port, tls_client(pki, None))        # no client certificate
    assert not echo_tls(node.port, tls_client(pki, "foreign"))   # signed by another CA
    assert not echo_tls(node.port, tls_client(pki, "expired"))   # expired
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(pki / "ca.crt"))
    try:
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1
    except (ValueError, ssl.SSLError):
        pytest.fail("this OpenSSL cannot even build a TLS 1.0 client context")
    assert not echo_tls(node.port, old)
    plain = subprocess.run([dcmtk_command("echoscu"), "-aec", "WBSPINE", "127.0.0.1", str(node.port)], env=NODELAY_ENV,
                           capture_output=True, text=True, timeout=30)
    assert plain.returncode != 0
    refusals = [r for r in caplog.records if r.getMessage() == "TLS handshake refused"]
    reasons = " ".join(str(getattr(r, "reason", "")) for r in refusals)
    assert len(refusals) >= 5, reasons
    assert "certificate" in reasons.lower() and "expired" in reasons.lower()
    assert echo_tls(node.port, tls_client(pki, "client"))        # and still serving
    assert wait_threads_gone(node) == []


@pytest.mark.fault(8)
def test_reconnecting_right_after_a_release_is_not_refused(start_node, short_series: Path,
                                                           monkeypatch) -> None:
    """A released association's thread may still be winding down (here: held 1 s in its
    connection-closed handler, as a loaded CPU does); it must not count against the maximum.
    Found by tests/benchmarks/bench_faults_load.py: 5 of 24 studies refused at 8 of 8."""
    node = start_node(node={"max_associations": 1})
    files = sorted(short_series.glob("*.dcm"))[:3]
    ended = node.tracker.association_ended

    def slow_close(assoc_key: str, released: bool) -> None:
        if not released:
            time.sleep(1.0)
        ended(assoc_key, released)

    monkeypatch.setattr(node.tracker, "association_ended", slow_close)
    for k in range(3):
        proc = storescu(node.port, files, calling=f"SCANNER{k}", check=False)
        assert proc.returncode == 0, f"association {k} refused: {proc.stderr[-300:]}"
