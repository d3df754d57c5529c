"""A hostile C-STORE SCU: arbitrary bytes under any command UIDs and transfer syntax,
messages cut short by an A-ABORT, raw PDUs. Built on pynetdicom's own PDU and DIMSE
encoders, driven by hand (the reactor is paused while we write to the socket)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.pdu import P_DATA_TF

from tests.dicom_node.rawscu import c_store_request

CT = "1.2.840.10008.5.1.4.1.1.2"
A_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"


def associate(port: int, syntaxes: tuple[str, ...] = (ExplicitVRLittleEndian,), sop_class: str = CT,
              calling: str = "SCANNER", max_pdu: int = 16384) -> Association:
    ae = AE(ae_title=calling)
    ae.maximum_pdu_size = max_pdu
    for ts in syntaxes:  # one context per syntax, so the node must accept each on its own
        ae.add_requested_context(sop_class, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title="WBSPINE")
    assert assoc.is_established
    return assoc


@contextmanager
def paused(assoc: Association) -> Iterator[None]:
    """Hold pynetdicom's reactor so the test owns the socket."""
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        yield
    finally:
        assoc._reactor_checkpoint.set()


def send(assoc: Association, raw: bytes, sop_instance: str, sop_class: str = CT,
         syntax: str = ExplicitVRLittleEndian, message_id: int = 1) -> int | None:
    """Send ``raw`` as a C-STORE data set; the response status, or None if the peer hung up."""
    ctx = assoc._get_valid_context(sop_class, syntax, "scu")
    with paused(assoc):
        assoc.dimse.send_msg(c_store_request(sop_class, sop_instance, raw, message_id), ctx.context_id)
        _, rsp = assoc.dimse.get_msg(block=True)
    return None if rsp is None else int(rsp.Status)


def send_half_then_abort(assoc: Association, raw: bytes, sop_instance: str, sop_class: str = CT) -> int:
    """Write the command and half the data set's P-DATA PDUs, then an A-ABORT; PDUs written."""
    ctx = assoc._get_valid_context(sop_class, ExplicitVRLittleEndian, "scu")
    msg = C_STORE_RQ()
    msg.primitive_to_message(c_store_request(sop_class, sop_instance, raw, 1))
    pdus = []
    for primitive in msg.encode_msg(ctx.context_id, assoc.acceptor.maximum_length):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdus.append(pdu.encode())
    sock = assoc.dul.socket.socket
    with paused(assoc):
        for pdu in pdus[: len(pdus) // 2]:
            sock.sendall(pdu)
        sock.sendall(A_ABORT)
        time.sleep(0.2)
    return len(pdus) // 2
