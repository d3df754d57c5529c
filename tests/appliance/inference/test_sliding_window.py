import tracemalloc

import numpy as np
import pytest

from appliance.sliding_window import (SlidingWindow, axis_starts, gaussian_importance, mirrored,
                                      reference_blend)


def collect(sw, image, predictor, channels, row_box=None):
    out = np.full((channels, *image.shape), np.nan, np.float32)

    def sink(z0, z1, logits):
        assert np.isnan(out[:, z0:z1]).all(), "a slab was emitted twice"
        out[:, z0:z1] = logits

    sw.run(image, predictor, sink, row_box=row_box)
    assert not np.isnan(out).any(), "some slices were never emitted"
    return out


@pytest.mark.parametrize("shape", [(45, 30, 37), (16, 16, 16), (5, 10, 40), (70, 20, 20)])
@pytest.mark.parametrize("overlap, batch", [(0.5, 4), (0.25, 1), (0.0, 3), (0.75, 7)])
def test_x_plus_one_oracle_is_exact(shape, overlap, batch):
    """MONAI's trick: a predictor that adds 1 must give back image + 1 after blending."""
    img = np.random.default_rng(1).random(shape, dtype=np.float32)
    sw = SlidingWindow((16, 16, 16), overlap=overlap, batch_size=batch, empty_below=None)
    out = collect(sw, img, lambda x: x + 1, 1)
    np.testing.assert_allclose(out[0], img + 1, rtol=0, atol=1e-5)
    assert sw.stats.run == sw.stats.windows


def test_blending_equals_direct_reference_on_random_data():
    rng = np.random.default_rng(2)
    img = rng.random((53, 41, 29), dtype=np.float32)
    kernel = rng.standard_normal(3).astype(np.float32)

    def predictor(x):  # position-dependent, non-linear, 3 channels
        d = np.arange(x.shape[2], dtype=np.float32)[None, None, :, None, None]
        return np.concatenate([np.sin(x * k + d) for k in kernel], axis=1)

    window = (16, 24, 20)
    ref = reference_blend(img, predictor, window, overlap=0.5)
    sw = SlidingWindow(window, overlap=0.5, batch_size=4, empty_below=None)
    out = collect(sw, img, predictor, 3)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    labels = SlidingWindow(window, overlap=0.5, empty_below=None).run(img, predictor)
    assert labels.dtype == np.uint8 and np.array_equal(labels, np.argmax(ref, axis=0))


def test_monai_window_positions_and_importance():
    # MONAI dense_patch_slices for size 40, roi 16, overlap 0.5 -> interval 8
    assert axis_starts(40, 16, 0.5) == [0, 8, 16, 24]
    assert axis_starts(41, 16, 0.5) == [0, 8, 16, 24, 25]
    assert axis_starts(16, 16, 0.5) == [0]
    assert axis_starts(10, 16, 0.5) == [0]
    w = gaussian_importance((16, 8, 5))
    assert w.dtype == np.float32 and w.shape == (16, 8, 5)
    # separable Gaussian with sigma = 0.125 * size, centred at (n - 1) / 2, clamped at its min (>= 1e-3)
    x = np.arange(16) - 7.5
    g = np.exp(-x ** 2 / (2 * 2.0 ** 2))
    np.testing.assert_allclose(w[:, 4, 2] / w[8, 4, 2], np.maximum(g / g[8], w.min() / w[8, 4, 2]), rtol=1e-5)
    assert w.min() >= 1e-3


def test_streamed_memory_is_proportional_to_a_slab_not_the_volume():
    h = w = 64
    window = (16, 32, 32)
    predictor = lambda x: np.concatenate([x, -x, x * 0.5, 1 - x], axis=1)  # noqa: E731

    def peak(depth):
        img = np.random.default_rng(3).random((depth, h, w), dtype=np.float32)
        sw = SlidingWindow(window, batch_size=4, empty_below=None)
        labels = np.zeros(img.shape, np.uint8)

        def sink(z0, z1, logits):
            labels[z0:z1] = np.argmax(logits, axis=0)

        tracemalloc.start()
        sw.run(img, predictor, sink)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, sw.stats.peak_buffer_bytes

    short, buf_short = peak(64)
    tall, buf_tall = peak(512)   # 8x taller
    whole_logits = 4 * 512 * h * w * 4
    assert buf_tall == buf_short                      # the accumulator does not grow with depth
    assert tall < 1.3 * short + 1_000_000             # nor does anything else
    assert tall < whole_logits / 4                    # far below the whole-volume float logits


def test_empty_windows_are_skipped_and_match_running_them():
    img = np.zeros((64, 64, 64), np.float32)
    img[20:40, 40:60, 10:30] = np.random.default_rng(4).random((20, 20, 20), dtype=np.float32) + 0.1
    calls = []

    def predictor(x):
        calls.append(x.shape[0])
        return np.concatenate([x * 2 - 0.1, 0.05 + 0 * x], axis=1)

    sw = SlidingWindow((16, 32, 32), batch_size=4, empty_below=0.0)
    labels = sw.run(img, predictor)
    s = sw.stats
    assert s.windows == 7 * 3 * 3 and 0 < s.run < s.windows and s.skipped_empty == s.windows - s.run
    assert sum(calls) == s.run + 1  # plus one all-zero window, run once and reused
    full = SlidingWindow((16, 32, 32), batch_size=4, empty_below=None).run(img, predictor)
    assert np.array_equal(labels, full)


def test_mirroring_tta_is_identity_for_equivariant_predictor():
    img = np.random.default_rng(5).random((20, 18, 18), dtype=np.float32)
    sw = SlidingWindow((16, 16, 16), empty_below=None)
    calls = []

    def predictor(x):
        calls.append(1)
        return x + 1

    out = collect(sw, img, mirrored(predictor, axes=(2, 3, 4)), 1)
    np.testing.assert_allclose(out[0], img + 1, atol=1e-5)
    assert len(calls) == 8 * sw.stats.predictor_calls


def test_mirroring_tta_flips_left_right_only_by_default():
    """A network that knows up from down (no mirroring in training) is not averaged with
    its upside-down self: only the left-right flip is used."""
    img = np.random.default_rng(6).random((16, 16, 16), dtype=np.float32)
    ramp_z = np.linspace(-1, 1, 16, dtype=np.float32)[:, None, None]

    def predictor(x):  # symmetric in x, not in z: the default TTA must be the identity
        sym_x = x + x[..., ::-1]
        return sym_x + ramp_z

    sw = SlidingWindow((16, 16, 16), empty_below=None)
    plain = collect(sw, img, predictor, 1)
    tta = collect(SlidingWindow((16, 16, 16), empty_below=None), img, mirrored(predictor), 1)
    np.testing.assert_allclose(tta, plain, atol=1e-5)
    every_axis = collect(SlidingWindow((16, 16, 16), empty_below=None), img, mirrored(predictor, axes=(2, 3, 4)), 1)
    assert not np.allclose(every_axis, plain, atol=1e-3)


def test_bad_predictor_output_is_a_clear_error():
    from appliance.errors import InferenceInputError
    sw = SlidingWindow((16, 16, 16))
    with pytest.raises(InferenceInputError, match="predictor returned shape"):
        sw.run(np.ones((16, 16, 16), np.float32), lambda x: x[:, :, :8])


def test_row_boxes_restrict_windows_and_leave_the_rest_background():
    img = np.random.default_rng(6).random((80, 64, 64), dtype=np.float32)

    def row_box(z0, z1):
        if z1 <= 24:
            return None                      # no region of interest in the first slabs
        return (8, 30, 30, 60) if z0 < 56 else (0, 64, 0, 64)

    sw = SlidingWindow((16, 16, 16), batch_size=4, empty_below=None)
    out = collect(sw, img, lambda x: x + 1, 1)
    full_windows = sw.stats.windows
    out = np.full((1, *img.shape), np.nan, np.float32)

    def sink(z0, z1, logits):
        out[:, z0:z1] = logits

    sw.run(img, lambda x: x + 1, sink, row_box=row_box)
    assert not np.isnan(out).any()
    assert sw.stats.windows < full_windows
    covered = out[0] != 0
    np.testing.assert_allclose(out[0][covered], img[covered] + 1, atol=1e-5)   # exact where covered
    assert not covered[:8].any()                                             # dropped rows: zero logits
    assert covered[40, 8:30, 30:60].all() and not covered[40, 40:, :20].any()
    assert covered[70].all()
    labels = sw.run(img, lambda x: np.concatenate([x * 0, x + 1], 1), row_box=lambda a, b: None)
    assert labels.shape == img.shape and not labels.any()


def test_monai_sliding_window_agrees_when_installed():
    import torch
    import monai.inferers as monai_inferers
    img = np.random.default_rng(7).random((37, 41, 29), dtype=np.float32)

    def predictor(x):
        return np.concatenate([np.sin(3 * x), np.cos(x) - x], axis=1)

    ours = collect(SlidingWindow((16, 24, 16), overlap=0.5, batch_size=3, empty_below=None), img, predictor, 2)
    ref = monai_inferers.sliding_window_inference(
        torch.from_numpy(img)[None, None], roi_size=(16, 24, 16), sw_batch_size=3,
        predictor=lambda t: torch.from_numpy(predictor(t.numpy())), overlap=0.5, mode="gaussian")
    np.testing.assert_allclose(ours, ref[0].numpy(), atol=1e-5)


def test_gaps_between_rows_after_skipped_empty_windows():
    img = np.zeros((120, 40, 40), np.float32)
    img[:20] = 0.5                       # bright bottom, empty (all-air) top
    img[100:] = 0.5

    def row_box(z0, z1):                 # a long gap (> accumulator depth) in the middle
        return None if 30 <= z0 < 90 else (0, 40, 0, 40)

    sw = SlidingWindow((16, 16, 16), batch_size=2, empty_below=0.0)
    out = collect(sw, img, lambda x: np.concatenate([x * 0 + 0.1, x], axis=1), 2, row_box=row_box)
    labels = np.argmax(out, axis=0)
    assert sw.stats.skipped_empty > 0
    assert (labels[:16] == 1).all() and (labels[104:] == 1).all()
    assert (labels[40:80] == 0).all() and (out[:, 40:80] == 0).all()


@pytest.mark.parametrize("overlap", [0.5, 0.25, 0.0])
def test_adaptive_rows_equal_the_static_plan_for_the_same_boxes(overlap):
    """Planned lazily or up front, the same row boxes give the same windows and logits."""
    rng = np.random.default_rng(8)
    img = rng.random((90, 50, 45), dtype=np.float32)
    img[:10] = 0.0                        # an all-air slab: skipped windows in both modes

    def row_box(z0, z1):
        if 20 <= z0 < 40:
            return None
        return (5, 30, 10, 44) if z0 < 60 else (0, 50, 0, 45)

    def predictor(x):
        return np.concatenate([np.sin(3 * x), np.cos(x) - x], axis=1)

    static = SlidingWindow((16, 24, 16), overlap=overlap, batch_size=3, empty_below=0.0)
    ref = collect(static, img, predictor, 2, row_box=row_box)
    adaptive = SlidingWindow((16, 24, 16), overlap=overlap, batch_size=3, empty_below=0.0)
    out = np.full((2, *img.shape), np.nan, np.float32)
    rows = []

    def sink(z0, z1, logits):
        assert np.isnan(out[:, z0:z1]).all(), "a slab was emitted twice"
        out[:, z0:z1] = logits

    def lazy_box(z0, z1):                 # every slice below the row is already final
        assert not np.isnan(out[:, :max(0, z0 - 1)]).any()
        return row_box(z0, z1)

    def widen(z0, z1, covered, label_box):
        rows.append((z0, z1, covered))
        return None

    adaptive.run(img, predictor, sink, row_box=lazy_box, adaptive=True, widen=widen)
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    assert (adaptive.stats.windows, adaptive.stats.run, adaptive.stats.skipped_empty) == \
        (static.stats.windows, static.stats.run, static.stats.skipped_empty)
    assert all(r[2][0] <= 5 and r[2][1] >= 30 for r in rows if r[0] < 20)   # regions cover the boxes
