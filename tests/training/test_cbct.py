"""training.cbct: each cone-beam degradation does what its docstring says."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import DatasetError
from appliance.volume import Volume
from training import cbct

SPACING_XY = (2.0, 2.0)


def _cylinder(shape=(8, 64, 64), radius_mm=50.0, value=0.0, centre=(64.0, 64.0)):
    r = cbct.radius_map(shape[1:], SPACING_XY, centre)
    x = np.full(shape, cbct.AIR_HU, np.float32)
    x[:, r <= radius_mm] = value
    return x, r


def _volume(x, spacing=(2.0, 2.0, 3.0)):
    return Volume(x, spacing, origin_mm=(-10.0, 5.0, 100.0))


@pytest.mark.parametrize("fill, value", [("zero", 0.0), ("air", cbct.AIR_HU)])
def test_truncate_outside_equals_fill_inside_kept(fill, value):
    x = np.random.default_rng(0).normal(100, 50, (4, 40, 40)).astype(np.float32)
    before = x.copy()
    r = cbct.radius_map(x.shape[1:], SPACING_XY, (40.0, 38.0))
    cbct.truncate(x, SPACING_XY, (40.0, 38.0), 25.0, fill, np.random.default_rng(1))
    assert np.all(x[:, r > 25.0] == value)
    np.testing.assert_array_equal(x[:, r <= 25.0], before[:, r <= 25.0])


def test_truncate_noise_fill_has_the_stated_statistics():
    x = np.zeros((6, 80, 80), np.float32)
    r = cbct.radius_map(x.shape[1:], SPACING_XY, (80.0, 80.0))
    cbct.truncate(x, SPACING_XY, (80.0, 80.0), 40.0, "noise", np.random.default_rng(2), (200.0, 100.0))
    out = x[:, r > 40.0]
    assert abs(out.mean() - 200.0) < 5.0 and abs(out.std() - 100.0) < 5.0
    assert np.all(x[:, r <= 40.0] == 0.0)


def test_truncate_rejects_an_unknown_fill():
    with pytest.raises(DatasetError):
        cbct.truncate(np.zeros((1, 4, 4), np.float32), SPACING_XY, (4, 4), 2.0, "pink", np.random.default_rng())
    with pytest.raises(DatasetError):
        cbct.CbctConfig(fills=("zero", "pink"))


def test_cupping_lowers_the_centre_relative_to_the_edge_of_a_uniform_cylinder():
    x, r = _cylinder(value=0.0)
    cbct.cupping(x, SPACING_XY, (64.0, 64.0), 50.0, 120.0)
    centre = x[:, r < 4.0].mean()
    edge = x[:, (r > 44.0) & (r <= 50.0)].mean()
    assert centre == pytest.approx(-120.0, abs=3.0)
    assert edge > centre + 90.0
    assert np.all(x[:, r > 50.0] == cbct.AIR_HU)  # nothing changes outside the cylinder


def test_lowpass_keeps_a_constant_and_spreads_a_point():
    const = np.full((20, 30, 40), 7.0, np.float32)
    np.testing.assert_allclose(cbct.lowpass(const, (3.0, 2.0, 2.0), 20.0), 7.0, rtol=1e-4)
    spot = np.zeros((20, 60, 60), np.float32)
    spot[10, 28:32, 28:32] = 1000.0
    out = cbct.lowpass(spot, (3.0, 2.0, 2.0), 20.0)
    assert out.shape == spot.shape
    assert out[10, 30, 30] < 1000.0 * 0.5  # smoothed down
    assert out[10, 30, 45] > 0.0  # and spread 30 mm away


def test_scatter_adds_a_smooth_non_negative_haze_where_there_is_matter():
    x, r = _cylinder(value=0.0)
    before = x.copy()
    cbct.scatter(x, (3.0, *SPACING_XY), 0.1, 30.0)
    haze = x - before
    assert haze.min() >= -1e-3
    assert haze[:, r < 10].mean() > haze[:, r > 60].mean() + 20.0  # stronger inside the body
    assert haze[:, r < 10].mean() < 0.1 * 1000.0 + 1.0  # at most fraction · (0 HU − air)
    assert np.abs(np.diff(haze, axis=2)).max() < 10.0  # low frequency: no edges of its own


def test_streaks_are_bright_lines_through_their_point_on_nearby_slices_only():
    x = np.zeros((9, 64, 64), np.float32)
    line = (4, 32, 32, 0.0, 500.0, 1.0, 40.0)  # along x through (y=32, x=32)
    cbct.streaks(x, SPACING_XY, [line], half_slices=1)
    assert x[4, 32, 32] == pytest.approx(500.0)
    assert x[4, 32, 42] == pytest.approx(500.0 * np.exp(-20.0 / 40.0), rel=1e-4)  # 20 mm along
    assert x[4, 42, 32] < 1e-3  # 20 mm across: nothing
    assert x[3, 32, 32] == pytest.approx(250.0) and x[5, 32, 32] == pytest.approx(250.0)
    assert np.all(x[[0, 1, 2, 6, 7, 8]] == 0.0) and x.min() >= 0.0


def test_noise_is_zero_mean_and_grows_with_attenuation():
    x = np.full((10, 64, 64), cbct.AIR_HU, np.float32)
    x[:, :, 32:] = 1000.0
    out = cbct.noise(x.copy(), np.random.default_rng(3), sd_hu=5.0, photons=1000.0)
    air, bone = (out - x)[:, :, :32], (out - x)[:, :, 32:]
    assert abs(air.mean()) < 1.0 and abs(bone.mean()) < 3.0
    assert air.std() == pytest.approx(5.0, rel=0.05)
    assert bone.std() == pytest.approx(np.sqrt(25.0 + 1e6 / 1000.0 * 2.0), rel=0.05)


def test_z_resolution_blurs_along_z_only_and_thick_slices_interpolate():
    x = np.zeros((21, 8, 8), np.float32)
    x[10] = 100.0
    out = cbct.z_resolution(x, 2.0, 2.0, 1)
    assert out[10, 0, 0] < 100.0 and out[11, 0, 0] > 0.0 and out[10].std() == 0.0
    ramp = np.broadcast_to(np.arange(13, dtype=np.float32)[:, None, None], (13, 4, 4)).copy()
    np.testing.assert_allclose(cbct.z_resolution(ramp, 2.0, 0.0, 3), ramp, atol=1e-5)  # linear: exact
    step = np.zeros((12, 4, 4), np.float32)
    step[6:] = 1.0
    thick = cbct.z_resolution(step, 2.0, 0.0, 4)  # kept slices 0, 4, 8: the step now ramps 4..8
    assert thick[5, 0, 0] == pytest.approx(0.25) and thick[8, 0, 0] == 1.0 and thick[4, 0, 0] == 0.0


def test_grey_changes_the_mean_as_stated():
    x = np.random.default_rng(4).normal(40.0, 300.0, (5, 30, 30)).astype(np.float32)
    m = float(x.mean())
    out = cbct.grey(x.copy(), 0.8, -150.0)
    assert float(out.mean()) == pytest.approx(0.8 * m - 150.0, abs=1e-2)
    assert float(out.std()) == pytest.approx(0.8 * float(x.std()), rel=1e-4)


def test_monotone_remap_keeps_order_and_range():
    x = np.linspace(-1024.0, 3071.0, 2000, dtype=np.float32)
    y = cbct.monotone_remap(x, np.random.default_rng(5))
    assert np.all(np.diff(y) >= 0.0) and y[0] == pytest.approx(-1024.0) and y[-1] == pytest.approx(3071.0)
    assert np.abs(y - x).max() > 50.0  # not the identity


ALL = cbct.CbctConfig(p_truncate=1.0, p_cupping=1.0, p_scatter=1.0, p_streaks=1.0, p_noise=1.0, p_z=1.0,
                      p_grey=1.0)


def _phantom_volume():
    x, _ = _cylinder(shape=(12, 64, 64), radius_mm=45.0, value=40.0, centre=(70.0, 60.0))
    x[:, 50:56, 30:36] = 1200.0  # a dense rod: streak sources
    return _volume(x)


def test_degrade_keeps_shape_and_geometry_and_leaves_the_input_alone():
    vol = _phantom_volume()
    before = vol.array.copy()
    out = cbct.degrade(vol, np.random.default_rng(6), ALL)
    assert out.array.shape == vol.array.shape and out.array.dtype == np.float32
    np.testing.assert_array_equal(out.affine, vol.affine)
    np.testing.assert_array_equal(vol.array, before)
    assert not np.allclose(out.array, before)


def test_degrade_same_seed_same_output_different_seeds_differ():
    vol = _phantom_volume()
    a = cbct.degrade(vol, np.random.default_rng(7), ALL).array
    b = cbct.degrade(vol, np.random.default_rng(7), ALL).array
    c = cbct.degrade(vol, np.random.default_rng(8), ALL).array
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_draw_centres_the_field_of_view_near_the_body_and_draws_streaks_from_dense_voxels():
    vol = _phantom_volume()
    for seed in range(5):
        d = cbct.draw(np.random.default_rng(seed), ALL, vol)
        cx, cy, radius, fill = d.fov
        assert abs(cx - 70.0) <= ALL.fov_jitter_mm + 2.0 and abs(cy - 60.0) <= ALL.fov_jitter_mm + 2.0
        assert ALL.fov_radius_mm[0] <= radius <= ALL.fov_radius_mm[1] and fill in cbct.FILLS
        assert d.streaks and all(vol.array[z, y, x] > cbct.DENSE_HU for z, y, x, *_ in d.streaks)


def test_degrade_with_every_step_off_is_the_identity():
    vol = _phantom_volume()
    none = cbct.CbctConfig(p_truncate=0.0, p_cupping=0.0, p_scatter=0.0, p_streaks=0.0, p_noise=0.0, p_z=0.0,
                           p_grey=0.0)
    np.testing.assert_array_equal(cbct.degrade(vol, np.random.default_rng(9), none).array, vol.array)
