"""Endplates whose voxel columns do not agree on one plane (issue 18: the L1 superior
normal of a model mask came out exactly (0, 0, 1), a degenerate solver box reported as
a confident plane). Such a face keeps its surface fit with the tilt range one voxel
layer leaves open across it — never a value without a bound that covers its error."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.measure.bodies import Body
from appliance.measure.endplates import fit_endplates
from appliance.measure.geometry import voxel_points_mm
from appliance.measure.planefit import refine_plane
from tests.appliance.measure.measure_shapes import body, grid_affine, lps_grid, tilt

AFF = grid_affine((2.5, 2.5, 2.5), origin=(-40.0, -40.0, -40.0))
PTS = lps_grid((32, 32, 32), AFF)


def _rough_body(seed: int, coronal: bool = True):
    """A 40 × 28 mm body whose superior plate (sagittal 1–7°, coronal ±3°) has speckle:
    15 % of its top voxels get one on top, 10 % are removed, as on a model's mask."""
    rng = np.random.default_rng(seed)
    sag, cor = 4.0 + rng.uniform(-3.0, 3.0), rng.uniform(-3.0, 3.0) if coronal else 0.0
    m = body(PTS, [0, 0, 0], [0, 0, 1], [1, 0, 0], 20.0, 14.0, tilt(cor, sag), [0, 0, 1], 24.0)
    top = np.argwhere(m & ~np.roll(m, -1, axis=0))
    for z, y, x in top[rng.random(len(top)) < 0.15]:
        m[z + 1, y, x] = True
    for z, y, x in top[rng.random(len(top)) < 0.10]:
        m[z, y, x] = False
    pts = voxel_points_mm(m, AFF)
    return Body(m, (0, 0, 0), pts.mean(axis=0), len(pts) * 2.5 ** 3), tilt(cor, sag)


def _tilts_deg(n):
    return np.degrees(np.arctan2(n[1], n[2])), np.degrees(np.arctan2(n[0], n[2]))


def test_rough_faces_do_give_degenerate_boxes():
    """The premise: such faces (here level left–right) make the column solver pin a tilt
    exactly (a zero-width box)."""
    degenerate = 0
    for seed in range(20):
        b, _ = _rough_body(seed, coronal=False)
        got = refine_plane(b.mask, AFF, (0, 0, 0), np.array([0.0, 0.0, 12.0]), np.array([0.0, 0.0, 1.0]))
        degenerate += got is not None and float(np.min(got.open_deg)) < 1e-3
    assert degenerate >= 3


@pytest.mark.parametrize("coronal", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_every_superior_plate_error_is_covered_by_its_bound(seed, coronal):
    b, truth = _rough_body(seed, coronal)
    plate = fit_endplates(b, AFF, np.array([0.0, 0.0, 1.0])).superior
    got_sag, got_cor = _tilts_deg(plate.normal)
    want_sag, want_cor = _tilts_deg(truth)
    assert abs(got_sag - want_sag) <= 0.5 * plate.open_deg[0] + 0.25, (got_sag, want_sag, plate.open_deg)
    assert abs(got_cor - want_cor) <= 0.5 * plate.open_deg[1] + 0.25, (got_cor, want_cor, plate.open_deg)
    # an exactly axis-aligned normal is only ever reported with a tilt range
    if np.allclose(np.abs(plate.normal), [0.0, 0.0, 1.0], atol=1e-6):
        assert min(plate.open_deg) > 1.0
