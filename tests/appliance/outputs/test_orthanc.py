"""Presentation contexts: Orthanc (an independent PACS) accepts every result object over
C-STORE, sent by pynetdicom and by DCMTK's ``storescu -R``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, StoragePresentationContexts

from appliance.outputs.encapsulated_stl import ENCAPSULATED_STL_STORAGE
from dicom_node.tools import dcmtk_command
from dicom_node.ports import free_port as _free_port

ORTHANC_AET = "ORTHANC"



def _get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def _delete(port: int, path: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="DELETE"), timeout=5)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    exe = shutil.which("Orthanc")
    assert exe, "Orthanc is required"
    root = tmp_path_factory.mktemp("orthanc")
    dicom_port, http_port = _free_port(), _free_port()
    config = {"Name": "wbspine-test", "DicomAet": ORTHANC_AET, "DicomPort": dicom_port, "HttpPort": http_port,
              "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": False,
              "Plugins": []}
    (root / "orthanc.json").write_text(json.dumps(config))
    env = {**os.environ, "TCP_NODELAY": "1"}
    log = open(root / "orthanc.log", "wb")
    proc = subprocess.Popen([exe, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _get(http_port, "/system")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((root / "orthanc.log").read_text())
                time.sleep(0.05)
        yield dicom_port, http_port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _dicom_files(written) -> list[Path]:
    return [p for role, p in written.paths.items() if p.suffix == ".dcm"]


def _stored_sop_uids(http_port: int) -> set[str]:
    uids = set()
    for inst in _get(http_port, "/instances"):
        uids.add(_get(http_port, f"/instances/{inst}/simplified-tags")["SOPInstanceUID"])
    return uids


def _clear(http_port: int) -> None:
    for patient in _get(http_port, "/patients"):
        _delete(http_port, f"/patients/{patient}")


def test_default_storage_contexts_lack_encapsulated_stl():
    assert ENCAPSULATED_STL_STORAGE not in {c.abstract_syntax for c in StoragePresentationContexts}
    assert ENCAPSULATED_STL_STORAGE in {c.abstract_syntax for c in AllStoragePresentationContexts}


def test_pynetdicom_c_store_every_object(written, orthanc):
    dicom_port, http_port = orthanc
    _clear(http_port)
    datasets = [pydicom.dcmread(p) for p in _dicom_files(written)]
    classes = {str(ds.SOPClassUID) for ds in datasets}
    ae = AE(ae_title="WBSPINE")
    for ctx in AllStoragePresentationContexts:
        if ctx.abstract_syntax in classes:
            ae.add_requested_context(ctx.abstract_syntax, ctx.transfer_syntax)
    assoc = ae.associate("127.0.0.1", dicom_port, ae_title=ORTHANC_AET)
    assert assoc.is_established
    try:
        statuses = [assoc.send_c_store(ds).Status for ds in datasets]
    finally:
        assoc.release()
    assert statuses == [0x0000] * len(datasets)
    assert _stored_sop_uids(http_port) == {str(ds.SOPInstanceUID) for ds in datasets}
    modalities = {_get(http_port, f"/series/{s}")["MainDicomTags"]["Modality"] for s in _get(http_port, "/series")}
    assert modalities == {"SEG", "SR", "OT", "M3D"}  # OT: the key images (Secondary Capture)


def test_storescu_c_store_every_object(written, orthanc):
    dicom_port, http_port = orthanc
    _clear(http_port)
    files = _dicom_files(written)
    run = subprocess.run([dcmtk_command("storescu"), "-R", "-aec", ORTHANC_AET, "127.0.0.1", str(dicom_port), *map(str, files)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "TCP_NODELAY": "1"})
    assert run.returncode == 0, run.stderr
    assert _stored_sop_uids(http_port) == {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                                           for p in files}
