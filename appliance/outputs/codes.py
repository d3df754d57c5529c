"""Every coded concept the result objects use, in one place.

Standard codes were checked against pydicom's DICOM PS3.16 concept dictionary
(``pydicom.sr._concepts_dict``) and, for 3572006, the TG-263 anatomy table:

- Segmented property category: SCT 91723000 "Anatomical Structure" (CID 7150).
- Vertebral bodies: SCT 3572006 "Structure of body of vertebra" (meaning "Vertebral body").
- Pelvis: SCT 118645006 "Bone structure of pelvis" (meaning "Pelvis", CID 7304/8134).
  SCT 816092008 "Pelvis" is the pelvic *region* (CID 4, anatomic region); our label is
  the bony pelvis with the sacrum, so the bone structure code is the segmented property
  type and 816092008 the anatomic region.
- Femoral head: SCT 2812003 "Femoral head" (CID 7304/8134); laterality as segmented
  property type modifier: SCT 7771000 "Left", SCT 24028007 "Right" (CID 244).
- Vertebrae: CID 7603 "Vertebra" codes (SCT bone structure of C1 … L5); sacrum
  SCT 54735007.
- Cobb angle: SCT 285285000 (CID 7550); unit UCUM "deg" (CID 7183).

Parameters with no standard code use the private coding scheme ``99WBSPINE``
(PS3.16 8.2: designators starting with "99" are private), declared in the SR's Coding
Scheme Identification Sequence (PS3.3 C.12.1.1.4) by :func:`coding_scheme_identification`.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

PRIVATE_SCHEME = "99WBSPINE"
PRIVATE_SCHEME_NAME = "wbspine spinal and pelvic parameters"
PRIVATE_SCHEME_VERSION = "1"
PRIVATE_SCHEME_UID = "2.25.186431960236541397946046812939394745419"

ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
VERTEBRAL_BODY = Code("3572006", "SCT", "Vertebral body")
PELVIS_BONE = Code("118645006", "SCT", "Pelvis")
PELVIS_REGION = Code("816092008", "SCT", "Pelvis")
SPINE_REGION = Code("421060004", "SCT", "Spine")
FEMORAL_HEAD = Code("2812003", "SCT", "Femoral head")
SACRUM = Code("54735007", "SCT", "Sacrum")
LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")
COBB_ANGLE = Code("285285000", "SCT", "Cobb angle")
DEGREE = Code("deg", "UCUM", "degree")
#: Segmented structure volume: SCT 118565006 "Volume" in UCUM cm3 (CID 7182).
VOLUME = Code("118565006", "SCT", "Volume")
CUBIC_CENTIMETER = Code("cm3", "UCUM", "cubic centimeter")

#: CID 7603 Vertebra.
VERTEBRA: dict[str, Code] = {
    name: Code(value, "SCT", f"{name} vertebra")
    for name, value in {
        "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002",
        "C5": "36978003", "C6": "36054005", "C7": "87391001",
        "T1": "64864005", "T2": "53733008", "T3": "1626008", "T4": "73071006",
        "T5": "56401006", "T6": "45296009", "T7": "62487009", "T8": "11068009",
        "T9": "82687006", "T10": "7610001", "T11": "12989004", "T12": "23215003",
        "L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002",
        "L5": "49668003",
    }.items()
}


def _p(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


#: Private codes (scheme 99WBSPINE). Definitions: appliance.measure.definitions.
THORACIC_KYPHOSIS = _p("WBS0001", "Thoracic kyphosis T1-T12")
THORACIC_KYPHOSIS_T4_T12 = _p("WBS0002", "Thoracic kyphosis T4-T12")
LUMBAR_LORDOSIS = _p("WBS0003", "Lumbar lordosis L1-L5")
LUMBAR_LORDOSIS_L1_S1 = _p("WBS0004", "Lumbar lordosis L1-S1")
SACRAL_SLOPE = _p("WBS0005", "Sacral slope")
PELVIC_TILT = _p("WBS0006", "Pelvic tilt")
PELVIC_INCIDENCE = _p("WBS0007", "Pelvic incidence")
VERTEBRAL_ROTATION = _p("WBS0008", "Vertebral axial rotation relative to hip axis")
UPPER_END_VERTEBRA = _p("WBS0009", "Upper end vertebra")
LOWER_END_VERTEBRA = _p("WBS0010", "Lower end vertebra")
APEX_VERTEBRA = _p("WBS0011", "Apex vertebra")
NOT_MEASURED = _p("WBS0012", "Parameter not measured")
MEASUREMENT_WARNING = _p("WBS0013", "Measurement warning")
SPINAL_ALIGNMENT = _p("WBS0014", "Whole-spine alignment from segmentation")
CORONAL_CURVE = _p("WBS0015", "Coronal curve")

#: Scalar parameters of the measurements JSON → (concept, finding-site names).
SCALAR_PARAMETERS: dict[str, tuple[Code, tuple[str, ...]]] = {
    "thoracic_kyphosis_deg": (THORACIC_KYPHOSIS, ("T1", "T12")),
    "thoracic_kyphosis_t4_t12_deg": (THORACIC_KYPHOSIS_T4_T12, ("T4", "T12")),
    "lumbar_lordosis_deg": (LUMBAR_LORDOSIS, ("L1", "L5")),
    "lumbar_lordosis_l1_s1_deg": (LUMBAR_LORDOSIS_L1_S1, ("L1", "S1")),
    "sacral_slope_deg": (SACRAL_SLOPE, ("S1",)),
    "pelvic_tilt_deg": (PELVIC_TILT, ("pelvis",)),
    "pelvic_incidence_deg": (PELVIC_INCIDENCE, ("pelvis",)),
}


def site_code(name: str) -> Code:
    """Anatomic code of a finding-site name used by the measurements JSON."""
    if name in VERTEBRA:
        return VERTEBRA[name]
    if name == "S1":
        return SACRUM
    if name == "pelvis":
        return PELVIS_BONE
    # a level outside CID 7603 (e.g. "L6", "T13" in transitional anatomy): private code
    return Code(f"WBSV{name}"[:16], PRIVATE_SCHEME, f"{name} vertebra")


def coding_scheme_identification() -> list[Dataset]:
    """Items of the Coding Scheme Identification Sequence (0008,0110) declaring 99WBSPINE."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeUID = PRIVATE_SCHEME_UID
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = PRIVATE_SCHEME_VERSION
    item.CodingSchemeResponsibleOrganization = "wbspine project"
    return [item]
