"""Tiny result objects (SEG, SR, STL by SOP class) and a DCMTK storescp PACS that refuses STL.

The results carry only what C-STORE needs (file meta, SOP class/instance, study/series UIDs
and a patient name that must never reach a log): the outbox tests are about transport, so
a real SEG/SR would only cost time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_node.index import Index
from dicom_node.outbox import enqueue
from dicom_node.scu import read_file_info
from dicom_node.tools import dcmtk_command
from tests.dicom_node.conftest import NODELAY_ENV, wait_for

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SR = "1.2.840.10008.5.1.4.1.1.88.34"       # Comprehensive 3D SR
STL = "1.2.840.10008.5.1.4.1.1.104.3"      # Encapsulated STL
#: The order the pipeline returns results in (appliance.pipeline.StudyResult.dicom_files).
RESULT_CLASSES = (SEG, SR, STL)
PATIENT = "SECRET^PATIENT"


def tiny_result(path: Path, sop_class: str, study: int) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(study), "study"])
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = PATIENT, f"P{study}", "OT"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_jobs(index: Index, root: Path, n_jobs: int, destination: tuple[str, str, int],
              classes: tuple[str, ...] = RESULT_CLASSES) -> list[int]:
    """``n_jobs`` jobs in ``sending``, each with one tiny result per class queued for ``destination``."""
    jobs = []
    for k in range(n_jobs):
        files = [read_file_info(tiny_result(root / f"job{k}" / f"r{i}.dcm", c, k)) for i, c in enumerate(classes)]
        with index.tx() as db:
            job = int(db.execute("INSERT INTO jobs (series_uid, state, created_at, updated_at) "
                                 "VALUES (?, 'sending', 0, 0)", (f"1.2.{k}",)).lastrowid)
            enqueue(db, job, files, [destination])
        jobs.append(job)
    return jobs


STORESCP_NO_STL = """[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[[PresentationContexts]]
[Results]
PresentationContext1 = 1.2.840.10008.1.1\\Uncompressed
PresentationContext2 = {seg}\\Uncompressed
PresentationContext3 = {sr}\\Uncompressed

[[Profiles]]
[NoSTL]
PresentationContexts = Results
""".format(seg=SEG, sr=SR)


@contextmanager
def storescp_without_stl(port: int, root: Path) -> Iterator[Path]:
    """DCMTK storescp on 127.0.0.1 accepting SEG and SR only (no Encapsulated STL context);
    yields the folder it stores into."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "scp.cfg").write_text(STORESCP_NO_STL)
    out = root / "stored"
    out.mkdir()
    proc = subprocess.Popen([dcmtk_command("storescp"), "-xf", str(root / "scp.cfg"), "NoSTL", "-aet", "PACS",
                             "-od", str(out), str(port)], env=NODELAY_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run([dcmtk_command("echoscu"), "-aec", "PACS", "127.0.0.1", str(port)],
                                        env=NODELAY_ENV, capture_output=True).returncode == 0, timeout_s=10)
        yield out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stored_uids(folder: Path) -> dict[str, str]:
    """SOP Instance UID → SOP Class UID of the files a storescp wrote."""
    return {str(ds.SOPInstanceUID): str(ds.SOPClassUID)
            for ds in (dcmread(f, stop_before_pixels=True) for f in folder.iterdir() if f.is_file())}
