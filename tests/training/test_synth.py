"""Domain-randomised rendering of tissue maps (SynthSeg) and cone-beam degradations of
training windows (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.phantom import generate_study
from appliance.phantom.tissues import Tissue
from training import augment, synth
from training.config import AugmentConfig, DataConfig, SynthConfig, load_config

SPACING = (2.5, 2.5, 2.5)
#: Every step off but the grey values: one value per appearance group.
BARE = SynthConfig(probability=1.0, tissue_sd_hu=(0.0, 0.0), blur_mm=(0.0, 0.0), resolution_probability=0.0,
                   bias_probability=0.0, noise_sd_hu=(0.0, 0.0))


@pytest.fixture(scope="module")
def rich():
    return generate_study(3, "small", anatomy="rich")


@pytest.fixture(scope="module")
def window(rich):
    t = rich.tissues.array
    k = int(np.argmax((t == Tissue.KIDNEY).sum(axis=(1, 2))))
    return t[k - 8:k + 8]


def test_a_rendering_is_reproducible_and_in_the_ct_range(window):
    cfg = SynthConfig(probability=1.0)
    a = synth.render(window, SPACING, np.random.default_rng(5), cfg)
    b = synth.render(window, SPACING, np.random.default_rng(5), cfg)
    c = synth.render(window, SPACING, np.random.default_rng(6), cfg)
    assert a.dtype == np.float32 and a.shape == window.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= synth.GREY_RANGE[0] and a.max() <= synth.GREY_RANGE[1]


def test_labelled_and_unlabelled_bone_look_alike(window):
    """A rib's cortex and a vertebral body's cortex get one grey value: the network must
    tell them apart by shape and place, as on a real scan."""
    for seed in range(5):
        x = synth.render(window, SPACING, np.random.default_rng(seed), BARE)
        for a, b in ((Tissue.BONE_CORTEX, Tissue.BODY_CORTEX), (Tissue.BONE_CANCELLOUS, Tissue.BODY_CANCELLOUS)):
            va, vb = np.unique(x[window == a]), np.unique(x[window == b])
            assert va.size == 1 and np.array_equal(va, vb)


def test_ct_like_renderings_can_make_contrast_vessels_outshine_bone(window):
    """The trap of the real chest CT (aorta labelled as vertebral body): in CT-like
    renderings the aorta is at times brighter than cancellous bone, bone always brighter
    than fat; fully random renderings may invert even that."""
    ct = BARE.model_copy(update={"random_fraction": 0.0})
    brighter, inverted = 0, 0
    for seed in range(200):
        means = synth.draw_means(np.random.default_rng(seed), ct)
        g = {name: means[i] for i, name in enumerate(synth.GROUPS)}
        assert g["cortex"] > g["fat"] and g["lung"] < g["soft"]
        brighter += g["aorta"] > g["cancellous"]
        means = synth.draw_means(np.random.default_rng(seed), ct.model_copy(update={"random_fraction": 1.0}))
        g = {name: means[i] for i, name in enumerate(synth.GROUPS)}
        inverted += g["cortex"] < g["fat"]
    assert 20 < brighter < 180
    assert inverted > 40


def test_lower_resolution_blurs_along_z_more_than_in_plane(window):
    cfg = BARE.model_copy(update={"resolution_probability": 1.0, "slice_mm": (6.0, 6.0), "inplane_mm": (0.5, 0.5)})
    x = synth.render(window, SPACING, np.random.default_rng(0), cfg)
    sharp = synth.render(window, SPACING, np.random.default_rng(0), BARE)
    dz = lambda a: np.abs(np.diff(a, axis=0)).mean()  # noqa: E731
    dx = lambda a: np.abs(np.diff(a, axis=2)).mean()  # noqa: E731
    assert dz(x) / dz(sharp) < 0.8  # 6 mm slices on a 2.5 mm grid: edges along z soften
    assert dx(x) / dx(sharp) > 0.9  # 0.5 mm in plane: edges across stay


def test_the_bias_field_is_smooth_multiplicative_above_air(window):
    f = synth.bias_field((16, 64, 64), np.random.default_rng(1), 0.3)
    assert f.shape == (16, 64, 64) and f.min() > 0
    assert np.abs(np.diff(np.log(f), axis=2)).max() < 0.1
    biased = BARE.model_copy(update={"bias_probability": 1.0, "bias_sd": (0.3, 0.3)})
    out = synth.render(window, SPACING, np.random.default_rng(0), biased)
    bare = synth.render(window, SPACING, np.random.default_rng(0), BARE)  # same grey values drawn
    floor = synth.GREY_RANGE[0]
    above = bare > floor + 50.0
    gain = (out[above] - floor) / (bare[above] - floor)
    assert gain.min() > np.exp(-1.5) and gain.max() < np.exp(1.5) and gain.std() > 0.02
    assert np.all(out[bare == floor] == floor)


def test_cbct_window_can_truncate_a_window(window):
    x = synth.render(window, SPACING, np.random.default_rng(0), BARE)
    cut = 0
    for seed in range(20):
        y = synth.cbct_window(x, SPACING, np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == np.float32
        d = y.copy()
        cut += bool(np.any(np.all(np.isin(d, (0.0, -1000.0)), axis=0)))
    assert cut >= 3  # the cylinder's edge crosses some windows


def _case():
    study = generate_study(3, "small", anatomy="rich")
    return study.image.array.astype(np.float32), study.labels.array, study.tissues.array


def test_sample_window_without_synth_is_what_it_was():
    image, labels, tissues = _case()
    data, aug = DataConfig(patch_xy=64), AugmentConfig()
    for seed in range(3):
        a = augment.sample_window(image, labels, np.random.default_rng(seed), data, aug, 2.5)
        b = augment.sample_window(image, labels, np.random.default_rng(seed), data, aug, 2.5,
                                  tissues=tissues, synth_cfg=SynthConfig())
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_a_rendered_window_keeps_its_labels():
    image, labels, tissues = _case()
    data, aug = DataConfig(patch_xy=64, foreground_fraction=1.0), AugmentConfig()
    fg = np.argwhere(labels > 0)
    cfg = SynthConfig(probability=1.0, cbct_probability=1.0)
    for seed in range(3):
        plain = augment.sample_window(image, labels, np.random.default_rng(seed), data, aug, 2.5, fg)
        img, lab = augment.sample_window(image, labels, np.random.default_rng(seed), data, aug, 2.5, fg,
                                         tissues=tissues, synth_cfg=cfg)
        assert np.array_equal(lab, plain[1])  # the geometry is drawn before the rendering
        assert not np.allclose(img, plain[0])
        assert np.isfinite(img).all() and img.min() >= 0.0


def test_the_synth_section_leaves_old_config_hashes_alone():
    plain = load_config(None, [])
    assert "synth" not in plain.semantic_dict()
    on = load_config(None, ["synth.probability=0.5"])
    assert on.semantic_dict()["synth"]["probability"] == 0.5 and on.hash != plain.hash
