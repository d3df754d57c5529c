"""Augmentations keep image and label aligned; intensities follow the paper."""

from __future__ import annotations

import numpy as np
import pytest

from appliance import preprocess
from training import augment
from training.config import AugmentConfig, DataConfig

CUBE = (slice(20, 30), slice(30, 42), slice(26, 38))


def _planted():
    """Air volume with one bright cube (grey 2500) labelled 1, off-centre."""
    rng = np.random.default_rng(0)
    image = rng.normal(-1000.0, 20.0, (50, 64, 64)).astype(np.float32)
    labels = np.zeros(image.shape, dtype=np.uint8)
    image[CUBE] = 2500.0
    labels[CUBE] = 1
    return image, labels


def _aligned(img: np.ndarray, lab: np.ndarray) -> float:
    """IoU between the label and the bright voxels of the window."""
    bright = img > 0.4
    on = lab == 1
    union = np.count_nonzero(bright | on)
    return np.count_nonzero(bright & on) / union if union else 1.0


def test_planted_marker_stays_under_its_label_after_every_augmentation():
    image, labels = _planted()
    data = DataConfig(patch_xy=32, foreground_fraction=1.0)
    aug = AugmentConfig(translate_mm=15.0, rotate_deg=40.0, poisson_probability=1.0)
    centres = set()
    for seed in range(25):
        rng = np.random.default_rng(seed)
        fg = np.argwhere(labels > 0)
        img, lab = augment.sample_window(image, labels, rng, data, aug, 1.5, fg)
        assert img.shape == lab.shape == (16, 32, 32) and img.dtype == np.float32
        assert np.count_nonzero(lab) > 50, "the marker should be in a foreground-centred window"
        assert _aligned(img, lab) > 0.8, f"seed {seed}: label drifted off the bright cube"
        centres.add(tuple(np.round(np.argwhere(lab).mean(0)).astype(int)))
    assert len(centres) > 10, "windows should move (translation/rotation/crop position)"


def test_misaligned_transform_would_be_caught():
    """Control: moving the image but not the label fails the alignment measure."""
    image, labels = _planted()
    g = augment.Geometry(centre_zyx=(24.5, 36.0, 32.0), shift_yx=(0.0, 0.0), angle_rad=0.6)
    shape = (16, 32, 32)
    img, _ = augment.extract_window(image, labels, g, shape)
    _, lab = augment.extract_window(image, labels, augment.Geometry(g.centre_zyx, (6.0, -6.0), 0.0), shape)
    x = preprocess.normalize(img, 2000.0)
    assert _aligned(x, lab) < 0.6


def test_rotation_turns_image_and_label_together_about_z():
    image, labels = _planted()
    shape = (16, 64, 64)
    g = augment.Geometry(centre_zyx=(24.5, 31.5, 31.5), angle_rad=np.pi / 2)
    img, lab = augment.extract_window(image, labels, g, shape)
    # a quarter turn in (y, x) of the whole plane: the cube's label lands where the
    # rotated image is bright, and where np.rot90 of the labels puts it
    expected = np.rot90(labels[16:32], k=-1, axes=(1, 2))
    assert np.count_nonzero(lab != expected) <= 0.02 * expected.size
    assert _aligned(preprocess.normalize(img, 2000.0), lab) > 0.9


def test_intensity_uses_the_appliance_normalisation_and_paper_ranges():
    assert augment.normalize is preprocess.normalize  # imported, not copied
    window = np.full((16, 8, 8), 1000.0, dtype=np.float32)  # +1000 → 2000
    ts, gains = [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        out = augment.intensity(window.copy(), rng, t_range=(1000.0, 3000.0), brightness_range=(0.8, 1.2),
                                poisson_peak_range=(200.0, 2000.0), poisson_probability=0.0)
        r2 = np.random.default_rng(seed)
        t = r2.uniform(1000.0, 3000.0)
        gains.append(out[0, 0, 0] / min(2000.0 / t, 1.0))
        ts.append(t)
    assert 0.8 <= min(gains) and max(gains) <= 1.2 and max(gains) - min(gains) > 0.3
    noisy = augment.intensity(window.copy(), np.random.default_rng(1), t_range=(2000.0, 2000.0),
                              brightness_range=(1.0, 1.0), poisson_peak_range=(200.0, 200.0),
                              poisson_probability=1.0)
    assert noisy.std() > 0.02 and abs(noisy.mean() - 1.0) < 0.02  # Poisson: unbiased, noisy


def test_augmentation_off_gives_plain_windows():
    image, labels = _planted()
    data = DataConfig(patch_xy=32, foreground_fraction=1.0, t_range=(2000.0, 2000.0))
    img, lab = augment.sample_window(image, labels, np.random.default_rng(3), data,
                                     AugmentConfig(enabled=False), 1.5, np.argwhere(labels > 0))
    assert np.all(img[lab == 1] == 1.0)  # exact crop: t=2000 maps 2500 → 1
    assert _aligned(img, lab) == pytest.approx(1.0)
