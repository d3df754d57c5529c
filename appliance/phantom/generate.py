"""Generate a synthetic weight-bearing CBCT study with exact ground truth."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.errors import PhantomError
from appliance.labels import Label
from appliance.phantom.appearance import apply_cbct
from appliance.phantom.body import paint_soft_tissue
from appliance.phantom.organs import metal, paint_rich_soft_tissue
from appliance.phantom.params import PhantomParams, Size, draw_params
from appliance.phantom.raster import Grid, paint, paint_shape, union_sdf
from appliance.phantom.skeleton import Skeleton, build_skeleton
from appliance.phantom.spine import Spine, build_spine
from appliance.measure.api import structure_volumes_cm3
from appliance.phantom.tissues import Tissue, classic_lut
from appliance.phantom.truth import BodyStats, compute_truth
from appliance.volume import Volume, write_nifti


_FOV_MESSAGE = ("the planted anatomy does not fit the 350 mm field of view (too much sagittal or coronal "
                "imbalance for this combination); choose less extreme curve or sagittal angles")


#: ``classic``: the phantom's own anatomy (bones, trunk, lungs, heart, liver, gas);
#: ``rich``: plus organs, vessels, muscles, bowel, skin, table and metal (``organs``).
ANATOMIES = ("classic", "rich")


@dataclass(frozen=True)
class Study:
    params: PhantomParams
    image: Volume  # int16 grey values
    labels: Volume  # uint8, project label convention
    truth: dict
    tissues: Volume | None = None  # uint8 tissue codes (appliance.phantom.tissues.Tissue)


def _labelled_extent(spine: Spine, skel: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    boxes = [v.body.bbox_mm() for v in spine.vertebrae]
    boxes += [s.bbox_mm() for s in skel.pelvis] + [h.sphere.bbox_mm() for h in skel.heads]
    los, his = zip(*boxes)
    return np.min(los, axis=0), np.max(his, axis=0)


def _grid(p: PhantomParams, spine: Spine, skel: Skeleton) -> tuple[Grid, np.ndarray]:
    g = p.grid
    lo, hi = _labelled_extent(spine, skel)
    centre = 0.5 * (lo[:2] + hi[:2])
    if np.any(hi[:2] - lo[:2] > g.fov_mm - 10.0):
        raise PhantomError(_FOV_MESSAGE)
    z_lo = min(float(np.min([h.sphere.center[2] - h.sphere.radius for h in skel.heads])),
               skel.ischium_z_mm) - 25.0 * p.scale
    z_hi = spine.vertebrae[0].superior_z_mm + 12.0
    nz = int(np.ceil((z_hi - z_lo) / g.slice_spacing_mm)) + 1
    m = g.matrix
    origin = np.array([centre[0] - (m - 1) / 2.0 * g.pixel_mm, centre[1] - (m - 1) / 2.0 * g.pixel_mm, z_lo])
    spacing = np.array([g.pixel_mm, g.pixel_mm, g.slice_spacing_mm])
    return Grid(origin, spacing, (nz, m, m)), centre


def _check_in_fov(labels: np.ndarray, grid: Grid, centre: np.ndarray, radius_mm: float) -> None:
    footprint = labels.any(axis=0)
    iy, ix = np.nonzero(footprint)
    r = np.hypot(grid.axis_mm(0)[ix] - centre[0], grid.axis_mm(1)[iy] - centre[1])
    if r.size and r.max() > radius_mm:
        raise PhantomError(_FOV_MESSAGE)


def _centroid(grid: Grid, sl, inside: np.ndarray) -> BodyStats:
    idx = np.nonzero(inside)
    if idx[0].size == 0:
        raise PhantomError("a vertebral body fell outside the grid")
    z = grid.axis_mm(2)[sl[0]][idx[0]].mean()
    y = grid.axis_mm(1)[sl[1]][idx[1]].mean()
    x = grid.axis_mm(0)[sl[2]][idx[2]].mean()
    return BodyStats(np.array([x, y, z]), int(idx[0].size))


def generate_study(seed: int, size: Size = "small", anatomy: str = "classic", **overrides) -> Study:
    """Build a study from ``seed``; ``overrides`` pin planted values (see ``draw_params``).

    The anatomy is drawn as a tissue map (``Study.tissues``) and rendered with the
    phantom's own grey values and CBCT look; ``anatomy="rich"`` adds the organs of
    :mod:`appliance.phantom.organs` from a separate random stream, so the classic
    phantom of a seed is the same whichever anatomy exists.
    """
    if anatomy not in ANATOMIES:
        raise PhantomError(f"unknown anatomy {anatomy!r}; use one of {', '.join(ANATOMIES)}")
    p = draw_params(seed, size, **overrides)
    spine = build_spine(p)
    skel = build_skeleton(spine, p)
    grid, fov_centre = _grid(p, spine, skel)
    rng = np.random.default_rng([seed, 2])  # appearance stream, independent of anatomy

    tissues = np.full(grid.shape_zyx, Tissue.AIR, dtype=np.uint8)
    labels = np.zeros(grid.shape_zyx, dtype=np.uint8)
    outline = paint_soft_tissue(tissues, grid, spine, skel, p, rng)
    extra_bone: list = []
    if anatomy == "rich":
        rich_rng = np.random.default_rng([seed, 3])
        extra_bone = paint_rich_soft_tissue(tissues, grid, spine, skel, outline, p, rich_rng)
        for shape in metal(spine, outline, grid, p, rich_rng):
            paint_shape(tissues, None, grid, shape, Tissue.METAL, Tissue.METAL, 0.0)
    cortex = 1.2 * p.scale
    bone_codes = (Tissue.BONE_CORTEX, Tissue.BONE_CANCELLOUS, cortex)
    for bone in (*skel.unlabelled_bone, *extra_bone):
        paint_shape(tissues, None, grid, bone, *bone_codes)
    for disc in skel.discs:
        paint_shape(tissues, None, grid, disc, Tissue.DISC_SHELL, Tissue.DISC, 2.0 * p.scale)
    stats: dict[str, BodyStats] = {}
    for v in spine.vertebrae:
        found = paint_shape(tissues, labels, grid, v.body, Tissue.BODY_CORTEX, Tissue.BODY_CANCELLOUS, cortex,
                            Label.VERTEBRAL_BODIES)
        if found is None:
            raise PhantomError(f"{v.name} fell outside the grid")
        stats[v.name] = _centroid(grid, *found)
    pelvis = union_sdf(skel.pelvis, grid)
    if pelvis is None:
        raise PhantomError("the pelvis fell outside the grid")
    paint(tissues, labels, pelvis[0], pelvis[1], Tissue.PELVIS_CORTEX, Tissue.PELVIS_CANCELLOUS, cortex,
          Label.PELVIS)
    for head in skel.heads:
        paint_shape(tissues, labels, grid, head.sphere, Tissue.HEAD_CORTEX, Tissue.HEAD_CANCELLOUS, cortex,
                    Label.FEMORAL_HEADS)

    _check_in_fov(labels, grid, fov_centre, p.grid.fov_mm / 2.0 - 2.0)
    density = classic_lut(p)[tissues]
    grey = apply_cbct(density, grid, outline, p, fov_centre, rng)
    del density
    spacing = tuple(float(s) for s in grid.spacing_mm)
    origin = tuple(float(o) for o in grid.origin_mm)
    image = Volume(grey, spacing, origin)
    truth = compute_truth(p, spine, skel, stats)
    if anatomy != "classic":
        truth["anatomy"] = anatomy
    truth["grid"] = {"shape_zyx": list(grid.shape_zyx), "spacing_mm": list(spacing),
                     "origin_mm": list(origin), "fov_centre_mm": [float(c) for c in fov_centre]}
    label_volume = Volume(labels, spacing, origin)
    truth["structure_volumes_cm3"] = structure_volumes_cm3(labels, label_volume.affine)
    return Study(p, image, label_volume, truth, Volume(tissues, spacing, origin))


def write_study(study: Study, out_dir: str | Path, dicom: bool = True, tissues: bool = False) -> dict[str, Path]:
    """Write ``image.nii.gz``, ``labels.nii.gz``, ``truth.json`` and (optionally) ``dicom/``
    and the tissue map ``tissues.nii.gz``."""
    from appliance.phantom.dicom_series import write_ct_series

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "image": write_nifti(study.image, out / "image.nii.gz"),
        "labels": write_nifti(study.labels, out / "labels.nii.gz"),
    }
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(study.truth, indent=2, sort_keys=False) + "\n")
    paths["truth"] = truth_path
    if tissues and study.tissues is not None:
        paths["tissues"] = write_nifti(study.tissues, out / "tissues.nii.gz")
    if dicom:
        paths["dicom"] = write_ct_series(study, out / "dicom")
    return paths
