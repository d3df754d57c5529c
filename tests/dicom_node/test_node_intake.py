"""intake.inspect reads the values it needs from raw element bytes: same answers as pydicom's
converters, in every uncompressed byte order, and the same refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dicom_node.errors import CannotUnderstand
from dicom_node.intake import inspect

SYNTAXES = {"1.2.840.10008.1.2.1": (False, True), "1.2.840.10008.1.2": (True, True),
            "1.2.840.10008.1.2.2": (False, False)}


def _encode(ds, syntax: str) -> bytes:
    out = DicomBytesIO()
    out.is_implicit_VR, out.is_little_endian = SYNTAXES[syntax]
    write_dataset(out, ds)
    return out.getvalue()


@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_fields_match_pydicom(short_series: Path, syntax: str) -> None:
    for f in sorted(short_series.glob("*.dcm"))[::13]:
        ds = dcmread(f)
        ds.ImagesInAcquisition = 40
        info = inspect(_encode(ds, syntax), syntax, ds.SOPClassUID, ds.SOPInstanceUID)
        assert (info.sop_class, info.sop_uid, info.study_uid, info.series_uid) == (
            ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID)
        assert info.instance_number == ds.InstanceNumber and info.images_in_acquisition == 40
        assert info.orientation == ",".join(f"{float(v):.3f}" for v in ds.ImageOrientationPatient)
        assert info.position_mm == pytest.approx(float(ds.ImagePositionPatient[2]))  # axial slices
        assert info.number_of_frames is None


def test_unknown_vr_in_a_needed_element_and_short_pixels_are_refused(short_series: Path) -> None:
    ds = dcmread(sorted(short_series.glob("*.dcm"))[0])
    raw = bytearray(_encode(ds, "1.2.840.10008.1.2.1"))
    at = raw.index(b"\x08\x00\x16\x00UI")
    raw[at + 4:at + 6] = b"U\xff"
    with pytest.raises(CannotUnderstand):
        inspect(bytes(raw), "1.2.840.10008.1.2.1", ds.SOPClassUID, ds.SOPInstanceUID)
    ds.Rows = ds.Rows * 2
    with pytest.raises(CannotUnderstand, match="shorter"):
        inspect(_encode(ds, "1.2.840.10008.1.2.2"), "1.2.840.10008.1.2.2", ds.SOPClassUID, ds.SOPInstanceUID)
