"""Coronal curves, sagittal angles and pelvic parameters from fitted planes and points.

Applies :mod:`appliance.measure.definitions` to the estimated vectors; a parameter whose
inputs are missing is ``None`` and a warning says which input is missing. A parameter
whose endplates the voxels leave open by more than ``UNCERTAIN_DEG`` either way (coarse
voxels, a face within one voxel layer: :attr:`Plane.open_deg`) keeps its value and gets
a warning with that bound.
"""

from __future__ import annotations

import numpy as np

from appliance.labels import LEVELS
from appliance.measure import definitions as d
from appliance.measure.bodies import Body
from appliance.measure.endplates import Endplates, Plane

#: Half-width (degrees) of the range an angle's voxels allow above which a warning says so.
UNCERTAIN_DEG = 2.0
_SAG, _COR = 0, 1


def uncertainty_warning(what: str, plates: list[tuple[str, Plane, int]], warnings: list[str],
                        chosen: str = "the one that fits the neighbouring vertebrae best",
                        extra_deg: float = 0.0) -> None:
    """Warn when the voxels leave ``what`` open by more than ±``UNCERTAIN_DEG``: half the
    summed tilt ranges of its (label, plane, axis) endplates (0 sagittal, 1 coronal),
    plus ``extra_deg`` from other inputs (e.g. a point known to half a voxel)."""
    widths = [(label, float(plane.open_deg[axis])) for label, plane, axis in plates]
    half = 0.5 * sum(w for _, w in widths) + extra_deg
    if half > UNCERTAIN_DEG:
        ranges = ", ".join(f"{label} over {w:.1f}°" for label, w in widths)
        warnings.append(f"{what}: the voxels alone fix it only to ±{half:.1f}° "
                        f"(they leave the tilt of {ranges} open); the value given is {chosen}")


def _plates(named: dict[str, tuple[Body, Endplates | None]], name: str, what: str, warnings: list[str]):
    if name not in named:
        warnings.append(f"{what}: {name} not found (outside the field of view, not segmented, or levels not named)")
        return None
    plates = named[name][1]
    if plates is None:
        warnings.append(f"{what}: the endplates of {name} could not be fitted")
    return plates


def _position(c: np.ndarray) -> list[float]:
    return [round(float(x), 3) for x in c]


def coronal(column: dict[str, tuple[Body, Endplates | None]], warnings: list[str]) -> tuple[dict | None, list[dict]]:
    """Major Cobb curve and all curves ≥ 10° over every body with endplates, named or
    not, in the (cranial-to-caudal) order of ``column``; each curve also gives the
    centroids of its end and apex vertebrae (``*_centroid_mm``)."""
    order = [n for n, (_, p) in column.items() if p is not None]
    if len(order) < 2:
        warnings.append("Cobb angle: fewer than two vertebral bodies with endplates")
        return None, []
    sup = [d.coronal_tilt_deg(column[n][1].superior.normal) for n in order]
    inf = [d.coronal_tilt_deg(column[n][1].inferior.normal) for n in order]
    cents = np.array([column[n][0].centroid_mm for n in order])
    found = d.coronal_curves(order, sup, inf, cents)
    if not found:
        warnings.append("Cobb angle: no vertebral body below C2 with endplates (C2 has no superior endplate)")
        return None, []
    curves = []
    for c in found:
        out = c.as_dict()
        for role in ("upper_end", "lower_end", "apex"):
            out[f"{role}_centroid_mm"] = _position(column[out[f"{role}_vertebra"]][0].centroid_mm)
        curves.append(out)
    return curves[0], curves


def segmental_angles(column: dict[str, tuple[Body, Endplates | None]]) -> list[dict]:
    """Disc angles between adjacent bodies of ``column`` (cranial first): the upper
    body's inferior endplate against the lower body's superior one; ``sagittal_deg``
    kyphosis positive (:func:`definitions.kyphosis_deg`), ``coronal_deg`` as
    :func:`definitions.coronal_angle_deg`. None where a plate is missing.
    ``*_bound_deg``: half the summed tilt ranges the voxels leave open for the two plates
    (:attr:`Plane.open_deg`, as in :func:`uncertainty_warning`); within it the value is
    the one that fits the neighbouring vertebrae best, often 0 on coarse voxels."""
    items = list(column.items())
    out = []
    for (un, (_, up)), (ln, (_, lp)) in zip(items, items[1:]):
        entry: dict = {"upper": un, "lower": ln, "sagittal_deg": None, "coronal_deg": None,
                       "sagittal_bound_deg": None, "coronal_bound_deg": None}
        if up is not None and lp is not None:
            a, b = up.inferior, lp.superior
            entry.update(sagittal_deg=d.kyphosis_deg(a.normal, b.normal),
                         coronal_deg=d.coronal_angle_deg(a.normal, b.normal),
                         sagittal_bound_deg=0.5 * float(a.open_deg[_SAG] + b.open_deg[_SAG]),
                         coronal_bound_deg=0.5 * float(a.open_deg[_COR] + b.open_deg[_COR]))
        out.append(entry)
    return out


def sagittal_parameters(
    named: dict[str, tuple[Body, Endplates | None]],
    s1: Plane | None,
    hip_center_mm: np.ndarray | None,
    warnings: list[str],
    voxel_mm: float = 0.0,
    column: dict[str, tuple[Body, Endplates | None]] | None = None,
) -> dict:
    """Cobb (over ``column``: every body, cranial first, named or not; default ``named``
    in level order), kyphosis (T1–T12, T4–T12), lordosis (L1–L5, L1–S1), SS, PT, PI."""
    out: dict = {}
    if column is None:
        column = {n: named[n] for n in LEVELS if n in named}
    cobb, curves = coronal(column, warnings)
    out["cobb"] = cobb
    out["curves"] = curves
    if cobb is not None:
        upper, lower = cobb["upper_end_vertebra"], cobb["lower_end_vertebra"]
        uncertainty_warning("Cobb angle", [(f"{upper} superior", column[upper][1].superior, _COR),
                                           (f"{lower} inferior", column[lower][1].inferior, _COR)], warnings)

    def pair(upper: str, lower: str, key: str, fn, what: str) -> None:
        a = _plates(named, upper, key, warnings)
        b = _plates(named, lower, key, warnings)
        out[key] = None if a is None or b is None else fn(a.superior.normal, b.inferior.normal)
        if out[key] is not None:
            uncertainty_warning(what, [(f"{upper} superior", a.superior, _SAG),
                                       (f"{lower} inferior", b.inferior, _SAG)], warnings)

    pair("T1", "T12", "thoracic_kyphosis_deg", d.kyphosis_deg, "thoracic kyphosis (T1–T12)")
    pair("T4", "T12", "thoracic_kyphosis_t4_t12_deg", d.kyphosis_deg, "thoracic kyphosis (T4–T12)")
    pair("L1", "L5", "lumbar_lordosis_deg", d.lordosis_deg, "lumbar lordosis (L1–L5)")
    l1 = _plates(named, "L1", "lumbar_lordosis_l1_s1_deg", warnings)
    out["lumbar_lordosis_l1_s1_deg"] = None if l1 is None or s1 is None else d.lordosis_deg(l1.superior.normal, s1.normal)
    if out["lumbar_lordosis_l1_s1_deg"] is not None:
        uncertainty_warning("lumbar lordosis (L1–S1)", [("L1 superior", l1.superior, _SAG), ("the S1 plate", s1, _SAG)],
                            warnings)
    out["sacral_slope_deg"] = None if s1 is None else d.sacral_slope_deg(s1.normal)
    if s1 is None or hip_center_mm is None:
        out["pelvic_tilt_deg"] = out["pelvic_incidence_deg"] = None
    else:
        out["pelvic_tilt_deg"] = d.pelvic_tilt_deg(s1.center_mm, hip_center_mm)
        out["pelvic_incidence_deg"] = d.pelvic_incidence_deg(s1.center_mm, s1.normal, hip_center_mm)
    if s1 is not None:
        uncertainty_warning("sacral slope", [("the S1 plate", s1, _SAG)], warnings, chosen="the middle of that range")
    if out["pelvic_incidence_deg"] is not None:
        # plus the plate centre's position, known to half a voxel, seen from the hip axis
        reach = float(np.linalg.norm(np.asarray(hip_center_mm) - s1.center_mm))
        extra = float(np.degrees(np.arctan2(0.5 * voxel_mm, reach))) if reach > 0 else 0.0
        uncertainty_warning("pelvic incidence", [("the S1 plate", s1, _SAG)], warnings,
                            chosen="the middle of that range", extra_deg=extra)
    return out
