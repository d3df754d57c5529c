"""Coronal curves, sagittal angles and pelvic parameters from fitted planes and points.

Applies :mod:`appliance.measure.definitions` to the estimated vectors; a parameter whose
inputs are missing is ``None`` and a warning says which input is missing.
"""

from __future__ import annotations

import numpy as np

from appliance.labels import LEVELS
from appliance.measure import definitions as d
from appliance.measure.bodies import Body
from appliance.measure.endplates import Endplates, Plane


def _plates(named: dict[str, tuple[Body, Endplates | None]], name: str, what: str, warnings: list[str]):
    if name not in named:
        warnings.append(f"{what}: {name} not found (outside the field of view, not segmented, or levels not named)")
        return None
    plates = named[name][1]
    if plates is None:
        warnings.append(f"{what}: the endplates of {name} could not be fitted")
    return plates


def coronal(named: dict[str, tuple[Body, Endplates | None]], warnings: list[str]) -> tuple[dict | None, list[dict]]:
    """Major Cobb curve and all curves ≥ 10° over the named bodies with endplates."""
    order = [n for n in LEVELS if n in named and named[n][1] is not None]
    if len(order) < 2:
        warnings.append("Cobb angle: fewer than two named vertebral bodies with endplates")
        return None, []
    sup = [d.coronal_tilt_deg(named[n][1].superior.normal) for n in order]
    inf = [d.coronal_tilt_deg(named[n][1].inferior.normal) for n in order]
    cents = np.array([named[n][0].centroid_mm for n in order])
    curves = [c.as_dict() for c in d.coronal_curves(order, sup, inf, cents)]
    return curves[0], curves


def sagittal_parameters(
    named: dict[str, tuple[Body, Endplates | None]],
    s1: Plane | None,
    hip_center_mm: np.ndarray | None,
    warnings: list[str],
) -> dict:
    """Cobb, kyphosis (T1–T12, T4–T12), lordosis (L1–L5, L1–S1), SS, PT, PI."""
    out: dict = {}
    cobb, curves = coronal(named, warnings)
    out["cobb"] = cobb
    out["curves"] = curves

    def pair(upper: str, lower: str, key: str, fn) -> None:
        a = _plates(named, upper, key, warnings)
        b = _plates(named, lower, key, warnings)
        out[key] = None if a is None or b is None else fn(a.superior.normal, b.inferior.normal)

    pair("T1", "T12", "thoracic_kyphosis_deg", d.kyphosis_deg)
    pair("T4", "T12", "thoracic_kyphosis_t4_t12_deg", d.kyphosis_deg)
    pair("L1", "L5", "lumbar_lordosis_deg", d.lordosis_deg)
    l1 = _plates(named, "L1", "lumbar_lordosis_l1_s1_deg", warnings)
    out["lumbar_lordosis_l1_s1_deg"] = None if l1 is None or s1 is None else d.lordosis_deg(l1.superior.normal, s1.normal)
    out["sacral_slope_deg"] = None if s1 is None else d.sacral_slope_deg(s1.normal)
    if s1 is None or hip_center_mm is None:
        out["pelvic_tilt_deg"] = out["pelvic_incidence_deg"] = None
    else:
        out["pelvic_tilt_deg"] = d.pelvic_tilt_deg(s1.center_mm, hip_center_mm)
        out["pelvic_incidence_deg"] = d.pelvic_incidence_deg(s1.center_mm, s1.normal, hip_center_mm)
    return out
