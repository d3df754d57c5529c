"""The truth a phantom records agrees with the planted parameters and with its own label map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from appliance.labels import LEVELS, Label
from appliance.measure.definitions import superior
from appliance.phantom import draw_params
from appliance.errors import PhantomError
from tests.conftest import cached_study


def _angle_deg(a, b) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(np.dot(a, b)), -1.0, 1.0))))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_truth_equals_the_planted_parameters(seed):
    study = cached_study(seed)
    p, t = study.params, study.truth
    assert t["thoracic_kyphosis_deg"] == pytest.approx(p.kyphosis_deg, abs=1e-6)
    assert t["lumbar_lordosis_deg"] == pytest.approx(p.lordosis_deg, abs=1e-6)
    assert t["lumbar_lordosis_l1_s1_deg"] == pytest.approx(p.lordosis_deg + p.l5_s1_wedge_deg, abs=1e-6)
    assert t["pelvic_incidence_deg"] == pytest.approx(p.pelvic_incidence_deg, abs=1e-6)
    assert t["pelvic_tilt_deg"] == pytest.approx(p.pelvic_tilt_deg, abs=1e-6)
    assert t["sacral_slope_deg"] == pytest.approx(p.sacral_slope_deg, abs=1e-6)
    assert t["pelvic_incidence_deg"] == pytest.approx(t["pelvic_tilt_deg"] + t["sacral_slope_deg"], abs=1e-6)
    major = p.curves[0]
    assert t["cobb"]["angle_deg"] == pytest.approx(major.angle_deg, abs=1e-6)
    assert (t["cobb"]["upper_end_vertebra"], t["cobb"]["lower_end_vertebra"]) == (major.upper, major.lower)
    apex = LEVELS.index(t["cobb"]["apex_vertebra"])
    assert LEVELS.index(major.upper) < apex < LEVELS.index(major.lower)
    assert [v["name"] for v in t["vertebrae"]] == list(LEVELS)
    assert all(abs(r) <= 25.0 for r in t["vertebral_rotation_deg"].values())


def test_pinned_values_are_planted_exactly():
    study = cached_study(11, cobb_deg=35.0, kyphosis_deg=50.0, lordosis_deg=40.0,
                         pelvic_incidence_deg=60.0, pelvic_tilt_deg=20.0, max_rotation_deg=-15.0)
    t = study.truth
    assert t["cobb"]["angle_deg"] == pytest.approx(35.0, abs=1e-6)
    assert t["thoracic_kyphosis_deg"] == pytest.approx(50.0, abs=1e-6)
    assert t["lumbar_lordosis_deg"] == pytest.approx(40.0, abs=1e-6)
    assert t["sacral_slope_deg"] == pytest.approx(40.0, abs=1e-6)
    rot = t["vertebral_rotation_deg"][t["cobb"]["apex_vertebra"]]
    assert rot < -8.0  # apical rotation follows the pinned sign and size


@pytest.mark.parametrize("bad", [dict(cobb_deg=120.0), dict(pelvic_incidence_deg=10.0),
                                 dict(pelvic_incidence_deg=50.0, pelvic_tilt_deg=48.0)])
def test_impossible_parameters_are_refused(bad):
    with pytest.raises(PhantomError):
        draw_params(1, "small", **bad)


def test_label_map_holds_every_structure_with_separate_bodies(small_study):
    labels = small_study.labels.array
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    _, n_bodies = ndimage.label(labels == Label.VERTEBRAL_BODIES)
    assert n_bodies == len(LEVELS)  # C2–L5, discs keep them apart
    _, n_heads = ndimage.label(labels == Label.FEMORAL_HEADS)
    assert n_heads == 2


def test_centroids_and_voxel_counts_come_from_the_label_map(small_study):
    vol = small_study.labels
    lab, _ = ndimage.label(vol.array == Label.VERTEBRAL_BODIES)
    for v in small_study.truth["vertebrae"]:
        ijk = np.rint(vol.lps_to_index([v["centroid_mm"]])[0]).astype(int)
        comp = lab[ijk[2], ijk[1], ijk[0]]
        assert comp > 0, v["name"]
        z, y, x = np.nonzero(lab == comp)
        assert len(z) == v["voxels"]
        assert np.allclose(vol.index_to_lps(np.c_[x, y, z]).mean(axis=0), v["centroid_mm"], atol=1e-2)


def test_femoral_heads_are_the_planted_spheres(small_study):
    vol = small_study.labels
    lab, _ = ndimage.label(vol.array == Label.FEMORAL_HEADS)
    voxel_mm3 = float(np.prod(vol.spacing_mm))
    for head in small_study.truth["femoral_heads"]:
        ijk = np.rint(vol.lps_to_index([head["center_mm"]])[0]).astype(int)
        comp = lab[ijk[2], ijk[1], ijk[0]]
        z, y, x = np.nonzero(lab == comp)
        centre = vol.index_to_lps(np.c_[x, y, z]).mean(axis=0)
        assert np.linalg.norm(centre - head["center_mm"]) < 0.5
        expected = 4.0 / 3.0 * np.pi * head["radius_mm"] ** 3
        assert len(z) * voxel_mm3 == pytest.approx(expected, rel=0.05)
        assert (centre[0] > 0) == (head["side"] == "left")  # LPS: +x is the patient's left


def _refit_plane(points: np.ndarray, normal: np.ndarray, point: np.ndarray, band_mm: float):
    """Fit a plane to the points within ``band_mm`` of the plane, re-selecting around each fit."""
    n, p0 = normal, point
    for _ in range(4):
        sel = points[np.abs((points - p0) @ n) <= band_mm]
        p0 = sel.mean(axis=0)
        n = superior(np.linalg.svd(sel - p0)[2][2])
    return n, len(sel)


def test_endplate_voxels_fit_the_planted_planes_within_half_a_degree(full_study):
    """Protocol-size grid: each thoracic/lumbar endplate's voxel layer is a plane whose
    normal is the planted one within 0.5°, and that layer covers the body's section."""
    vol = full_study.labels
    lab, _ = ndimage.label(vol.array == Label.VERTEBRAL_BODIES)
    objects = ndimage.find_objects(lab)
    band = float(np.linalg.norm(vol.spacing_mm)) * 0.75
    errors = []
    for v in full_study.truth["vertebrae"]:
        if v["name"][0] not in "TL":
            continue
        ijk = np.rint(vol.lps_to_index([v["centroid_mm"]])[0]).astype(int)
        comp = lab[ijk[2], ijk[1], ijk[0]]
        sl = objects[comp - 1]
        z, y, x = np.nonzero(lab[sl] == comp)
        pts = vol.index_to_lps(np.c_[x + sl[2].start, y + sl[1].start, z + sl[0].start])
        section_mm2 = np.pi * v["half_width_mm"] * v["half_depth_mm"] * 0.9  # minus the notch
        for side in ("superior", "inferior"):
            planted = np.asarray(v[f"{side}_normal"])
            signed = (pts - v[f"{side}_point_mm"]) @ planted
            assert (signed <= 0.01).all() if side == "superior" else (signed >= -0.01).all()
            fitted, n_layer = _refit_plane(pts, planted, np.asarray(v[f"{side}_point_mm"]), band)
            errors.append(_angle_deg(fitted, planted))
            layer_area = n_layer * float(np.prod(vol.spacing_mm)) / (2 * band)
            assert layer_area > 0.6 * section_mm2, (v["name"], side)
    assert max(errors) < 0.5, max(errors)


@pytest.mark.parametrize("cobb, kyphosis, lordosis, pi", [
    (0, 10, 20, 35), (60, 60, 70, 85), (60, 10, 70, 35), (0, 60, 20, 35),
    (30, 35, 45, 60), (60, 10, 20, 85), (45, 60, 70, 35), (15, 20, 70, 85),
])
def test_the_measurement_issue_ranges_can_be_planted(cobb, kyphosis, lordosis, pi):
    """Cobb 0–60°, kyphosis 10–60°, lordosis 20–70°, PI 35–85° (issue 6) stay buildable."""
    t = cached_study(5, cobb_deg=cobb, kyphosis_deg=kyphosis, lordosis_deg=lordosis,
                     pelvic_incidence_deg=pi, max_rotation_deg=20.0).truth
    assert t["cobb"]["angle_deg"] == pytest.approx(cobb, abs=1e-6)
    assert t["thoracic_kyphosis_deg"] == pytest.approx(kyphosis, abs=1e-6)
    assert t["lumbar_lordosis_deg"] == pytest.approx(lordosis, abs=1e-6)
    assert t["pelvic_incidence_deg"] == pytest.approx(pi, abs=1e-6)
    assert abs(t["sagittal_balance"]["c7_offset_mm"]) < 120.0


def test_a_pathological_combination_is_refused_clearly():
    with pytest.raises(PhantomError, match="field of view"):
        cached_study(8, cobb_deg=0.0, kyphosis_deg=60.0, lordosis_deg=20.0, pelvic_incidence_deg=85.0)
