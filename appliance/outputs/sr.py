"""Measurement report: PS3.16 TID 1500 in a Comprehensive 3D SR (PS3.3 A.35.13).

Groups (TID 1411 Volumetric ROI Measurements, each referencing a SEG segment and the
source series it segments, TID 1411 row "Source series for segmentation"):

- one per coronal curve: Cobb angle (SCT 285285000) with the end vertebrae as finding
  sites and upper/lower/apex vertebra as coded qualitative evaluations;
- sagittal and spinopelvic parameters (private codes, :mod:`codes`);
- vertebral axial rotation, one value per vertebra (finding site = that vertebra);
- the volume of each segmented structure (SCT 118565006, UCUM ``cm3``), which exists
  whenever anything was segmented, so a report whose angles all failed still carries
  the group TID 1500 requires and says why in its text items.

Every angle is a NUM item in UCUM ``deg``. A ``null`` value is never sent as a number:
it becomes a TEXT item "not measured: reason" in the TID 1500 "Qualitative Evaluations"
container, next to the measurement warnings and a readable summary. That text keeps its
"°", "±", "≥", "–" as written: the report is UTF-8 (:mod:`charset`), whatever character
set the source series uses.

A report of a series that grew after it was reported (the node reprocessed it) names the
earlier report(s) in its Predecessor Documents Sequence (0040,A360, PS3.3 C.17.2.3): the
new report replaces them. It has its own SOP Instance and Series Instance UIDs.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code

from appliance import __version__
from appliance.errors import OutputError
from appliance.outputs import codes
from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.charset import SPECIFIC_CHARACTER_SET
from appliance.outputs.seg import SegmentSpec
from appliance.outputs.source import SourceSeries
from appliance.outputs.summary import not_measured_reasons, summary_text

SR_SERIES_NUMBER = 902
#: SOP Class UIDs of every SR storage class start so (PS3.4 B.5, "1.2.840.10008.5.1.4.1.1.88.x").
SR_STORAGE_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


def predecessors(previous: Sequence[tuple[str, str, str, str]]) -> list[Dataset]:
    """The SR objects among ``previous`` (Study, Series, SOP Class, SOP Instance UID) as the
    minimal data sets highdicom's ``previous_versions`` reads; other objects are left out
    (the Predecessor Documents Sequence references SR documents only)."""
    out = []
    for study_uid, series_uid, sop_class_uid, sop_uid in previous:
        if str(sop_class_uid).startswith(SR_STORAGE_PREFIX):
            ds = Dataset()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPClassUID, ds.SOPInstanceUID = sop_class_uid, sop_uid
            out.append(ds)
    return out
QUALITATIVE_EVALUATIONS = Code("126010", "DCM", "Qualitative Evaluations")
SUMMARY = Code("121111", "DCM", "Summary")


def _deg(name: Code, value: float, sites: list[str], algo: hd.sr.AlgorithmIdentification) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=name, value=float(value), unit=codes.DEGREE, algorithm_id=algo,
        finding_sites=[hd.sr.FindingSite(codes.site_code(s)) for s in sites],
    )


def _curve_group(k: int, curve: dict, ref: hd.sr.ReferencedSegment | None,
                 algo: hd.sr.AlgorithmIdentification) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    upper, lower, apex = curve["upper_end_vertebra"], curve["lower_end_vertebra"], curve.get("apex_vertebra")
    evaluations = [hd.sr.QualitativeEvaluation(codes.UPPER_END_VERTEBRA, codes.site_code(upper)),
                   hd.sr.QualitativeEvaluation(codes.LOWER_END_VERTEBRA, codes.site_code(lower))]
    if apex:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.APEX_VERTEBRA, codes.site_code(apex)))
    return _group(f"Coronal curve {k + 1}{' (major)' if k == 0 else ''}", ref, algo,
                  [_deg(codes.COBB_ANGLE, curve["angle_deg"], [upper, lower], algo)], evaluations,
                  finding_type=codes.CORONAL_CURVE)


def _group(title: str, ref: hd.sr.ReferencedSegment | None, algo: hd.sr.AlgorithmIdentification,
           measurements: list, evaluations: list | None = None, finding_type: Code | None = None):
    tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=title)
    common = dict(tracking_identifier=tracking, finding_type=finding_type, algorithm_id=algo,
                  measurements=measurements, qualitative_evaluations=evaluations or None)
    if ref is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=ref, **common)


def _curves(m: dict) -> list[dict]:
    curves = [c for c in (m.get("curves") or []) if c and c.get("angle_deg") is not None]
    cobb = m.get("cobb")
    if cobb and cobb.get("angle_deg") is not None and cobb not in curves:
        curves.insert(0, cobb)
    return curves


def measurement_groups(m: dict, refs: dict[str, hd.sr.ReferencedSegment],
                       algo: hd.sr.AlgorithmIdentification) -> list:
    """TID 1411/1501 groups for every measured (non-null) parameter of ``m``."""
    spine_ref = refs.get("vertebral_bodies")
    groups = [_curve_group(k, c, spine_ref, algo) for k, c in enumerate(_curves(m))]
    sagittal, pelvic = [], []
    for key, (name, sites) in codes.SCALAR_PARAMETERS.items():
        if m.get(key) is not None:
            (pelvic if "pelvis" in sites or "S1" in sites else sagittal).append(_deg(name, m[key], list(sites), algo))
    if sagittal:
        groups.append(_group("Sagittal alignment", spine_ref, algo, sagittal))
    if pelvic:
        groups.append(_group("Spinopelvic parameters", refs.get("pelvis"), algo, pelvic))
    rotation = [_deg(codes.VERTEBRAL_ROTATION, v, [name], algo)
                for name, v in (m.get("vertebral_rotation_deg") or {}).items()
                if v is not None]
    if rotation:
        groups.append(_group("Vertebral axial rotation", spine_ref, algo, rotation))
    for name, volume in (m.get("structure_volumes_cm3") or {}).items():
        ref = refs.get(name)
        groups.append(_group(f"Volume of {name.replace('_', ' ')}", ref, algo, [hd.sr.Measurement(
            name=codes.VOLUME, value=float(volume), unit=codes.CUBIC_CENTIMETER, algorithm_id=algo)]))
    return groups


def _text_container(m: dict) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
    items = [hd.sr.TextContentItem(SUMMARY, summary_text(m), relationship_type="CONTAINS")]
    for name, reason in not_measured_reasons(m):
        items.append(hd.sr.TextContentItem(name, f"not measured: {reason}"[:1024], relationship_type="CONTAINS"))
    for warning in m.get("warnings") or []:
        items.append(hd.sr.TextContentItem(codes.MEASUREMENT_WARNING, str(warning)[:1024],
                                           relationship_type="CONTAINS"))
    container.ContentSequence = items
    return container


def build_sr(measurements: dict, source: SourceSeries, seg: Dataset, specs: list[SegmentSpec],
             algorithm: AlgorithmInfo, series_uid: str | None = None,
             previous: Sequence[tuple[str, str, str, str]] = ()) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report of ``measurements`` (``wbspine.measurements/1``); ``previous``: the
    result objects of the version this one replaces (see :func:`predecessors`)."""
    algo = hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version)
    series = hd.sr.SourceSeriesForSegmentation(str(source.first.SeriesInstanceUID))
    refs = {spec.key: hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                              segment_number=i + 1, source_series=series)
            for i, spec in enumerate(specs)}
    observer = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=algorithm.name, manufacturer_name=algorithm.manufacturer,
            model_name=f"{algorithm.name} {algorithm.version}"),
    )
    groups = measurement_groups(measurements, refs, algo)
    if not groups:
        raise OutputError("nothing was segmented or measured: no measurement report can be written")
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=dcm_codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
        title=dcm_codes.DCM.ImagingMeasurementReport,
    )
    report[0].ContentSequence.append(_text_container(measurements))
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*source.datasets, seg],
        content=report[0],
        series_instance_uid=series_uid or hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        is_complete=True,
        series_description="wbspine spinal and pelvic parameters",
        specific_character_set=SPECIFIC_CHARACTER_SET,
        previous_versions=predecessors(previous) or None,
    )
    sr.SoftwareVersions = __version__
    sr.CodingSchemeIdentificationSequence = codes.coding_scheme_identification()
    return sr


def numeric_items(sr: Dataset) -> list[tuple[str, float, str, list[str]]]:
    """(concept code value, value, unit, finding-site code values) of every NUM item."""
    found: list[tuple[str, float, str, list[str]]] = []

    def walk(items) -> None:
        for item in items:
            if item.ValueType == "NUM":
                mv = item.MeasuredValueSequence[0]
                sites = [str(c.ConceptCodeSequence[0].CodeValue) for c in item.get("ContentSequence", [])
                         if c.ValueType == "CODE" and c.ConceptNameCodeSequence[0].CodeValue == "363698007"]
                found.append((str(item.ConceptNameCodeSequence[0].CodeValue), float(mv.NumericValue),
                              str(mv.MeasurementUnitsCodeSequence[0].CodeValue), sites))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found
