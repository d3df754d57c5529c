"""Level names for the bodies found in a label map, counted from either end of the column.

Rules, in order (the first that applies names the levels; ``rule`` says which):

1. **Hints** win over the automatic rules. ``lowest_level`` names the lowest body and
   the others are counted up from it; ``highest_level`` names the top body and the
   others are counted down. Both given: they must span exactly the bodies found, else
   :class:`~appliance.errors.MeasurementError`.
2. **Sacrum and C2** both in view: the count must be 23 (C2–L5; C1 has no body). Then
   both ends agree (``consistent`` True). Otherwise nothing is guessed: names come from
   the sacrum, the more reliable end, with a warning (``consistent`` False).
3. **Sacrum** (an S1 plate directly under the lowest body): the lowest body is L5. The
   plate counts only on a pelvis label that has a pelvis's shape (both ilia:
   :mod:`appliance.measure.plausibility` rule 2b) and only behind the lowest body's
   front (:func:`appliance.measure.pelvis.s1_behind_front`): an organ labelled pelvis
   under the column (the real chest CT's heart) would name every level ~5 off.
4. **C2** recognised as the top body (:func:`c2_cues`): counted down from it.
5. Neither: the bodies are called V1…Vn, cranial first, and level-specific values are null.

**C2** is the top body when all of these hold (conservative: a cue that disagrees means
no naming from the top):

- it is whole: not cut by the edge of the field of view;
- the field of view continues at least ``C2_MIN_ROOM_STEPS`` body steps (the distance
  between the top two centroids) above its highest voxel, and no vertebral-body voxel
  lies up there. A disc is at most ~0.3 of a step at every level (phantom and adult
  anatomy alike), so any body above would put voxels in that room. (Not 1.5 steps:
  a whole-spine scan may end ~12 mm above C2, as the project's phantoms do.)
- it is cervical-sized: its central section is at most ``C2_MAX_SECTION_MM2``;
- its height is not less than that of the body below it, and either it is taller by
  ``C2_MIN_HEIGHT_RATIO`` or it carries a dens. C2 is the only presacral body taller
  than the one below it (phantom 15 vs 13.5 mm; real C2 with its dens far more).
  Height is the mean thickness along the local spine axis: volume over the area of the
  central section (±``MID_SLAB_MM``), which sub-voxel tilts do not quantise as an extent would.
- **dens**: the cranial quarter of the body (along the axis) is narrower than
  ``DENS_AREA_RATIO`` × the central section, and that of the body below is not (C3 has
  no dens; in whole-vertebra masks, e.g. VerSe, the processes narrow every vertebra's
  ends, so this cue alone would call T9 "C2").

**Fused bodies** (:func:`appliance.measure.bodies.fused_indices`): counted across, every
name beyond one is unreliable, so the fused body and those above it (counting up) or
below it (counting down) are listed in ``uncertain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from appliance.errors import MeasurementError
from appliance.labels import LEVELS
from appliance.measure.bodies import Body, name_levels
from appliance.measure.geometry import voxel_points_mm, voxel_volume_mm3

#: Room above the top body, in body steps, that must hold no vertebral-body voxel.
C2_MIN_ROOM_STEPS = 0.4
#: C2's mean thickness over that of the body below it, at least (the height cue).
C2_MIN_HEIGHT_RATIO = 1.03
#: Half-thickness (mm) of the central slab whose area is a body's section.
MID_SLAB_MM = 2.5
#: Cranial-quarter over central section area below which the body carries a dens.
DENS_AREA_RATIO = 0.5
#: Largest central section (mm²) of a C2 body: cervical bodies are ~15 × 16 mm (~200 mm²;
#: small phantoms 120–230 mm²), adult thoracic ones from T3 down over ~450 mm², lumbar
#: ~1000 mm² (VerSe004 T9, a whole vertebra: ~1300 mm²).
C2_MAX_SECTION_MM2 = 400.0
#: Bodies C2–L5.
PRESACRAL_BODIES = len(LEVELS)


@dataclass
class Naming:
    """Names of the bodies (cranial first) and how they were given."""

    names: list[str]
    rule: str | None
    consistent: bool | None = None
    uncertain: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"rule": self.rule, "bodies": len(self.names), "consistent": self.consistent,
                "uncertain": list(self.uncertain)}


def _sections(body: Body, affine: np.ndarray, axis: np.ndarray) -> tuple[float, float, float]:
    """(mean thickness along ``axis`` in mm, cranial-quarter / central section area,
    central section area in mm²)."""
    pts = voxel_points_mm(body.mask, affine, body.offset_zyx)
    s = (pts - body.centroid_mm) @ axis
    vox = voxel_volume_mm3(affine)
    mid = np.count_nonzero(np.abs(s) < MID_SLAB_MM) * vox / (2 * MID_SLAB_MM)
    span = float(np.ptp(s))
    if mid == 0 or span == 0:
        return 0.0, 1.0, float(mid)
    top = np.count_nonzero(s > s.max() - 0.25 * span) * vox / (0.25 * span)
    return len(pts) * vox / mid, float(top / mid), float(mid)


def c2_cues(bodies: list[Body], axes: np.ndarray, truncated: list[bool], affine: np.ndarray,
            body_points_z_mm: np.ndarray, fov_top_mm: float) -> tuple[bool, str]:
    """Whether the top body is C2 (see the module docstring), and why (or why not).
    ``body_points_z_mm``: z of every vertebral-body voxel (fragments included)."""
    if len(bodies) < 2:
        return False, "fewer than two bodies"
    if truncated[0]:
        return False, "the top body is cut by the field of view"
    top_mm = float(voxel_points_mm(bodies[0].mask, affine, bodies[0].offset_zyx)[:, 2].max())
    step = float(np.linalg.norm(bodies[0].centroid_mm - bodies[1].centroid_mm))
    room = fov_top_mm - top_mm
    if room < C2_MIN_ROOM_STEPS * step:
        return False, f"the field of view ends {room:.0f} mm above the top body"
    if np.any(body_points_z_mm > top_mm + 1e-6):
        return False, "vertebral-body voxels lie above the top body"
    h0, narrow0, area = _sections(bodies[0], affine, axes[0])
    h1, narrow1, _ = _sections(bodies[1], affine, axes[1])
    if area > C2_MAX_SECTION_MM2:
        return False, f"the top body's section ({area:.0f} mm²) is larger than a cervical body's"
    ratio = h0 / h1 if h1 > 0 else 0.0
    dens = narrow0 < DENS_AREA_RATIO <= narrow1
    if ratio < 1.0 or not (ratio >= C2_MIN_HEIGHT_RATIO or dens):
        return False, f"the top body is not taller than the one below it ({ratio:.2f}×) and has no dens"
    return True, f"{ratio:.2f}× as tall as the body below" + (", with a dens" if dens else "")


def _count_down(n: int, highest: str) -> list[str]:
    top = LEVELS.index(highest)
    return [LEVELS[top + j] if top + j < len(LEVELS) else f"unnamed_below_L5_{top + j - len(LEVELS) + 1}"
            for j in range(n)]


def _beyond(names: list[str], fused: list[int], upward: bool) -> list[str]:
    """Names of the fused bodies and of those counted after them."""
    if not fused:
        return []
    k = max(fused) if upward else min(fused)
    part = names[: k + 1] if upward else names[k:]
    return [n for n in part if n in LEVELS]


def name_bodies(n: int, sacrum: bool, c2: tuple[bool, str], fused: list[int],
                lowest_level: str | None = None, highest_level: str | None = None,
                room_above_top_mm: float | None = None) -> Naming:
    """Names of ``n`` bodies (cranial first) by the rules of the module docstring.
    ``fused``: indices of bodies that look like several fused ones."""
    for hint in (lowest_level, highest_level):
        if hint is not None and hint not in LEVELS:
            raise MeasurementError(f"unknown level {hint!r}; expected one of {', '.join(LEVELS)}")
    if n == 0:
        return Naming([], None)
    is_c2, why = c2
    if lowest_level is not None and highest_level is not None:
        span = LEVELS.index(lowest_level) - LEVELS.index(highest_level) + 1
        if span != n:
            raise MeasurementError(f"highest_level {highest_level} and lowest_level {lowest_level} span "
                                   f"{span} levels, but {n} vertebral bodies were found")
        names = list(LEVELS[LEVELS.index(highest_level): LEVELS.index(lowest_level) + 1])
        return Naming(names, "lowest_level_hint", True, [names[k] for k in fused])
    if lowest_level is not None:
        names, w = name_levels(n, lowest_level, room_above_top_mm)
        return Naming(names, "lowest_level_hint", (names[0] == "C2") if is_c2 else None,
                      _beyond(names, fused, True), w)
    if highest_level is not None:
        names = _count_down(n, highest_level)
        return Naming(names, "highest_level_hint", (names[-1] == "L5") if sacrum else None,
                      _beyond(names, fused, False))
    if sacrum and is_c2:
        names, w = name_levels(n, "L5")
        if n == PRESACRAL_BODIES:
            return Naming(names, "sacrum_and_c2", True, [names[k] for k in fused])
        w = [f"{n} vertebral bodies from C2 to the sacrum, {PRESACRAL_BODIES} expected (C2–L5; "
             f"{n + 1}/24 presacral vertebrae with C1): transitional anatomy, a missed or a fused body; "
             f"names are counted from the sacrum and may be off by one above the mismatch"]
        uncertain = _beyond(names, fused, True) or [x for x in names[:-1] if x in LEVELS]
        return Naming(names, "sacrum", False, uncertain, w)
    if sacrum:
        names, w = name_levels(n, "L5", room_above_top_mm)
        return Naming(names, "sacrum", None, _beyond(names, fused, True), w)
    if is_c2:
        names = _count_down(n, "C2")
        w = [f"vertebral levels counted down from C2 (top body: {why}); no sacrum below the lowest body"]
        return Naming(names, "c2", None, _beyond(names, fused, False), w)
    names, w = name_levels(n, None)
    w = [f"vertebral levels not named: no sacrum (pelvis label) directly below the lowest body, C2 not "
         f"recognised at the top ({why}), and no lowest_level or highest_level given; Cobb and segmental "
         f"angles are given on V1…V{n} (cranial first), level-specific values are null"]
    return Naming(names, None, None, [], w)
