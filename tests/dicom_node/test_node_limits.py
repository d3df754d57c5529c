"""Association limits and TLS: transient rejection over the maximum; TLS ≥ 1.2 only."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.dicom_node.conftest import NODELAY_ENV, wait_for


def test_over_max_associations_is_rejected_transiently(start_node) -> None:
    node = start_node(node={"max_associations": 1})
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    first = ae.associate("127.0.0.1", node.port, ae_title="WBSPINE")
    try:
        assert first.is_established
        second = subprocess.run(["echoscu", "-aet", "SCANNER", "-aec", "WBSPINE", "127.0.0.1", str(node.port)],
                                env=NODELAY_ENV, capture_output=True, text=True, timeout=30)
        assert second.returncode != 0
        assert "Transient" in second.stderr and "Local Limit Exceeded" in second.stderr
        assert first.send_c_echo().Status == 0x0000  # the ongoing association is unaffected
    finally:
        first.release()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "node.key"), "-out", str(d / "node.crt")],
                   check=True, capture_output=True)
    return d / "node.crt", d / "node.key"


def _echo_tls(port: int, ctx: ssl.SSLContext) -> bool:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="WBSPINE", tls_args=(ctx, "127.0.0.1"))
    ok = assoc.is_established and assoc.send_c_echo().Status == 0x0000
    if assoc.is_established:
        assoc.release()
    return ok


def test_tls_accepts_tls12_client_and_refuses_plain_and_tls10(start_node, cert) -> None:
    crt, key = cert
    node = start_node(node={"tls": {"cert_file": str(crt), "key_file": str(key)}})
    good = ssl.create_default_context(cafile=str(crt))
    assert _echo_tls(node.port, good)
    plain = subprocess.run(["echoscu", "-aec", "WBSPINE", "127.0.0.1", str(node.port)], env=NODELAY_ENV,
                           capture_output=True, text=True, timeout=30)
    assert plain.returncode != 0
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(crt))
    try:
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1
    except (ValueError, ssl.SSLError):
        pytest.fail("this OpenSSL cannot even build a TLS 1.0 client context")
    assert not _echo_tls(node.port, old)


def test_oversized_pdu_is_dropped_without_buffering(start_node) -> None:
    import socket
    import struct

    node = start_node()
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:
        s.sendall(b"\x04\x00" + struct.pack(">L", 2**31) + b"\x00" * 4096)  # P-DATA claiming 2 GiB
        started = time.monotonic()
        try:
            assert s.recv(100) == b""  # closed without reading (or buffering) the 2 GiB
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 5
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="WBSPINE")  # the node is still serving
    assert assoc.is_established
    assoc.release()


def test_secondary_capture_context_is_refused(start_node) -> None:
    node = start_node()
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7")  # Secondary Capture Image Storage
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="WBSPINE")
    try:
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == [Verification]
        assert [c.abstract_syntax for c in assoc.rejected_contexts] == ["1.2.840.10008.5.1.4.1.1.7"]
    finally:
        assoc.release()


def test_dataset_over_the_size_limit_drops_the_peer_not_the_node(start_node, short_series: Path) -> None:
    import pytest as _pytest
    from pydicom import dcmread

    from rawscu import CT, associate, encode_ds, send_raw

    node = start_node(node={"max_instance_mb": 1})
    big = dcmread(sorted(short_series.glob("*.dcm"))[0])
    big.ImageComments = "x" * 1_500_000  # ≈ 1.5 MB data set
    assoc = associate(node.port)
    with _pytest.raises(AssertionError, match="no C-STORE response"):
        send_raw(assoc, CT, str(big.SOPInstanceUID), encode_ds(big))
    wait_for(lambda: not assoc.is_established, timeout_s=10)
    small = dcmread(sorted(short_series.glob("*.dcm"))[1])
    assoc = associate(node.port)
    try:
        assert send_raw(assoc, CT, str(small.SOPInstanceUID), encode_ds(small)) == 0x0000
    finally:
        assoc.release()
    assert node.index.query("SELECT COUNT(*) FROM instances")[0][0] == 1
