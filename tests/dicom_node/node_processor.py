"""A real but simple processor for the node's tests (the oracle of the job contract).

``make_processor(control_dir)`` returns ``process(series_dir, work_dir, previous=())`` that
reads the series with pydicom and writes two results: a derived CT image (new UIDs, derived
from the input series UID and its instance count, so a rerun of the same version produces
the same instances and a larger version new ones) and an Encapsulated STL. ``previous``
(the results a job supersedes) is written to ``work_dir/previous.json`` for the tests.
Files in ``control_dir`` steer it: ``slow`` (seconds to sleep, for crash tests; it writes
``started`` first) and ``fail`` (raise with the file's text).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ENCAPSULATED_STL = "1.2.840.10008.5.1.4.1.1.104.3"
TRIANGLE_STL = b"solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\n" \
               b"endloop\nendfacet\nendsolid t\n"


def _uid(series_uid: str, what: str) -> str:
    return generate_uid(entropy_srcs=[series_uid, what])


def _stl_dataset(src: Dataset, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_STL
    ds.file_meta.MediaStorageSOPInstanceUID = _uid(series_uid, "stl-instance")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ENCAPSULATED_STL
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
               "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
               "FrameOfReferenceUID"):
        setattr(ds, kw, src.get(kw, ""))
    ds.Modality = "M3D"
    ds.SeriesInstanceUID = _uid(series_uid, "stl-series")
    ds.SeriesNumber = 902
    ds.InstanceNumber = 1
    ds.Manufacturer = "wbspine-test"
    ds.ContentDate, ds.ContentTime = src.get("StudyDate", ""), src.get("StudyTime", "")
    ds.MIMETypeOfEncapsulatedDocument = "model/stl"
    ds.EncapsulatedDocument = TRIANGLE_STL
    ds.EncapsulatedDocumentLength = len(TRIANGLE_STL)
    return ds


def make_processor(control_dir: Path | None):
    control = Path(control_dir) if control_dir else None

    def process(series_dir: Path, work_dir: Path, previous=()) -> list[Path]:
        if control is not None and (control / "fail").exists():
            raise RuntimeError((control / "fail").read_text().strip() or "planted failure")
        if control is not None and (control / "slow").exists():
            (control / "started").write_text(str(time.time()))
            time.sleep(float((control / "slow").read_text() or 60))
        files = sorted(Path(series_dir).glob("*.dcm"))
        if not files:
            raise ValueError("empty series")
        first = dcmread(files[0], stop_before_pixels=True)
        (Path(work_dir) / "previous.json").write_text(json.dumps([list(p) for p in previous]))
        series_uid = f"{first.SeriesInstanceUID}/{len(files)}"  # one set of result UIDs per version
        derived = dcmread(files[len(files) // 2])
        derived.SeriesInstanceUID = _uid(series_uid, "ct-series")
        derived.SOPInstanceUID = _uid(series_uid, "ct-instance")
        derived.file_meta.MediaStorageSOPInstanceUID = derived.SOPInstanceUID
        derived.SeriesNumber = 901
        derived.SeriesDescription = "wbspine test result"
        derived.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        derived.ImageComments = f"{len(files)} input instances"
        out = [Path(work_dir) / "derived.dcm", Path(work_dir) / "model.dcm"]
        derived.save_as(out[0], enforce_file_format=True)
        _stl_dataset(first, series_uid).save_as(out[1], enforce_file_format=True)
        return out

    return process
