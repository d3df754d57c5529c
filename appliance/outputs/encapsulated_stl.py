"""DICOM Encapsulated STL (PS3.3 A.85.1; SOP Class 1.2.840.10008.5.1.4.1.1.104.3).

Modules: Patient, General Study (copied from the source), Encapsulated Document Series
(Modality M3D, C.24.1), Frame of Reference (the source's: the STL vertices are LPS mm
of that frame, C.7.4.1), Enhanced General Equipment (C.7.5.2), Manufacturing 3D Model
(C.7.6.26: units mm), Encapsulated Document (C.24.2: MIME type model/stl, source
instances referenced) and SOP Common.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import highdicom as hd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from appliance import __version__
from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.charset import SPECIFIC_CHARACTER_SET
from appliance.outputs.source import SourceSeries

ENCAPSULATED_STL_STORAGE = "1.2.840.10008.5.1.4.1.1.104.3"
STL_SERIES_NUMBER = 904

_PATIENT_STUDY = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
)


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _source_reference(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def build_encapsulated_stl(stl_path: str | Path, title: str, source: SourceSeries, algorithm: AlgorithmInfo,
                           series_uid: str, instance_number: int) -> Dataset:
    """Wrap the binary STL at ``stl_path`` as an Encapsulated STL instance."""
    document = Path(stl_path).read_bytes()
    now = datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET  # the copied names may not be ASCII
    for keyword in _PATIENT_STUDY:
        ds.__setattr__(keyword, source.first.get(keyword, ""))
    ds.SOPClassUID = ENCAPSULATED_STL_STORAGE
    ds.SOPInstanceUID = hd.UID()
    ds.Modality = "M3D"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = STL_SERIES_NUMBER
    ds.SeriesDescription = "wbspine 3D models (STL)"
    ds.FrameOfReferenceUID = source.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = algorithm.manufacturer
    ds.ManufacturerModelName = "wbspine"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = __version__
    ds.MeasurementUnitsCodeSequence = [_code_item("mm", "UCUM", "mm")]
    ds.InstanceNumber = instance_number
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "model/stl"
    ds.SourceInstanceSequence = [_source_reference(d) for d in source.datasets]
    ds.EncapsulatedDocument = document + (b"\0" if len(document) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(document)
    series = Dataset()  # Common Instance Reference module (C.12.2)
    series.SeriesInstanceUID = source.first.SeriesInstanceUID
    series.ReferencedInstanceSequence = [_source_reference(d) for d in source.datasets]
    ds.ReferencedSeriesSequence = [series]
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds
