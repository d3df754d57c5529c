"""TID 1500 SR: numbers equal the measurements JSON, each with its code, unit and vertebrae;
nulls omitted with reasons; text read back exactly, non-ASCII included; DCMTK reads it."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.sr.coding import Code

from appliance.outputs import codes
from appliance.outputs.sr import numeric_items
from tests.appliance.outputs.conftest import NON_ASCII_WARNING
from tests.appliance.outputs.dicom_checks import dsrdump

#: The vertebrae (finding sites) each scalar parameter is measured between, by definition
#: (appliance.measure.definitions): CID 7603 codes, sacrum SCT 54735007, pelvis SCT 118645006.
SCALAR_SITES = {
    "thoracic_kyphosis_deg": ["64864005", "23215003"],  # T1, T12
    "thoracic_kyphosis_t4_t12_deg": ["73071006", "23215003"],  # T4, T12
    "lumbar_lordosis_deg": ["66794005", "49668003"],  # L1, L5
    "lumbar_lordosis_l1_s1_deg": ["66794005", "54735007"],  # L1, sacrum
    "sacral_slope_deg": ["54735007"],
    "pelvic_tilt_deg": ["118645006"],
    "pelvic_incidence_deg": ["118645006"],
}


@pytest.fixture(scope="module")
def sr(written):
    return pydicom.dcmread(written.paths["sr"])


def test_every_measured_parameter_is_a_num_in_degrees(written, sr):
    m = written.measurements
    items = [i for i in numeric_items(sr) if i[0] != codes.VOLUME.value]
    assert all(unit == "deg" for _, _, unit, _ in items)
    by_code: dict[str, list] = {}
    for code, value, _, sites in items:
        by_code.setdefault(code, []).append((value, sites))
    cobbs = sorted(v for v, _ in by_code[codes.COBB_ANGLE.value])
    assert cobbs == pytest.approx(sorted(c["angle_deg"] for c in m["curves"]), abs=1e-9)
    for curve in m["curves"]:  # every curve keeps its own end vertebrae
        (_, sites), = [x for x in by_code[codes.COBB_ANGLE.value] if x[0] == pytest.approx(curve["angle_deg"])]
        assert sites == [codes.VERTEBRA[curve[k]].value for k in ("upper_end_vertebra", "lower_end_vertebra")]
    major = m["cobb"]
    (value, sites), = [x for x in by_code[codes.COBB_ANGLE.value] if x[0] == pytest.approx(major["angle_deg"])]
    ends = [codes.VERTEBRA[major[k]].value for k in ("upper_end_vertebra", "lower_end_vertebra")]
    assert sites == ends
    for key, (concept, _) in codes.SCALAR_PARAMETERS.items():
        if m[key] is None:
            assert concept.value not in by_code
        else:
            (value, sites), = by_code[concept.value]
            assert value == pytest.approx(m[key], abs=1e-9)
            assert sites == SCALAR_SITES[key], key
    rotation = {sites[0]: v for v, sites in by_code[codes.VERTEBRAL_ROTATION.value]}
    expected = {codes.VERTEBRA[k].value: v for k, v in m["vertebral_rotation_deg"].items() if v is not None}
    assert rotation == pytest.approx(expected, abs=1e-9)


def _texts(sr) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}

    def walk(items):
        for item in items:
            if item.ValueType == "TEXT":
                out.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item.TextValue)
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return out


def test_nulls_are_omitted_with_reason_and_warnings_and_summary_are_text(written, sr):
    texts = _texts(sr)
    NULL_REASON = written.measurements["warnings"][0]
    assert texts[codes.THORACIC_KYPHOSIS.meaning] == [f"not measured: {NULL_REASON}"]
    assert any(t.startswith("not measured: C2: ") for t in texts[codes.VERTEBRAL_ROTATION.meaning])
    assert texts[codes.MEASUREMENT_WARNING.meaning] == written.measurements["warnings"]
    summary = texts["Summary"][0]
    assert "Cobb (major)" in summary and "Pelvic incidence" in summary and "Thoracic kyphosis T1-T12" in summary


def test_references_private_scheme_and_template(written, sr):
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.StudyInstanceUID == written.source.study_instance_uid
    declared = [i.CodingSchemeDesignator for i in sr.CodingSchemeIdentificationSequence]
    assert declared == [codes.PRIVATE_SCHEME]
    seg = pydicom.dcmread(written.paths["seg"])
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert seg.SOPInstanceUID in evidence
    others = {i.ReferencedSOPInstanceUID for s in sr.get("PertinentOtherEvidenceSequence", [])
              for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert {ds.SOPInstanceUID for ds in written.source.datasets} <= evidence | others


def test_non_ascii_text_is_read_back_exactly_under_utf8(written, sr):
    assert NON_ASCII_WARNING in written.measurements["warnings"]
    assert sr.SpecificCharacterSet == "ISO_IR 192"
    assert NON_ASCII_WARNING in _texts(sr)[codes.MEASUREMENT_WARNING.meaning]
    assert sr.PatientName == written.source.first.PatientName


def test_dsrdump_reads_the_report(written):
    status, dump, messages = dsrdump(written.paths["sr"])  # no options
    assert status == 0 and not messages, messages
    assert "Cobb angle" in dump and "Imaging Measurement Report" in dump
    assert "Finding Site" in dump and "Referenced Segment" in dump
    assert f'"{written.source.first.SeriesInstanceUID}"' in dump  # source series for segmentation
    assert f'="{NON_ASCII_WARNING[:12]}' in dump  # dsrdump shortens long text values


def test_end_and_apex_vertebrae_are_coded_evaluations(written, sr):
    major = written.measurements["cobb"]
    found = {}

    def walk(items):
        for item in items:
            if item.ValueType == "CODE":
                found.setdefault(item.ConceptNameCodeSequence[0].CodeValue, []).append(
                    item.ConceptCodeSequence[0].CodeValue)
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    assert codes.VERTEBRA[major["upper_end_vertebra"]].value in found[codes.UPPER_END_VERTEBRA.value]
    assert codes.VERTEBRA[major["lower_end_vertebra"]].value in found[codes.LOWER_END_VERTEBRA.value]
    assert codes.VERTEBRA[major["apex_vertebra"]].value in found[codes.APEX_VERTEBRA.value]


def test_unusual_level_names_get_private_codes():
    assert codes.site_code("L6") == Code("WBSVL6", codes.PRIVATE_SCHEME, "L6 vertebra")
    assert codes.site_code("T12") == codes.VERTEBRA["T12"]


def test_structure_volumes_are_nums_in_cm3(written, sr):
    volumes = [(v, unit) for code, v, unit, _ in numeric_items(sr) if code == codes.VOLUME.value]
    expected = written.measurements["structure_volumes_cm3"]
    assert set(expected) == {"vertebral_bodies", "pelvis", "femoral_heads"}
    assert sorted(v for v, _ in volumes) == pytest.approx(sorted(expected.values()), abs=1e-9)
    assert {unit for _, unit in volumes} == {"cm3"}


def test_a_superseding_report_names_the_earlier_report_and_stays_dciodvfy_clean(written, sr, tmp_path):
    """PS3.3 C.17.2.3: the new version's Predecessor Documents Sequence holds the earlier SR
    (grouped by its study and series), and no other result object (here its SEG)."""
    from appliance.outputs.seg import segment_label_map
    from appliance.outputs.sr import build_sr
    from tests.appliance.outputs.conftest import ALGORITHM
    from tests.appliance.outputs.dicom_checks import dciodvfy

    seg = pydicom.dcmread(written.paths["seg"])
    previous = [(str(sr.StudyInstanceUID), str(sr.SeriesInstanceUID), str(sr.SOPClassUID), str(sr.SOPInstanceUID)),
                (str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID), str(seg.SOPClassUID), str(seg.SOPInstanceUID))]
    _, specs = segment_label_map(written.study.labels)
    new = build_sr(written.measurements, written.source, seg, specs, ALGORITHM, previous=previous)
    path = tmp_path / "sr_v2.dcm"
    new.save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    assert back.SOPInstanceUID != sr.SOPInstanceUID and back.SeriesInstanceUID != sr.SeriesInstanceUID
    (study,) = back.PredecessorDocumentsSequence
    assert study.StudyInstanceUID == sr.StudyInstanceUID
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == sr.SeriesInstanceUID
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in series.ReferencedSOPSequence] == \
        [(sr.SOPClassUID, sr.SOPInstanceUID)]
    assert "PredecessorDocumentsSequence" not in sr  # a first version names none
    status, errors, unexpected = dciodvfy(path)
    assert status == 0 and not errors and not unexpected, (errors, unexpected)
