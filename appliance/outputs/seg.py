"""DICOM Segmentation (PS3.3 A.51) of the label map, written with highdicom.

One BINARY segment per structure present: vertebral bodies, pelvis (with sacrum),
right femoral head, left femoral head. The femoral-head label is split at the sagittal
midline (the pelvis centroid's LPS x, else the heads' own mean x): +x is patient left
(PS3.3 C.7.6.2.1.1). Empty frames are omitted (PS3.3 C.8.20.2.x "omit empty frames"
behaviour of highdicom); every source instance is referenced and the Frame of
Reference and study are the source's.
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from appliance import __version__
from appliance.errors import OutputError
from appliance.labels import Label
from appliance.outputs import codes
from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.charset import SPECIFIC_CHARACTER_SET
from appliance.outputs.source import SourceSeries
from appliance.outputs.stl import bbox
from appliance.volume import Volume

SEG_SERIES_NUMBER = 901


@dataclass(frozen=True)
class SegmentSpec:
    """A segment: its label text, codes and how to pick its voxels from the label map."""

    key: str
    label: str
    property_type: Code
    anatomic_region: Code
    modifier: Code | None = None
    rgb: tuple[int, int, int] = (255, 200, 0)  # Recommended Display CIELab Value (as RGB)


SEGMENT_SPECS: tuple[SegmentSpec, ...] = (
    SegmentSpec("vertebral_bodies", "Vertebral bodies", codes.VERTEBRAL_BODY, codes.SPINE_REGION,
                rgb=(255, 200, 0)),
    SegmentSpec("pelvis", "Pelvis with sacrum", codes.PELVIS_BONE, codes.PELVIS_REGION, rgb=(0, 170, 255)),
    SegmentSpec("femoral_head_right", "Right femoral head", codes.FEMORAL_HEAD, codes.PELVIS_REGION,
                codes.RIGHT, rgb=(255, 60, 170)),
    SegmentSpec("femoral_head_left", "Left femoral head", codes.FEMORAL_HEAD, codes.PELVIS_REGION,
                codes.LEFT, rgb=(190, 60, 255)),
)


def _x_mm(box: tuple[slice, ...], affine: np.ndarray) -> np.ndarray:
    """LPS x (mm) of every voxel of ``box`` (broadcast (z, y, x) array)."""
    k, j, i = (np.arange(s.start, s.stop) for s in box)
    return (affine[0, 2] * k[:, None, None] + affine[0, 1] * j[None, :, None]
            + affine[0, 0] * i[None, None, :] + affine[0, 3])


def _left_heads(arr: np.ndarray, affine: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Box around the femoral heads and, inside it, the head voxels on the patient's left
    (+x) of the midline (the pelvis centroid's x, else the heads' own mean x)."""
    heads_box = bbox(arr == Label.FEMORAL_HEADS)
    if heads_box is None:
        return None
    pelvis_box = bbox(arr == Label.PELVIS)
    ref_value, ref_box = (Label.PELVIS, pelvis_box) if pelvis_box else (Label.FEMORAL_HEADS, heads_box)
    ref = arr[ref_box] == ref_value
    midline_x = float((_x_mm(ref_box, affine) * ref).sum() / ref.sum())
    heads = arr[heads_box] == Label.FEMORAL_HEADS
    return heads_box, heads & (_x_mm(heads_box, affine) > midline_x)


def segment_label_map(labels: Volume) -> tuple[np.ndarray, list[SegmentSpec]]:
    """Array (z, y, x) of segment numbers 1..n (0 = none) and the specs of segments 1..n.

    Only structures with voxels get a segment; numbers are consecutive from 1. Works by
    look-up tables and boxes, so a full-size (~200 M voxel) map takes about a second.
    """
    arr = np.asarray(labels.array)
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise OutputError("the label map must hold integer labels 0-3, not fractions")
    if arr.dtype.kind not in "uif" or arr.min() < 0 or arr.max() > Label.FEMORAL_HEADS:
        raise OutputError("the label map must hold the labels 0-3 (appliance.labels) only")
    arr = arr.astype(np.uint8, copy=False)
    left = _left_heads(arr, labels.affine)
    counts = [0] + [int(np.count_nonzero(arr == v)) for v in (1, 2, 3)]
    n_left = int(left[1].sum()) if left else 0
    # SEGMENT_SPECS order: bodies (label 1), pelvis (2), right heads (3), left heads (3, +x)
    present = [counts[1] > 0, counts[2] > 0, counts[3] - n_left > 0, n_left > 0]
    if not any(present):
        raise OutputError("the label map is empty: nothing to segment")
    numbers = np.cumsum(present) * np.asarray(present)  # spec index -> segment number (0 = absent)
    if list(numbers[:3]) == [1, 2, 3]:
        out = arr.copy()  # the usual case: labels 1-3 are already segments 1-3
    else:
        lut = np.zeros(256, dtype=np.uint8)
        lut[1], lut[2], lut[3] = numbers[0], numbers[1], numbers[2]
        out = lut[arr]
    if left and n_left:
        box, left_mask = left
        out[box][left_mask] = numbers[3]
    return out, [spec for spec, p in zip(SEGMENT_SPECS, present) if p]


def _description(number: int, spec: SegmentSpec, algorithm: AlgorithmInfo) -> hd.seg.SegmentDescription:
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, version=algorithm.version,
        family=Code("123109", "DCM", "Artificial Intelligence"),
    )
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=spec.label,
        segmented_property_category=codes.ANATOMICAL_STRUCTURE,
        segmented_property_type=spec.property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo,
        tracking_uid=hd.UID(),
        tracking_id=spec.key,
        anatomic_regions=[spec.anatomic_region],
        display_color=hd.color.CIELabColor.from_rgb(*spec.rgb),
    )
    if spec.modifier is not None:
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(spec.modifier)
        ]
    return desc


def build_seg(labels: Volume, source: SourceSeries, algorithm: AlgorithmInfo,
              series_uid: str | None = None) -> tuple[hd.seg.Segmentation, list[SegmentSpec]]:
    """Encode ``labels`` (same grid as ``source``) as a binary DICOM SEG."""
    segment_array, specs = segment_label_map(labels)
    seg = hd.seg.Segmentation(
        source_images=list(source.datasets),
        pixel_array=segment_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(i + 1, s, algorithm) for i, s in enumerate(specs)],
        series_instance_uid=series_uid or hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        manufacturer_model_name="wbspine",
        software_versions=__version__,
        device_serial_number="0",
        content_label="WBSPINE",
        content_description="Vertebral bodies, pelvis and femoral heads",
        series_description="wbspine segmentation",
        omit_empty_frames=True,
        specific_character_set=SPECIFIC_CHARACTER_SET,
    )
    return seg, specs


def read_segments(seg: Dataset, source: SourceSeries) -> dict[int, np.ndarray]:
    """Boolean (z, y, x) mask of each segment number, on the source grid (for checks)."""
    seg = seg if isinstance(seg, hd.seg.Segmentation) else hd.seg.Segmentation.from_dataset(seg)
    uids = [str(ds.SOPInstanceUID) for ds in source.datasets]
    numbers = [int(item.SegmentNumber) for item in seg.SegmentSequence]
    stack = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=False,
        assert_missing_frames_are_empty=True,
    )
    return {n: stack[..., i].astype(bool) for i, n in enumerate(numbers)}
