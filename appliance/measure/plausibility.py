"""Anatomical plausibility of a label map before measuring (issue 18).

Real CT masks of the default model hold organ-like blobs labelled as bone (heart →
femoral head, aorta and ribs → vertebral bodies, kidneys → pelvis).
:func:`plausible_labels` removes the connected components that cannot be the structure
they are labelled as and says why; measurements run on the cleaned map. The SEG keeps
the model's output unchanged: a radiologist should see what the model said, mistakes
included, and the measurements JSON / SR / log list what was left out of the
measurements (:class:`Rejection`). When a rule cannot decide (too few bodies to define
the column, no pelvis in view), the component is kept.

Rules (components: 6-connected for bodies, as :mod:`appliance.measure.bodies` splits
them; 26-connected for pelvis and femoral heads):

1. Vertebral bodies form one column. Body-sized components (≥ ``MIN_BODY_MM3`` and
   ≥ ``REFERENCE_VOLUME_FRACTION`` × the median) define it. For every component of at
   least ``MIN_BODY_MM3``, the column at its height is a curve through the
   ``COLUMN_NEIGHBOURS`` other reference components nearest in z (and within
   ``NEIGHBOUR_REACH`` × the median body height of it), fitted as a quadratic in z to every subset leaving one out (the best-fitting
   subset wins, so one neighbour may be a blob). Components taller than
   ``TUBE_MIN_HEIGHT_FACTOR`` × the median height never define the column. A
   component whose centroid lies more than ``OFF_COLUMN_FACTOR`` × the neighbours'
   median radius (√(volume / (π · height)), never less than ``OFF_COLUMN_MIN_MM``) from
   that line in the axial plane is rejected: ``tube`` when it is also elongated (height
   ≥ ``TUBE_ASPECT`` × its equivalent diameter and ≥ ``TUBE_MIN_HEIGHT_FACTOR`` × the
   neighbours' median height, its largest axial section no larger than
   ``TUBE_MAX_SECTION`` × theirs: the aorta spans several levels without disc gaps; a
   tall component wider than that is bodies merged with something, and is kept),
   ``off_column`` otherwise (blobs far lateral or anterior, rib fragments). With fewer
   than ``MIN_NEIGHBOURS`` neighbours, or a centroid more than ``MAX_EXTRAPOLATION``
   body heights beyond their z range, nothing is rejected. A tall component that splits
   into ``MIN_STACKED_CORES`` or more deep cores (:func:`bodies.split_component`) is
   bodies touching at their discs, never a tube (the real chest CT's C7–T10 are one
   such component, 202 mm tall).
2. The pelvis lies below the column and joins the sacrum under the lowest lumbar body.
   A pelvis component whose lowest point is above the centroid of the lowest kept body
   component is rejected (``above_column``; kidneys beside L1, the heart). The main
   pelvis is the largest remaining component; any other more than ``DETACHED_MM``
   away from it (bounding-box gap, a lower bound of the true gap) is rejected
   (``detached``). The main pelvis must have a pelvis's shape (rule 2b); it is the
   largest component whose group (it and the components within ``DETACHED_MM``) passes.
2b. A pelvis has two ilia flanking the sacrum: whenever the S1 plate is in view, so are
   the iliac wings (the sacroiliac joints span S1–S3, the iliac crests reach L4–L5).
   The group must extend at least ``MIN_ILIAC_REACH_MM`` to either side of the column's
   midline (LPS x: the median centroid x of the ``MIDLINE_BODIES`` lowest body-sized
   components, robust to one blob among them; ``one_sided``), or, with no column to
   give the midline, span at least ``MIN_PELVIS_WIDTH_MM`` (``narrow``). Adult pelvises
   are 250–300 mm wide across the iliac crests (the real abdomen CT: 279 mm, ±140 mm
   about L5), adolescents' ~200 mm, the phantoms 178–252 mm (±88 mm or more); a sacrum
   alone is ~100–120 mm wide (±50–60 mm) and a heart or kidney labelled pelvis lies to
   one side (the real chest CT's "pelvis" under its lowest body: 101 mm wide, 7 mm to
   the right of it). A side whose extent reaches the map's edge counts as met (cut by
   the field of view: cannot tell). When it fails, every pelvis component is rejected
   (``not_pelvis``): no S1 plate, no sacrum-based naming, no pelvic parameters. Volume
   is no rule: organ blobs are as large as a pelvis cut by the field of view.
3. Femoral heads are near-spherical and sit in the acetabula. Each component of at
   least ``MIN_HEAD_MM3`` gets a robust sphere fit to its sub-voxel surface: rejected
   when its radius is outside ``HEAD_RADIUS_MM`` (``radius``), when the median
   radial residual exceeds ``MAX_SPHERE_RESIDUAL`` × the radius (``not_spherical``),
   when no pelvis voxel lies within radius + ``ACETABULUM_GAP_MM`` of its centre
   (``off_pelvis``; only with a pelvis in view), or, without a pelvis, when its centre is
   above the lowest body's centroid (``above_column``).

Cost: one ``find_objects`` pass over the map, then work on label and component crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from appliance.labels import LABEL_NAMES, Label
from appliance.measure.bodies import MIN_BODY_MM3, split_component
from appliance.measure.geometry import fit_sphere, spacing_mm, surface, voxel_volume_mm3, zyx_to_lps
from appliance.measure.pelvis import MIN_HEAD_MM3

#: Reference components of the column: at least this share of the median component volume.
REFERENCE_VOLUME_FRACTION = 0.25
#: Reference components (nearest in z) through which the local column line is fitted.
COLUMN_NEIGHBOURS = 6
#: Neighbours farther (in z) than this many median body heights do not count.
NEIGHBOUR_REACH = 4.0
#: Fewer neighbours than this: the column is not defined there, nothing is rejected.
MIN_NEIGHBOURS = 3
#: Off the column: farther than this many local body radii from the column line …
OFF_COLUMN_FACTOR = 2.0
#: … and never closer than this (mm).
OFF_COLUMN_MIN_MM = 15.0
#: Elongated (a tube): height / equivalent diameter at least this …
TUBE_ASPECT = 4.0
#: … and at least this many local body heights tall.
TUBE_MIN_HEIGHT_FACTOR = 3.0
#: … and no axial section larger than this share of the neighbours' largest sections
#: (a tube merged with bodies is wider; it is kept, not solved).
TUBE_MAX_SECTION = 1.0
#: A component is judged against its column only this many body heights (in z) beyond
#: the neighbours the line is fitted to (a quadratic is not extrapolated further).
MAX_EXTRAPOLATION = 1.0
#: A tall component that splits into this many deep cores (bodies.split_component) is
#: bodies touching at their discs (whole-vertebra masks, thin discs), never a tube.
MIN_STACKED_CORES = 3
#: A second pelvis component farther than this from the main one is detached (mm).
DETACHED_MM = 30.0
#: Each ilium reaches at least this far (mm, LPS x) to either side of the column's
#: midline: half of MIN_PELVIS_WIDTH_MM (a sacrum alone reaches ~50–60 mm).
MIN_ILIAC_REACH_MM = 75.0
#: The column's midline above the pelvis: the median x of this many lowest body-sized
#: components (one of them may be a blob the column rule could not judge).
MIDLINE_BODIES = 3
#: Without a column: the pelvis spans at least this (mm, LPS x). Above a sacrum alone
#: (~100–120 mm) and a heart (~120–140 mm), below the smallest pelvis the appliance
#: measures (adolescents ~200 mm, phantoms from 178 mm).
MIN_PELVIS_WIDTH_MM = 150.0
#: Plausible femoral-head radii (mm): children's heads from ~12 mm, adults' up to ~30 mm.
HEAD_RADIUS_MM = (12.0, 35.0)
#: A femoral head's median radial residual of its sphere fit, as a share of its radius.
MAX_SPHERE_RESIDUAL = 0.15
#: The head's surface lies within this of the acetabulum's (mm, cartilage and voxels).
ACETABULUM_GAP_MM = 10.0


@dataclass(frozen=True)
class Rejection:
    """One connected component left out of the measurements."""

    label: str  # label name (``LABEL_NAMES``)
    rule: str  # short rule id (module docstring)
    volume_cm3: float
    centroid_mm: tuple[float, float, float]  # LPS
    reason: str  # one sentence

    def as_dict(self, nd: int = 1) -> dict:
        return {"label": self.label, "rule": self.rule, "volume_cm3": round(self.volume_cm3, nd),
                "centroid_mm": [round(float(c), nd) for c in self.centroid_mm], "reason": self.reason}


@dataclass(frozen=True)
class _Component:
    index: int  # in the label's component map
    slices: tuple[slice, ...]  # in the label's crop
    offset: tuple[int, int, int]  # of the component crop in the full map
    mask: np.ndarray  # component crop
    volume_mm3: float
    centroid_mm: np.ndarray
    z_range_mm: tuple[float, float]
    section_mm2: float  # largest section across the first array axis (axial in canonical volumes)


    @property
    def height_mm(self) -> float:
        return self.z_range_mm[1] - self.z_range_mm[0]

    @property
    def radius_mm(self) -> float:
        """Radius of the mean axial section: √(volume / (π · height))."""
        return float(np.sqrt(self.volume_mm3 / (np.pi * max(self.height_mm, 1e-6))))


def _components(labels: np.ndarray, value: int, box, affine: np.ndarray, full: bool):
    """The label's connected components inside its bounding box ``box``, and their map."""
    crop = labels[box] == value
    structure = np.ones((3, 3, 3), bool) if full else None
    lab, _ = ndimage.label(crop, structure=structure)
    pad = 0.5 * float(np.abs(affine[2, :3]).sum())  # half a voxel's z extent, added at both ends
    out = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        mask = lab[sl] == i
        off = tuple(int(s.start) + int(b.start) for s, b in zip(sl, box))
        count = int(np.count_nonzero(mask))
        centroid = zyx_to_lps(np.array([ndimage.center_of_mass(mask)]), affine, off)[0]
        corners = zyx_to_lps(np.array([[a, b, c] for a in (0, mask.shape[0] - 1) for b in (0, mask.shape[1] - 1)
                                       for c in (0, mask.shape[2] - 1)]), affine, off)
        z = corners[:, 2]  # the crop box's z range (exact for axis-aligned grids)
        section = float(mask.sum(axis=(1, 2)).max()) * voxel_volume_mm3(affine) / float(spacing_mm(affine)[0])
        out.append(_Component(i, sl, off, mask, count * voxel_volume_mm3(affine), centroid,
                              (float(z.min()) - pad, float(z.max()) + pad), section))
    return out, lab


def _reject(rejections, label: int, rule: str, comp: _Component, reason: str) -> None:
    rejections.append(Rejection(LABEL_NAMES[int(label)], rule, comp.volume_mm3 / 1000.0,
                                tuple(float(c) for c in comp.centroid_mm), reason))


def _column_line(nb: list[_Component], z: float) -> np.ndarray:
    """(x, y) of the column at height ``z``: a quadratic in z through the neighbours'
    centroids, fitted to every subset that leaves one out; the subset that fits best
    wins (one neighbour may be a blob itself)."""
    pts = np.array([n.centroid_mm for n in nb])
    deg = 2 if len(pts) >= 5 else 1
    best, best_err = None, np.inf
    for drop in range(len(pts)):
        sub = np.delete(pts, drop, axis=0)
        zc = sub[:, 2] - z
        coef = [np.polyfit(zc, sub[:, k], deg) for k in (0, 1)]
        err = max(float(np.max(np.abs(np.polyval(c, zc) - sub[:, k]))) for k, c in zip((0, 1), coef))
        if err < best_err:
            best, best_err = np.array([c[-1] for c in coef]), err
    return best


def _column(comps: list[_Component], affine: np.ndarray, rejections: list[Rejection]) -> list[_Component]:
    """Rule 1: the components off the vertebral column; returns those kept."""
    evaluated = [c for c in comps if c.volume_mm3 >= MIN_BODY_MM3]
    if not evaluated:
        return comps
    median = float(np.median([c.volume_mm3 for c in evaluated]))
    sized = [c for c in evaluated if c.volume_mm3 >= REFERENCE_VOLUME_FRACTION * median]
    typical_h = float(np.median([c.height_mm for c in sized]))
    # tall components (merged bodies, tubes) do not define the column
    ref = [c for c in sized if c.height_mm < TUBE_MIN_HEIGHT_FACTOR * typical_h]
    ref_z = np.array([c.centroid_mm[2] for c in ref])
    gone = set()
    for c in evaluated:
        dz = np.abs(ref_z - c.centroid_mm[2])
        others = [j for j in np.argsort(dz) if ref[j] is not c and dz[j] <= NEIGHBOUR_REACH * typical_h]
        others = others[:COLUMN_NEIGHBOURS]
        if len(others) < MIN_NEIGHBOURS:
            continue
        nb = [ref[j] for j in others]
        nz = [n.centroid_mm[2] for n in nb]
        if np.ptp(nz) < 1e-6:
            continue
        if not min(nz) - MAX_EXTRAPOLATION * typical_h <= c.centroid_mm[2] <= max(nz) + MAX_EXTRAPOLATION * typical_h:
            continue  # the column is not known that far beyond its neighbours: keep
        off = float(np.hypot(*(c.centroid_mm[:2] - _column_line(nb, float(c.centroid_mm[2])))))
        radius = float(np.median([n.radius_mm for n in nb]))
        limit = max(OFF_COLUMN_FACTOR * radius, OFF_COLUMN_MIN_MM)
        if off <= limit:
            continue
        height = float(np.median([n.height_mm for n in nb]))
        section = float(np.median([n.section_mm2 for n in nb]))
        if c.height_mm >= TUBE_MIN_HEIGHT_FACTOR * height:
            if c.height_mm < TUBE_ASPECT * 2.0 * c.radius_mm or c.section_mm2 > TUBE_MAX_SECTION * section:
                continue  # tall and wide: bodies merged with something, kept (cannot tell)
            if len(split_component(c.mask, affine)) >= MIN_STACKED_CORES:
                continue  # separate cores stacked along it: bodies touching at their discs
            _reject(rejections, Label.VERTEBRAL_BODIES, "tube", c,
                    f"a tube {c.height_mm:.0f} mm tall and {2 * c.radius_mm:.0f} mm wide, {off:.0f} mm off the "
                    f"vertebral column (more than {limit:.0f} mm): a vessel such as the aorta, not a body")
        else:
            _reject(rejections, Label.VERTEBRAL_BODIES, "off_column", c,
                    f"centroid {off:.0f} mm off the vertebral column (more than {limit:.0f} mm): "
                    f"not a vertebral body")
        gone.add(id(c))
    return [c for c in comps if id(c) not in gone]


def _box_gap_mm(a: _Component, b: _Component, affine: np.ndarray) -> float:
    """Gap between two components' bounding boxes (mm): a lower bound of their distance."""
    lo = [np.asarray(c.offset, float) for c in (a, b)]
    hi = [lo[k] + np.asarray(c.mask.shape) - 1 for k, c in enumerate((a, b))]
    gap_vox = np.maximum(0.0, np.maximum(lo[0] - hi[1], lo[1] - hi[0]) - 1.0)  # zyx, voxels
    return float(np.linalg.norm(gap_vox * np.linalg.norm(affine[:3, :3], axis=0)[::-1]))


def _x_range_mm(group: list[_Component], affine: np.ndarray, shape: tuple[int, ...]) -> tuple[float, float, bool, bool]:
    """(min, max) LPS x of the group's crop-box corners (exact on axis-aligned grids, a
    superset otherwise), and whether its low / high x end reaches the map's edge along
    the array axis that runs most nearly along x."""
    col = int(np.argmax(np.abs(affine[0, :3])))  # index column (i, j, k) closest to LPS x
    axis, grows = 2 - col, affine[0, col] > 0  # its array axis (z, y, x order); +x with the index?
    xs, lo_edge, hi_edge = [], False, False
    for c in group:
        size = c.mask.shape
        corners = zyx_to_lps(np.array([[a, b, d] for a in (0, size[0] - 1) for b in (0, size[1] - 1)
                                       for d in (0, size[2] - 1)]), affine, c.offset)
        xs.append(corners[:, 0])
        first, last = c.offset[axis] == 0, c.offset[axis] + size[axis] == shape[axis]
        lo_edge |= first if grows else last
        hi_edge |= last if grows else first
    xs = np.concatenate(xs)
    return float(xs.min()), float(xs.max()), bool(lo_edge), bool(hi_edge)


def pelvis_shape_problem(group: list[_Component], midline_x_mm: float | None, affine: np.ndarray,
                         shape: tuple[int, ...]) -> tuple[str, str] | None:
    """Rule 2b: None when ``group`` has a pelvis's shape, else (rule, reason)."""
    lo, hi, lo_edge, hi_edge = _x_range_mm(group, affine, shape)
    pad = 0.5 * float(np.abs(affine[0, :3]).sum())  # half a voxel's x extent at both ends
    lo, hi = lo - pad, hi + pad
    if midline_x_mm is None:
        if hi - lo >= MIN_PELVIS_WIDTH_MM or lo_edge or hi_edge:
            return None
        return "narrow", (f"{hi - lo:.0f} mm wide (a pelvis with both ilia spans at least "
                          f"{MIN_PELVIS_WIDTH_MM:.0f} mm): not a pelvis")
    right, left = midline_x_mm - lo, hi - midline_x_mm  # LPS: +x is the patient's left
    if (right >= MIN_ILIAC_REACH_MM or lo_edge) and (left >= MIN_ILIAC_REACH_MM or hi_edge):
        return None
    return "one_sided", (f"reaches {right:.0f} mm to the right and {left:.0f} mm to the left of the column's "
                         f"midline (a pelvis's ilia reach at least {MIN_ILIAC_REACH_MM:.0f} mm to both "
                         f"sides): an organ, not a pelvis; levels are not counted from it")


def _pelvis(comps: list[_Component], lowest_z: float | None, affine, rejections,
            midline_x_mm: float | None = None, shape: tuple[int, ...] = ()) -> list[_Component]:
    """Rules 2 and 2b: pelvis components above the column, not pelvis-shaped, or
    detached from the main pelvis."""
    kept = []
    for c in comps:
        if lowest_z is not None and c.z_range_mm[0] > lowest_z:
            _reject(rejections, Label.PELVIS, "above_column", c,
                    f"lies wholly above the lowest vertebral body (its lowest point {c.z_range_mm[0] - lowest_z:.0f} mm "
                    f"above that body's centre): the pelvis lies below the column")
        else:
            kept.append(c)
    if not kept:
        return kept
    main, problems = None, {}
    for cand in sorted(kept, key=lambda c: -c.volume_mm3):
        group = [cand] + [c for c in kept if c is not cand and _box_gap_mm(c, cand, affine) <= DETACHED_MM]
        problem = pelvis_shape_problem(group, midline_x_mm, affine, shape)
        if problem is None:
            main = cand
            break
        problems[id(cand)] = problem
    if main is None:
        for c in kept:
            rule, reason = problems[id(c)]
            _reject(rejections, Label.PELVIS, "not_pelvis", c, f"{rule}: {reason}")
        return []
    out = [main]
    for c in kept:
        if c is main:
            continue
        gap = _box_gap_mm(c, main, affine)
        if gap > DETACHED_MM:
            _reject(rejections, Label.PELVIS, "detached", c,
                    f"at least {gap:.0f} mm from the main pelvis (more than {DETACHED_MM:.0f} mm): not part of it")
        else:
            out.append(c)
    return out


def _near_pelvis(centre: np.ndarray, reach_mm: float, pelvis: np.ndarray, affine: np.ndarray) -> bool:
    """Whether a voxel of the (full-size boolean) ``pelvis`` lies within ``reach_mm`` of ``centre``."""
    inv = np.linalg.inv(affine)
    corners = np.array([[*(centre + (2 * np.array(s) - 1) * reach_mm), 1.0] for s in np.ndindex(2, 2, 2)]) @ inv.T
    zyx = corners[:, 2::-1]
    lo = np.maximum(np.floor(zyx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(zyx.max(axis=0)).astype(int) + 1, np.asarray(pelvis.shape))
    if np.any(hi <= lo):
        return False
    crop = pelvis[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
    if not crop.any():
        return False
    pts = zyx_to_lps(np.argwhere(crop), affine, lo)
    return bool(np.min(np.linalg.norm(pts - centre, axis=1)) <= reach_mm)


def _heads(comps, pelvis: np.ndarray | None, lowest_z: float | None, affine, rejections) -> list[_Component]:
    """Rule 3: femoral-head components that are not spheres in the acetabula."""
    kept = []
    lo_r, hi_r = HEAD_RADIUS_MM
    for c in comps:
        if c.volume_mm3 < MIN_HEAD_MM3:
            kept.append(c)  # ignored by the measurement anyway
            continue
        pts = surface(c.mask, affine, c.offset).points_mm
        fit = fit_sphere(pts)
        if fit is None:
            kept.append(c)
            continue
        centre, radius, _ = fit
        residual = float(np.median(np.abs(np.linalg.norm(pts - centre, axis=1) - radius)))
        if not lo_r <= radius <= hi_r:
            _reject(rejections, Label.FEMORAL_HEADS, "radius", c,
                    f"sphere radius {radius:.0f} mm outside {lo_r:.0f}–{hi_r:.0f} mm: not a femoral head")
        elif residual > MAX_SPHERE_RESIDUAL * radius:
            _reject(rejections, Label.FEMORAL_HEADS, "not_spherical", c,
                    f"not near-spherical (median deviation {residual:.1f} mm from its {radius:.0f} mm sphere, "
                    f"more than {100 * MAX_SPHERE_RESIDUAL:.0f} %): not a femoral head")
        elif pelvis is not None and not _near_pelvis(centre, radius + ACETABULUM_GAP_MM, pelvis, affine):
            _reject(rejections, Label.FEMORAL_HEADS, "off_pelvis", c,
                    f"no pelvis within {radius + ACETABULUM_GAP_MM:.0f} mm of its centre: not seated in an acetabulum")
        elif pelvis is None and lowest_z is not None and centre[2] > lowest_z:
            _reject(rejections, Label.FEMORAL_HEADS, "above_column", c,
                    "centre above the lowest vertebral body: femoral heads lie below the column")
        else:
            kept.append(c)
    return kept


#: Label bounding boxes are found on every ``BOX_STRIDE``-th voxel, then padded by it.
BOX_STRIDE = 2


def _label_boxes(labels: np.ndarray) -> list:
    """Bounding boxes (slices) of labels 1–3, from a strided view (8× fewer voxels)
    padded by the stride: a box may be slightly large, never cuts a component that has
    a sampled voxel."""
    k = BOX_STRIDE
    coarse = ndimage.find_objects(labels[::k, ::k, ::k], max_label=int(Label.FEMORAL_HEADS))
    return [None if b is None else tuple(slice(max(s.start * k - k, 0), min(s.stop * k + k, n))
                                         for s, n in zip(b, labels.shape)) for b in coarse]


def plausible_labels(labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, list[Rejection]]:
    """A copy of ``labels`` (z, y, x; 0–3) without the components that fail the rules of
    the module docstring, and what was removed (bodies, then pelvis, then heads)."""
    labels = np.asarray(labels)
    affine = np.asarray(affine, float)
    boxes = _label_boxes(labels)
    out = labels.copy()
    rejections: list[Rejection] = []

    def drop(value: int, box, lab: np.ndarray, comps, kept) -> None:
        keep_ids = {c.index for c in kept}
        region = out[box]
        for c in comps:
            if c.index not in keep_ids:
                sub = region[c.slices]
                sub[lab[c.slices] == c.index] = 0

    lowest_z = midline_x = None
    box = boxes[Label.VERTEBRAL_BODIES - 1]
    if box is not None:
        comps, lab = _components(labels, Label.VERTEBRAL_BODIES, box, affine, full=False)
        kept = _column(comps, affine, rejections)
        drop(Label.VERTEBRAL_BODIES, box, lab, comps, kept)
        sized = [c for c in kept if c.volume_mm3 >= MIN_BODY_MM3]
        if sized:
            median = float(np.median([c.volume_mm3 for c in sized]))
            ref = sorted((c for c in sized if c.volume_mm3 >= REFERENCE_VOLUME_FRACTION * median),
                         key=lambda c: c.centroid_mm[2])
            lowest_z = float(ref[0].centroid_mm[2])
            midline_x = float(np.median([c.centroid_mm[0] for c in ref[:MIDLINE_BODIES]]))
    pelvis = None
    box = boxes[Label.PELVIS - 1]
    if box is not None:
        comps, lab = _components(labels, Label.PELVIS, box, affine, full=True)
        kept = _pelvis(comps, lowest_z, affine, rejections, midline_x, labels.shape)
        drop(Label.PELVIS, box, lab, comps, kept)
        if kept:
            pelvis = out == Label.PELVIS
    box = boxes[Label.FEMORAL_HEADS - 1]
    if box is not None:
        comps, lab = _components(labels, Label.FEMORAL_HEADS, box, affine, full=True)
        kept = _heads(comps, pelvis, lowest_z, affine, rejections)
        drop(Label.FEMORAL_HEADS, box, lab, comps, kept)
    return out, rejections
