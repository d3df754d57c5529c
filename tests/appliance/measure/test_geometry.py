"""Surfaces, plane and sphere fits, and the sub-voxel plane refinement on planted shapes."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.measure.geometry import fit_plane, fit_sphere, surface, voxel_points_mm
from appliance.measure.planefit import refine_plane
from tests.appliance.measure.measure_shapes import angle_deg, body, grid_affine, lps_grid, tilt


def test_fit_plane_ignores_outliers():
    rng = np.random.default_rng(0)
    n = tilt(12.0, -20.0)
    e1 = np.cross(n, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    pts = rng.uniform(-20, 20, (400, 1)) * e1 + rng.uniform(-20, 20, (400, 1)) * e2 + rng.normal(0, 0.2, (400, 1)) * n
    pts[:40] += 15.0 * n  # 10 % gross outliers
    _centre, normal, keep = fit_plane(pts, floor_mm=0.5)
    assert angle_deg(normal, n) < 0.3
    assert not keep[:40].any()


def test_fit_sphere_on_partial_surface_with_a_cut():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(2000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d = d[d[:, 2] > -0.3]  # a cap, as a head cut at the neck
    centre = np.array([10.0, -5.0, 30.0])
    pts = centre + 22.0 * d
    flat = centre + np.c_[rng.uniform(-15, 15, (200, 2)), np.full(200, -0.3 * 22.0)]
    c, r, _ = fit_sphere(np.r_[pts, flat])
    assert np.linalg.norm(c - centre) < 0.5
    assert abs(r - 22.0) < 0.5


def test_surface_normals_point_outward_with_an_oblique_anisotropic_grid():
    aff = grid_affine((0.7, 0.9, 1.3), origin=(-20.0, -20.0, -20.0), rot_z_deg=25.0)
    pts = lps_grid((40, 50, 50), aff)
    mask = np.linalg.norm(pts - [0.0, 0.0, 5.0], axis=-1) < 12.0
    s = surface(mask, aff)
    outward = np.einsum("ij,ij->i", s.points_mm - [0.0, 0.0, 5.0], s.normals)
    assert np.all(outward > 0)
    assert abs(np.linalg.norm(s.points_mm - [0.0, 0.0, 5.0], axis=1).mean() - 12.0) < 0.5


def test_refined_endplates_of_a_coarse_wedged_body():
    """A lumbar-sized wedged body at 2.5 mm voxels: the refined planes are within 1.5°."""
    aff = grid_affine((2.5, 2.5, 2.5), origin=(-40.0, -40.0, -40.0))
    pts = lps_grid((32, 32, 32), aff)
    sup, inf = tilt(7.0, -11.0), tilt(-4.0, 6.0)
    mask = body(pts, [0.3, 0.7, 0.4], tilt(1.5, -2.5), [1, 0, 0], 22.0, 17.0, sup, inf, 27.0)
    for n_true, out in ((sup, sup), (inf, -inf)):
        got = refine_plane(mask, aff, (0, 0, 0), voxel_points_mm(mask, aff).mean(axis=0) + 13.0 * out, out)
        assert got is not None
        assert angle_deg(got.normal, n_true) < 1.5
        # a 2.5 mm face leaves some tilt open, never tens of degrees
        assert np.all(got.open_deg >= 0.0) and np.all(got.open_deg < 10.0)


@pytest.mark.parametrize("voxel_mm", [2.5, 0.5])
def test_open_range_of_a_flat_face_is_one_voxel_over_the_face(voxel_mm):
    """A flat endplate lies within one voxel layer: any tilt up to about one voxel across
    the face fits the same voxels, and ``open_deg`` says so (≈ 2·atan(voxel / extent))."""
    n = int(round(80.0 / voxel_mm))
    aff = grid_affine((voxel_mm,) * 3, origin=(-40.0, -40.0, -40.0))
    pts = lps_grid((n, n, n), aff)
    flat = tilt(0.0, 0.0)
    mask = body(pts, [0.3, 0.7, 0.4], flat, [1, 0, 0], 22.0, 17.0, flat, flat, 27.0)
    got = refine_plane(mask, aff, (0, 0, 0), voxel_points_mm(mask, aff).mean(axis=0) + 13.0 * flat, flat)
    assert got is not None and angle_deg(got.normal, flat) < 0.5
    for extent_mm, width in ((34.0, got.open_deg[0]), (44.0, got.open_deg[1])):  # sagittal: depth, coronal: width
        expected = 2.0 * np.degrees(np.arctan(voxel_mm / extent_mm))
        assert expected * 0.95 < width < expected * 1.2, (voxel_mm, extent_mm, width, expected)
