"""Individual vertebral bodies from the vertebral-body label, ordered and named.

Splitting: connected components (6-connectivity; discs are gaps). A component that is
much larger than its neighbours, or taller than wide, is tried for a merge through a
thin or collapsed disc (or, in whole-vertebra masks, through the facet joints): its
cores deeper than 1, 2, … 8 mm inside are followed down the tree of depths until they
separate (each substantial core is a body), and every voxel goes to its nearest core. Fragments below a minimum
volume (speckle) are dropped.

Naming (:func:`name_levels`): counting up from a known lowest level (L5 on the sacrum,
or a ``lowest_level`` hint). Counts that do not fit C2–L5 produce warnings; bodies above
C2 are left unnamed, never guessed. Which end names the levels (sacrum, C2, hints) is
decided in :mod:`appliance.measure.levels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from appliance.labels import LEVELS
from appliance.measure.geometry import spacing_mm, voxel_points_mm, voxel_volume_mm3

#: Fragments smaller than this (and than a tenth of the median body) are speckle.
MIN_BODY_MM3 = 250.0
#: Depths (mm inside the mask) at which merged bodies are looked for separate cores.
SPLIT_DEPTHS_MM = (1.0, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0)
MAX_SPLIT_ROUNDS = 3
#: Smallest core (mm³) that counts as a separate body when splitting.
MIN_CORE_MM3 = 1000.0
#: A body still this much larger than its neighbours after splitting is reported as fused.
FUSED_VOLUME_RATIO = 1.8


@dataclass(frozen=True)
class Body:
    """One vertebral body: its voxels as a cropped mask with the crop's index offset."""

    mask: np.ndarray  # bool (z, y, x) crop
    offset_zyx: tuple[int, int, int]
    centroid_mm: np.ndarray
    volume_mm3: float


def _make_body(mask: np.ndarray, offset: tuple[int, int, int], affine: np.ndarray) -> Body:
    pts = voxel_points_mm(mask, affine, offset)
    return Body(mask, offset, pts.mean(axis=0), len(pts) * voxel_volume_mm3(affine))


def _cores(region: np.ndarray, depth_map: np.ndarray, level: int, voxel_mm3: float) -> list[np.ndarray]:
    """Leaf cores of ``region`` in the tree of distance-map thresholds: descend through
    ``SPLIT_DEPTHS_MM`` from ``level``; where a region holds several substantial cores
    (≥ ``MIN_CORE_MM3`` and ≥ a quarter of their median), recurse into each."""
    for k in range(level, len(SPLIT_DEPTHS_MM)):
        lab, n = ndimage.label(region & (depth_map > SPLIT_DEPTHS_MM[k]))
        if n == 0:
            break
        sizes = np.bincount(lab.ravel())[1:] * voxel_mm3
        floor = sizes[sizes >= MIN_CORE_MM3]
        if floor.size == 0:
            break
        big = np.flatnonzero(sizes >= max(MIN_CORE_MM3, 0.25 * float(np.median(floor)))) + 1
        if len(big) >= 2:
            return [c for b in big for c in _cores(lab == b, depth_map, k + 1, voxel_mm3)]
    return [region]


def split_component(mask: np.ndarray, affine: np.ndarray) -> list[np.ndarray]:
    """Split a component through thin bridges: find its separate deep cores (see
    :func:`_cores`) and give every voxel to its nearest core. One mask if it has one."""
    spacing = spacing_mm(affine)
    depth_map = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    cores = _cores(mask, depth_map, 0, voxel_volume_mm3(affine))
    if len(cores) < 2:
        return [mask]
    seeds = np.zeros(mask.shape, np.int32)
    for i, core in enumerate(cores, start=1):
        seeds[core] = i
    _, idx = ndimage.distance_transform_edt(seeds == 0, sampling=spacing, return_indices=True)
    owner = seeds[tuple(idx)]
    return [mask & (owner == i) for i in range(1, len(cores) + 1)]


def _larger_than_neighbours(bodies: list[Body], k: int, ratio: float) -> bool:
    """Volume above ``ratio`` × the median of up to two neighbours on each side."""
    vols = [b.volume_mm3 for j, b in enumerate(bodies) if j != k and abs(j - k) <= 2]
    return bool(vols) and bodies[k].volume_mm3 > ratio * float(np.median(vols))


def _suspect_merged(bodies: list[Body], k: int, affine: np.ndarray) -> bool:
    """Much larger than its neighbours, or taller (along z) than wide."""
    if _larger_than_neighbours(bodies, k, 1.5):
        return True
    pts = voxel_points_mm(bodies[k].mask, affine, bodies[k].offset_zyx)
    ext = pts.max(axis=0) - pts.min(axis=0)
    return bool(ext[2] > 1.1 * max(ext[0], ext[1]))


def find_bodies(body_mask: np.ndarray, affine: np.ndarray, offset_zyx=(0, 0, 0)) -> tuple[list[Body], list[str]]:
    """Individual bodies, cranial to caudal (by centroid z), and warnings."""
    warnings: list[str] = []
    lab, n = ndimage.label(body_mask)
    if n == 0:
        return [], warnings
    objects = ndimage.find_objects(lab)
    bodies: list[Body] = []
    for i, sl in enumerate(objects, start=1):
        off = tuple(int(s.start) + int(o) for s, o in zip(sl, offset_zyx))
        bodies.append(_make_body(lab[sl] == i, off, affine))
    median = float(np.median([b.volume_mm3 for b in bodies]))
    floor = max(MIN_BODY_MM3, 0.1 * median)
    dropped = [b for b in bodies if b.volume_mm3 < floor]
    if any(b.volume_mm3 >= MIN_BODY_MM3 for b in dropped):
        big = sum(b.volume_mm3 for b in dropped if b.volume_mm3 >= MIN_BODY_MM3)
        warnings.append(f"ignored {len(dropped)} small fragment(s) of the vertebral-body label "
                        f"({big:.0f} mm³ in fragments ≥ {MIN_BODY_MM3:.0f} mm³)")
    bodies = sorted((b for b in bodies if b.volume_mm3 >= floor), key=lambda b: -b.centroid_mm[2])
    for _ in range(MAX_SPLIT_ROUNDS):  # a part may itself hold two bodies
        out: list[Body] = []
        for k, b in enumerate(bodies):
            parts = split_component(b.mask, affine) if _suspect_merged(bodies, k, affine) else [b.mask]
            if len(parts) > 1:
                warnings.append(f"split a vertebral-body component at z={b.centroid_mm[2]:.0f} mm into "
                                f"{len(parts)} bodies (thin or collapsed disc, or touching vertebrae)")
            for part in parts:
                sl = ndimage.find_objects(part.astype(np.int8))[0]
                off = tuple(int(o) + int(q.start) for o, q in zip(b.offset_zyx, sl))
                out.append(_make_body(part[sl], off, affine) if len(parts) > 1 else b)
        out.sort(key=lambda b: -b.centroid_mm[2])
        if len(out) == len(bodies):
            break
        bodies = out
    for k in fused_indices(out):
        warnings.append(f"the vertebral body at z={out[k].centroid_mm[2]:.0f} mm looks like several bodies fused "
                        f"(no disc between them in the mask) that could not be separated; level "
                        f"names above it may be wrong (below it, when counted down from C2)")
    return out, warnings


def fused_indices(bodies: list[Body]) -> list[int]:
    """Indices of bodies (cranial first) still ``FUSED_VOLUME_RATIO`` × larger than their
    neighbours after splitting: several bodies fused."""
    return [k for k in range(len(bodies)) if _larger_than_neighbours(bodies, k, FUSED_VOLUME_RATIO)]


def name_levels(
    n_bodies: int,
    lowest_level: str | None,
    room_above_top_mm: float | None = None,
    typical_step_mm: float = 25.0,
) -> tuple[list[str], list[str]]:
    """Names of ``n_bodies`` bodies given cranial to caudal, counting up from
    ``lowest_level`` (``"L5"`` when the lowest body sits on the sacrum).

    Without a lowest level the bodies are called ``V1``… (cranial first) and a warning
    says why. Bodies above C2 are called ``unnamed_above_C2_k``. When the count does not
    reach C2 although the field of view continues more than 1.5 body steps above the top
    body, a warning flags a possible missing body or transitional anatomy.
    """
    warnings: list[str] = []
    if n_bodies == 0:
        return [], warnings
    if lowest_level is None:
        warnings.append("vertebral levels not named: no sacrum (pelvis label) directly below the "
                        "lowest body and no lowest_level given; level-specific values are null")
        return [f"V{k + 1}" for k in range(n_bodies)], warnings
    if lowest_level not in LEVELS:
        raise ValueError(f"unknown level {lowest_level!r}; expected one of {', '.join(LEVELS)}")
    low = LEVELS.index(lowest_level)
    names = []
    for j in range(n_bodies):  # j counts up from the lowest body
        k = low - j
        names.append(LEVELS[k] if k >= 0 else f"unnamed_above_C2_{-k}")
    names.reverse()
    extra = n_bodies - (low + 1)
    if extra > 0:
        warnings.append(
            f"{n_bodies} vertebral bodies counted up from {lowest_level}, but only {low + 1} levels "
            f"exist up to C2: extra segment (6 lumbar / 13 thoracic vertebrae, lumbosacral "
            f"transitional anatomy) or a fragment; the top {extra} left unnamed, names above the "
            f"transition may be off by one")
    elif extra < 0 and room_above_top_mm is not None and room_above_top_mm > 1.5 * typical_step_mm:
        warnings.append(
            f"counting up from {lowest_level} ends at {names[0]}, not C2, although the field of view "
            f"continues {room_above_top_mm:.0f} mm above it: a body may be missing or the anatomy is "
            f"transitional (11 thoracic / 4 lumbar vertebrae); names may be off")
    return names, warnings
