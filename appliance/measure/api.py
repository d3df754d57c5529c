"""``measure(labels, affine)``: spinal and pelvic parameters from a label map.

Pipeline: anatomical plausibility (:mod:`appliance.measure.plausibility`: organ-like
components labelled as bone are left out and listed under ``rejected``) → crop to each
label's bounding box → individual vertebral bodies → endplate
plane fits → S1 plate under the lowest body (behind its front, else none) → level names → femoral heads and hip axis
→ the clinical definitions of :mod:`appliance.measure.definitions`. Anything that
cannot be measured is ``None`` with a warning saying why.
"""

from __future__ import annotations

import numpy as np

from appliance.errors import MeasurementError
from appliance.labels import LABEL_NAMES, LEVELS, Label
from appliance.measure import definitions as d
from appliance.measure.bodies import Body, find_bodies, fused_indices
from appliance.measure.endplates import disc_directions, fit_endplates, spine_directions
from appliance.measure.geometry import spacing_mm, voxel_points_mm
from appliance.measure.levels import Naming, c2_cues, name_bodies
from appliance.measure.pelvis import S1_MIN_BEHIND_FRONT, FemoralHead, assign_sides, femoral_heads, s1_behind_front, s1_plate
from appliance.measure.plausibility import plausible_labels
from appliance.measure.rotation import (
    MAX_SECTION_SPREAD_DEG,
    MIN_SMALL_SECTION_VOX,
    SMALL_MOMENTS_DEG,
    SMALL_SECTION_VOX,
    angle_range,
    left_axis,
    pelvis_left_axis,
    section_spread_deg,
    section_voxels,
    smooth_profile,
)
from appliance.measure.spinal import UNCERTAIN_DEG, sagittal_parameters, segmental_angles

SCHEMA = "wbspine.measurements/1"


def _bbox(mask_any_z: np.ndarray, mask_any_y: np.ndarray, mask_any_x: np.ndarray):
    out = []
    for a in (mask_any_z, mask_any_y, mask_any_x):
        nz = np.flatnonzero(a)
        if len(nz) == 0:
            return None
        out.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(out)


def label_crop(labels: np.ndarray, value: int) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """Boolean mask of ``value`` cropped to its bounding box, and the crop's offset."""
    m = labels == value
    sl = _bbox(m.any(axis=(1, 2)), m.any(axis=(0, 2)), m.any(axis=(0, 1)))
    if sl is None:
        return None
    return m[sl], tuple(int(s.start) for s in sl)


def _check_inputs(labels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise MeasurementError(f"label map must be 3-D (z, y, x), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isin(np.unique(labels), np.arange(256))):
            raise MeasurementError("label map must hold integer labels 0–3")
        labels = labels.astype(np.uint8)
    a = np.asarray(affine, float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-9:
        raise MeasurementError("affine must be a finite, invertible 4×4 matrix")
    return labels


def _vec(v, nd: int = 5):
    return None if v is None else [round(float(x), nd) for x in np.asarray(v).ravel()]


def _touches_edge(body: Body, shape: tuple[int, ...]) -> bool:
    lo = np.asarray(body.offset_zyx)
    hi = lo + np.asarray(body.mask.shape)
    return bool(np.any(lo == 0) or np.any(hi == np.asarray(shape)))


def _top_of_fov_mm(shape: tuple[int, ...], affine: np.ndarray) -> float:
    corners = np.array([[x, y, z, 1.0] for x in (0, shape[2] - 1) for y in (0, shape[1] - 1)
                        for z in (0, shape[0] - 1)])
    return float((corners @ affine.T)[:, 2].max())


def _spine(labels: np.ndarray, affine: np.ndarray, warnings: list[str]):
    """Bodies (cranial first), their endplates (None where not measurable) and the
    bodies cut by the field of view."""
    crop = label_crop(labels, Label.VERTEBRAL_BODIES)
    if crop is None:
        warnings.append("no vertebral-body label: spinal parameters cannot be measured")
        return [], [], []
    bodies, w = find_bodies(crop[0], affine, crop[1])
    warnings += w
    truncated = [_touches_edge(b, labels.shape) for b in bodies]
    centroids = np.array([b.centroid_mm for b in bodies]).reshape(-1, 3)
    plates = [None if cut else fit_endplates(b, affine, a, *discs)
              for b, a, discs, cut in zip(bodies, spine_directions(centroids), disc_directions(centroids), truncated)]
    return bodies, plates, truncated


def _sacrum(labels: np.ndarray, affine: np.ndarray, bodies: list[Body], plates: list, warnings: list[str],
            rejected: tuple = ()):
    """The S1 plate under the lowest body, or None with a warning."""
    pelvis = label_crop(labels, Label.PELVIS)
    if pelvis is None:
        if any(r.rule == "not_pelvis" for r in rejected):
            warnings.append("the pelvis label does not have a pelvis's shape (left out, see rejected): S1 plate, "
                            "sacral slope, pelvic tilt and incidence are not measured, and levels are not counted "
                            "from a sacrum")
        else:
            warnings.append("no pelvis label: S1 plate, sacral slope, pelvic tilt and incidence cannot be measured")
        return None
    if not bodies or plates[-1] is None:
        return None
    s1 = s1_plate(pelvis[0], affine, pelvis[1], bodies[-1], plates[-1])
    if s1 is None:
        warnings.append("no S1 plate found: the pelvis label does not lie directly below the lowest "
                        "vertebral body (within 45 mm)")
        return None
    behind, share = s1_behind_front(s1, bodies[-1], plates[-1], affine)
    if not behind:
        warnings.append(f"the plate found under the lowest vertebral body lies in front of it ({share:.2f} of its "
                        f"depth behind its anterior edge, at least {S1_MIN_BEHIND_FRONT:.2f} for a sacrum): not an "
                        f"S1 plate; sacral slope, pelvic tilt and incidence are not measured, and levels are not "
                        f"counted from a sacrum")
        return None
    return s1


def _hips(labels: np.ndarray, affine: np.ndarray, midline_x_mm: float, warnings: list[str]):
    """Femoral heads with sides, hip-axis centre and left direction (None if not both)."""
    heads: list[FemoralHead] = []
    crop = label_crop(labels, Label.FEMORAL_HEADS)
    if crop is not None:
        heads, w = femoral_heads(crop[0], affine, crop[1])
        warnings += w
    heads = assign_sides(heads, midline_x_mm)
    if len(heads) == 2:
        left, right = (h.center_mm for h in sorted(heads, key=lambda h: h.side != "left"))
        return heads, 0.5 * (left + right), left - right
    missing = "both femoral heads are" if not heads else \
        f"the {'right' if heads[0].side == 'left' else 'left'} femoral head is"
    warnings.append(f"{missing} missing: no hip axis, so pelvic tilt and pelvic incidence cannot be measured")
    return heads, None, None


#: Levels whose axial outline never fixes their rotation: C2's section is shaped by the dens
#: and the lateral masses, not by a body's ellipse (issue 18: +17.5° against 0.6° on a model mask).
NO_ROTATION_LEVELS = ("C2",)


def _rotation_reference(labels: np.ndarray, affine: np.ndarray, hip_left: np.ndarray | None):
    """(left-pointing reference axis, what it is): the femoral-head axis when both heads
    are in view, else the pelvis's transverse axis, else the scan's left–right (+x) axis
    (JoVE 67781, Figure 3D measures rotation relative to the pelvis)."""
    if hip_left is not None:
        return np.asarray(hip_left, float), "femoral_head_axis"
    pelvis = label_crop(labels, Label.PELVIS)
    axis = None if pelvis is None else pelvis_left_axis(pelvis[0], affine, pelvis[1])
    if axis is not None:
        return axis, "pelvis_transverse_axis"
    return np.array([1.0, 0.0, 0.0]), "scan_left_right_axis"


def _rotations(named: dict, affine: np.ndarray, reference: tuple[np.ndarray, str], warnings: list[str]) -> dict:
    """Axial rotation of every named body relative to ``reference`` (None if unmeasurable).
    Small cross-sections get the value their voxels allow that fits their neighbours best
    (:mod:`appliance.measure.rotation`); every body is also bounded by how far its single
    sections disagree (:func:`rotation.section_spread_deg`). No value when they disagree
    by more than ``MAX_SECTION_SPREAD_DEG`` or for the levels in ``NO_ROTATION_LEVELS``.
    A small section whose voxels no ellipse holds (a rough mask) keeps its second-moment
    axis, stated to ±``SMALL_MOMENTS_DEG`` (or its sections' spread, if wider)."""
    rotation: dict[str, float | None] = {n: None for n in named}
    hip_left, what = reference
    if what != "femoral_head_axis":
        warnings.append("vertebral rotation is relative to the "
                        + ("pelvis's transverse axis" if what == "pelvis_transverse_axis"
                           else "scan's left–right axis (no pelvis in view)")
                        + ": the femoral heads are not both in view")
    flat, measured, centre, half, bound, unfixed = [], [], [], [], [], []
    for n, (b, p) in named.items():
        if p is None:
            continue
        if n in NO_ROTATION_LEVELS:
            unfixed.append(n)
            continue
        axis_lr, _ratio = left_axis(b, affine, p.axis)
        if axis_lr is None:
            flat.append(n)
            continue
        value = d.axial_rotation_deg(axis_lr, hip_left)
        spread = section_spread_deg(b, affine, p.superior, p.inferior, axis_lr) or 0.0
        if spread > MAX_SECTION_SPREAD_DEG:
            unfixed.append(n)
            continue
        ends, lo, hi = None, value, value
        if section_voxels(b, p.axis, affine) < SMALL_SECTION_VOX:
            ends = angle_range(b, affine, p.superior, p.inferior, axis_lr)
            if ends is None:  # no ellipse holds its voxels (a rough mask): second moments, bounded
                small = section_spread_deg(b, affine, p.superior, p.inferior, axis_lr, MIN_SMALL_SECTION_VOX)
                if small is None or small > MAX_SECTION_SPREAD_DEG:
                    unfixed.append(n)
                    continue
                spread = max(spread, small, SMALL_MOMENTS_DEG)  # the value stays the moments' own
        if ends is not None:  # the ends as rotations, unwrapped next to the second-moment value
            lo, hi = sorted(value + (d.axial_rotation_deg(e, hip_left) - value + 90.0) % 180.0 - 90.0 for e in ends)
        measured.append(n)
        centre.append(0.5 * (lo + hi))
        half.append(0.5 * (hi - lo))
        bound.append(max(0.5 * (hi - lo), spread))
    for n, v in zip(measured, smooth_profile(np.array(centre), np.array(half))):
        rotation[n] = float(v)
    coarse = [f"{n} ±{h:.1f}°" for n, h in zip(measured, bound) if h > UNCERTAIN_DEG]
    if coarse:
        warnings.append(f"vertebral rotation: the voxels alone fix it only to {', '.join(coarse)}; "
                        f"the value given is the one that fits the neighbouring vertebrae best")
    if flat:
        warnings.append(f"rotation not measured for {', '.join(flat)}: cross-section too close to circular")
    if unfixed:
        warnings.append(f"rotation not measured for {', '.join(unfixed)}: the axial outline does not fix the "
                        f"orientation (C2's section is shaped by the dens; elsewhere the body's sections "
                        f"disagree by more than ±{MAX_SECTION_SPREAD_DEG:.0f}°, or too few hold enough voxels to tell)")
    return rotation


def _naming(labels: np.ndarray, affine: np.ndarray, bodies: list[Body], truncated: list[bool], sacrum: bool,
            lowest_level: str | None, highest_level: str | None) -> Naming:
    """Level names by the rules of :mod:`appliance.measure.levels`."""
    room, c2 = None, (False, "no bodies")
    if bodies:
        fov_top = _top_of_fov_mm(labels.shape, affine)
        room = fov_top - float(voxel_points_mm(bodies[0].mask, affine, bodies[0].offset_zyx)[:, 2].max())
        crop = label_crop(labels, Label.VERTEBRAL_BODIES)
        centroids = np.array([b.centroid_mm for b in bodies]).reshape(-1, 3)
        c2 = c2_cues(bodies, spine_directions(centroids), truncated, affine,
                     voxel_points_mm(crop[0], affine, crop[1])[:, 2], fov_top)
    return name_bodies(len(bodies), sacrum, c2, fused_indices(bodies), lowest_level, highest_level, room)


def measure(labels: np.ndarray, affine: np.ndarray, lowest_level: str | None = None,
            highest_level: str | None = None, *, plausible: tuple | None = None) -> dict:
    """Spinal and pelvic parameters (``wbspine.measurements/1`` JSON-ready dict).

    ``labels`` (z, y, x) uses 0 background, 1 vertebral bodies, 2 pelvis with sacrum,
    3 femoral heads; ``affine`` maps (x, y, z, 1) indices to LPS mm (``Volume.affine``).
    Levels are named counting up from the sacrum (the body on the S1 plate is L5) and/or
    down from C2 when it is recognised at the top (:mod:`appliance.measure.levels`);
    ``lowest_level`` / ``highest_level`` name the lowest / top body instead (hints win).
    ``result["level_naming"]`` = ``{"rule": "sacrum" | "c2" | "sacrum_and_c2" |
    "lowest_level_hint" | "highest_level_hint" | None, "bodies": n, "consistent": True /
    False when both ends (or a hint and an end) were checked against each other, else
    None, "uncertain": [names counted across a fused body or a count mismatch]}``.
    Cobb curves and ``segmental_angles`` are measured on every body with endplates,
    named or not (unnamed: V1…Vn, cranial first). Raises :class:`MeasurementError` for
    unusable inputs (also for both hints inconsistent with the bodies found).

    Components that fail the plausibility rules are left out of every measurement and
    listed under ``rejected`` (label, rule, volume, LPS centroid, reason), each also as a
    warning; ``structure_volumes_cm3`` stays that of the map as given (raw, rejected
    components included), as the SEG shows it. ``plausible``: the result of
    ``plausible_labels(labels, affine)`` when the caller already has it (the pipeline's
    column check), so that the rules run once.
    """
    labels = _check_inputs(labels, affine)
    affine = np.asarray(affine, float)
    for what, hint in (("lowest_level", lowest_level), ("highest_level", highest_level)):
        if hint is not None and hint not in LEVELS:
            raise MeasurementError(f"unknown {what} {hint!r}")
    warnings: list[str] = []
    unknown = set(np.unique(labels[::2, ::2, ::2]).tolist()) - {0, 1, 2, 3}
    if unknown:
        warnings.append(f"label values {sorted(unknown)} are not part of the 0–3 convention and were ignored")
    raw = labels
    labels, rejected = plausible if plausible is not None else plausible_labels(raw, affine)
    for r in rejected:
        c = ", ".join(f"{v:.0f}" for v in r.centroid_mm)
        warnings.append(f"left out of the measurements: a {r.label} component of {r.volume_cm3:.1f} cm³ at "
                        f"({c}) mm LPS ({r.rule}): {r.reason}")

    bodies, plates, truncated = _spine(labels, affine, warnings)
    s1 = _sacrum(labels, affine, bodies, plates, warnings, rejected)
    naming = _naming(labels, affine, bodies, truncated, s1 is not None, lowest_level, highest_level)
    names = naming.names
    warnings += naming.warnings
    if naming.uncertain:
        warnings.append(f"level names not reliable for {', '.join(naming.uncertain)}: counted across a fused "
                        f"body or a count that does not match C2–L5")
    for name, p, cut in zip(names, plates, truncated):
        if cut:
            warnings.append(f"{name}: cut by the edge of the field of view; its endplates are not measured")
        elif p is None:
            warnings.append(f"{name}: endplates could not be fitted (body too small or irregular)")

    midline = float(s1.center_mm[0]) if s1 is not None else (
        float(np.mean([b.centroid_mm[0] for b in bodies])) if bodies else 0.0)
    heads, hip_center, hip_left = _hips(labels, affine, midline, warnings)
    named = {n: (b, p) for n, b, p in zip(names, bodies, plates) if n in LEVELS}
    result: dict = {"schema": SCHEMA}
    column = dict(zip(names, zip(bodies, plates)))
    result.update(sagittal_parameters(named, s1, hip_center, warnings,
                                      voxel_mm=float(spacing_mm(affine).max()), column=column))
    result["segmental_angles"] = segmental_angles(column)
    result["level_naming"] = naming.as_dict()
    reference = _rotation_reference(labels, affine, hip_left)
    result["vertebral_rotation_deg"] = _rotations(named, affine, reference, warnings)
    result["rotation_reference"] = reference[1]
    result["vertebrae"] = [
        {"name": n, "centroid_mm": _vec(b.centroid_mm, 3),
         "superior_normal": _vec(p.superior.normal) if p else None,
         "inferior_normal": _vec(p.inferior.normal) if p else None}
        for n, b, p in zip(names, bodies, plates)
    ]
    result["femoral_heads"] = [
        {"side": h.side, "center_mm": _vec(h.center_mm, 3), "radius_mm": round(float(h.radius_mm), 3)}
        for h in sorted(heads, key=lambda h: h.side != "right")
    ]
    result["s1_plate"] = None if s1 is None else {"center_mm": _vec(s1.center_mm, 3), "normal": _vec(s1.normal)}
    result["structure_volumes_cm3"] = structure_volumes_cm3(raw, affine)
    result["rejected"] = [r.as_dict() for r in rejected]
    result["warnings"] = warnings
    return result


def structure_volumes_cm3(labels: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """Volume (cm³) of every structure present in the label map, by label name."""
    voxel_cm3 = abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000.0
    # one comparison per label: np.bincount would first copy a uint8 map to int64 (8×)
    counts = {k: int(np.count_nonzero(labels == k)) for k in (Label.VERTEBRAL_BODIES, Label.PELVIS, Label.FEMORAL_HEADS)}
    return {LABEL_NAMES[int(k)]: round(float(n) * voxel_cm3, 3) for k, n in counts.items() if n}
