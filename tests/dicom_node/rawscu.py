"""A scripted C-STORE SCU that sends arbitrary data set bytes under any command UIDs."""

from __future__ import annotations

import time
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

CT = "1.2.840.10008.5.1.4.1.1.2"


def associate(port: int, calling: str = "SCANNER", sop_class: str = CT) -> Association:
    ae = AE(ae_title=calling)
    ae.add_requested_context(sop_class, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="WBSPINE")
    assert assoc.is_established
    return assoc


def encode_ds(ds: Dataset) -> bytes:
    return encode(ds, False, True)


def c_store_request(sop_class: str, sop_instance: str, raw: bytes, message_id: int = 1) -> C_STORE:
    """A C-STORE request carrying ``raw`` bytes as its (possibly malformed) data set."""
    req = C_STORE()
    req.MessageID = message_id
    req.AffectedSOPClassUID = sop_class
    req.AffectedSOPInstanceUID = sop_instance
    req.Priority = 2
    req.DataSet = BytesIO(raw)
    return req


def send_raw(assoc: Association, sop_class: str, sop_instance: str, raw: bytes,
             message_id: int = 1) -> int:
    """Send ``raw`` as the data set of a C-STORE with the given Affected UIDs; return the status."""
    req = c_store_request(sop_class, sop_instance, raw, message_id)
    ctx = assoc._get_valid_context(sop_class, ExplicitVRLittleEndian, "scu")
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        assoc.dimse.send_msg(req, ctx.context_id)
        _, rsp = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    assert rsp is not None, "no C-STORE response"
    return int(rsp.Status)
