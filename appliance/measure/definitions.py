"""Clinical definitions of the spinal and pelvic parameters, as pure functions of vectors.

These are *the* definitions of wbspine: the phantom computes its planted truth with
them and the measurement code applies them to what it estimates from the masks, so
the two can only disagree through estimation error.

Frame: DICOM patient coordinates (LPS, mm): x → patient left, y → posterior,
z → superior. Coronal plane = x–z, sagittal plane = y–z, axial plane = x–y.
Endplate normals are unit vectors oriented superiorly (positive z component).

Sagittal signs follow the usual clinical ones: kyphosis and lordosis positive in
their normal direction, sacral slope positive when the S1 plate faces anteriorly,
pelvic tilt positive when the hip axis is anterior to the S1 plate centre
(Legaye et al., Eur Spine J 1998: PI = PT + SS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n == 0:
        raise ValueError("zero or non-finite vector")
    return v / n


def superior(normal: np.ndarray) -> np.ndarray:
    """The unit normal flipped, if needed, to point superiorly (+z)."""
    n = _unit(normal)
    return -n if n[2] < 0 else n


def coronal_tilt_deg(normal: np.ndarray) -> float:
    """Coronal tilt of an endplate: angle of its normal projected on the coronal (x–z)
    plane, measured from +z, positive toward the patient's left (+x)."""
    n = superior(normal)
    return float(np.degrees(np.arctan2(n[0], n[2])))


def sagittal_tilt_deg(normal: np.ndarray) -> float:
    """Sagittal tilt of an endplate: angle of its normal projected on the sagittal (y–z)
    plane, measured from +z, positive toward posterior (+y)."""
    n = superior(normal)
    return float(np.degrees(np.arctan2(n[1], n[2])))


def kyphosis_deg(upper_superior_normal: np.ndarray, lower_inferior_normal: np.ndarray) -> float:
    """Sagittal Cobb angle, kyphosis positive: tilt(lower inferior) − tilt(upper superior).

    Thoracic kyphosis = T1 superior vs T12 inferior endplate (also T4–T12). In a
    kyphotic segment the upper endplate faces anteriorly and the lower one posteriorly.
    """
    return sagittal_tilt_deg(lower_inferior_normal) - sagittal_tilt_deg(upper_superior_normal)


def lordosis_deg(upper_superior_normal: np.ndarray, lower_inferior_normal: np.ndarray) -> float:
    """Sagittal Cobb angle, lordosis positive: tilt(upper superior) − tilt(lower inferior).

    Lumbar lordosis = L1 superior vs L5 inferior endplate, or vs the S1 plate (L1–S1).
    """
    return -kyphosis_deg(upper_superior_normal, lower_inferior_normal)


def coronal_angle_deg(upper_normal: np.ndarray, lower_normal: np.ndarray) -> float:
    """Signed coronal angle between an upper and a lower endplate: coronal tilt(upper) −
    tilt(lower) (the Cobb angle before its absolute value), positive when the upper plate's
    normal leans further toward the patient's left. The Cobb angle of vertebrae i..j is
    the absolute value for i's superior and j's inferior endplate."""
    return coronal_tilt_deg(upper_normal) - coronal_tilt_deg(lower_normal)


def sacral_slope_deg(s1_normal: np.ndarray) -> float:
    """Sacral slope: angle between the S1 plate and the axial (horizontal) plane, in the
    sagittal projection; positive when the plate faces anteriorly (the usual case)."""
    return -sagittal_tilt_deg(s1_normal)


def pelvic_tilt_deg(s1_center_mm: np.ndarray, hip_axis_center_mm: np.ndarray) -> float:
    """Pelvic tilt: angle between the vertical and the line from the S1 plate centre to the
    hip-axis centre (sagittal projection), positive when the hip axis is anterior."""
    d = np.asarray(s1_center_mm, float) - np.asarray(hip_axis_center_mm, float)
    # d points from the hip axis up to the plate; anterior hip axis ⇒ d_y > 0.
    return float(np.degrees(np.arctan2(d[1], d[2])))


def pelvic_incidence_deg(
    s1_center_mm: np.ndarray, s1_normal: np.ndarray, hip_axis_center_mm: np.ndarray
) -> float:
    """Pelvic incidence: angle between the S1 plate normal and the line from the plate
    centre to the hip-axis centre, in the sagittal projection. Measured directly (it
    equals PT + SS only as a consequence of the geometry)."""
    n = superior(s1_normal)
    into_sacrum = -n[1:]  # the perpendicular drawn from the plate into the sacrum
    to_hips = (np.asarray(hip_axis_center_mm, float) - np.asarray(s1_center_mm, float))[1:]
    cross = into_sacrum[0] * to_hips[1] - into_sacrum[1] * to_hips[0]
    return float(np.degrees(np.arctan2(abs(cross), float(into_sacrum @ to_hips))))


def axial_rotation_deg(body_left_axis: np.ndarray, hip_axis_left: np.ndarray) -> float:
    """Vertebral rotation: angle in the axial (x–y) plane between the body's left–right
    axis and the hip axis (both pointing to the patient's left), positive when the body's
    anterior side turns toward the patient's left (counter-clockwise about +z in LPS)."""
    a = np.asarray(body_left_axis, float)[:2]
    h = np.asarray(hip_axis_left, float)[:2]
    if a @ h < 0:  # an axis has no sign: take the one pointing left like the hip axis
        a = -a
    return float(np.degrees(np.arctan2(h[0] * a[1] - h[1] * a[0], h @ a)))


@dataclass(frozen=True)
class Curve:
    """One coronal curve: its Cobb angle and end/apex vertebrae."""

    angle_deg: float
    upper_end_vertebra: str
    lower_end_vertebra: str
    apex_vertebra: str

    def as_dict(self) -> dict:
        return {
            "angle_deg": self.angle_deg,
            "upper_end_vertebra": self.upper_end_vertebra,
            "lower_end_vertebra": self.lower_end_vertebra,
            "apex_vertebra": self.apex_vertebra,
        }


def _apex(names: Sequence[str], centroids_mm: np.ndarray, i: int, j: int) -> str:
    """Most laterally displaced vertebra between ends i and j: largest distance, in the
    coronal (x–z) projection, of its centroid from the line through the end centroids."""
    c = np.asarray(centroids_mm, float)[:, [0, 2]]
    a, b = c[i], c[j]
    d = b - a
    length = np.hypot(*d)
    if j - i < 2 or length == 0:
        return names[i + (j - i) // 2]
    offsets = np.abs(d[0] * (c[i + 1 : j, 1] - a[1]) - d[1] * (c[i + 1 : j, 0] - a[0])) / length
    return names[i + 1 + int(np.argmax(offsets))]


#: Vertebrae that cannot be the upper end of a Cobb angle: C2 has no superior endplate
#: (the dens rises from its body; C1–C2 articulate through the lateral masses).
NO_SUPERIOR_ENDPLATE = ("C2",)


def _major(sup: np.ndarray, inf: np.ndarray, lo: int, hi: int) -> tuple[float, int, int] | None:
    """Largest |tilt(sup of i) − tilt(inf of j)| with lo ≤ i < j ≤ hi (NaN: no plate)."""
    best: tuple[float, int, int] | None = None
    for i in range(lo, hi):
        if np.isnan(sup[i]):
            continue
        diffs = np.abs(sup[i] - inf[i + 1 : hi + 1])
        if diffs.size == 0:
            continue
        k = int(np.argmax(diffs))
        if best is None or diffs[k] > best[0]:
            best = (float(diffs[k]), i, i + 1 + k)
    return best


def coronal_curves(
    names: Sequence[str],
    superior_tilt_deg: Sequence[float],
    inferior_tilt_deg: Sequence[float],
    centroids_mm: np.ndarray,
    min_angle_deg: float = 10.0,
) -> list[Curve]:
    """Coronal curves, major first.

    Vertebrae are given cranial to caudal. **Cobb angle**: the largest angle between the
    superior endplate of an upper vertebra i and the inferior endplate of a lower
    vertebra j (i < j); i and j are the end vertebrae; the apex is the most laterally
    displaced vertebra between them. The major curve is the largest over the whole
    spine; the other curves are found the same way, recursively, in the segments above
    (vertebrae 0..i) and below (j..n−1) it — adjacent curves may share an end
    vertebra — and kept when ≥ ``min_angle_deg``. The major curve is always returned
    (when there are at least two vertebrae), however small. C2 (``NO_SUPERIOR_ENDPLATE``)
    is never an upper end: the top of its body is the dens's base, not an endplate.
    """
    sup = np.asarray(superior_tilt_deg, float).copy()
    inf = np.asarray(inferior_tilt_deg, float)
    n = len(names)
    sup[[k for k, name in enumerate(names) if name in NO_SUPERIOR_ENDPLATE]] = np.nan
    if not (len(sup) == len(inf) == n == len(centroids_mm)):
        raise ValueError("names, tilts and centroids must have the same length")
    found: list[Curve] = []

    def search(lo: int, hi: int, keep_any: bool) -> None:
        best = _major(sup, inf, lo, hi)
        if best is None:
            return
        angle, i, j = best
        if not keep_any and angle < min_angle_deg:
            return
        found.append(Curve(angle, names[i], names[j], _apex(names, centroids_mm, i, j)))
        search(lo, i, False)
        search(j, hi, False)

    search(0, n - 1, True)
    major, others = found[:1], found[1:]
    order = {name: k for k, name in enumerate(names)}
    return major + sorted(others, key=lambda c: order[c.upper_end_vertebra])
