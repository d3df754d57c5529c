"""Window sampling and the paper's augmentations (JoVE 67781, "Augmentation"), numpy only.

Geometry: one affine map per window takes the output grid ``(16, P, P)`` into the case
volume: a 16-slice window along z (the paper's sliding window), a random x/y
translation and a random rotation about z, applied to image and label *together*
(same matrix, same offset; linear interpolation for the image, nearest neighbour for
the label) — the paper concatenates them for the same reason. Intensity: the paper's
normalisation with t ~ U(1000, 3000) (``appliance.preprocess.normalize``, the very
function the appliance uses), brightness × U(0.8, 1.2), Poisson noise. Before those, and
only when the config asks, domain randomisation (``training.synth``): a window of a case
with a tissue map may be rendered anew, and any window may get cone-beam degradations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from appliance.preprocess import normalize


@dataclass(frozen=True)
class Geometry:
    """Where a window comes from: centre (z, y, x) in voxels, shift (y, x) in voxels, angle."""

    centre_zyx: tuple[float, float, float]
    shift_yx: tuple[float, float] = (0.0, 0.0)
    angle_rad: float = 0.0


def window_transform(geometry: Geometry, window_shape: tuple[int, int, int]):
    """``(matrix, offset)`` for :func:`scipy.ndimage.affine_transform` (output → input)."""
    c, s = np.cos(geometry.angle_rad), np.sin(geometry.angle_rad)
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    c_out = (np.asarray(window_shape, dtype=float) - 1.0) / 2.0
    c_in = np.asarray(geometry.centre_zyx, dtype=float) + np.array([0.0, *geometry.shift_yx])
    return matrix, c_in - matrix @ c_out


def extract_window(image: np.ndarray, labels: np.ndarray, geometry: Geometry,
                   window_shape: tuple[int, int, int], pad_value: float = -1024.0,
                   tissues: np.ndarray | None = None):
    """Resample image (linear) and label (nearest) onto the same window grid; with a
    tissue map, returns it too (nearest), as a third array."""
    matrix, offset = window_transform(geometry, window_shape)
    identity = geometry.angle_rad == 0.0 and np.allclose(offset, np.round(offset))
    order = 0 if identity else 1  # integer shifts: exact copy, no smoothing
    img = ndimage.affine_transform(image, matrix, offset, output_shape=window_shape, order=order,
                                   mode="constant", cval=pad_value, output=np.float32)
    lab = ndimage.affine_transform(labels, matrix, offset, output_shape=window_shape, order=0,
                                   mode="constant", cval=0, output=np.uint8)
    if tissues is None:
        return img, lab
    tis = ndimage.affine_transform(tissues, matrix, offset, output_shape=window_shape, order=0,
                                   mode="constant", cval=0, output=np.uint8)
    return img, lab, tis


def random_geometry(rng: np.random.Generator, shape_zyx, window_shape, *, spacing_xy_mm: float,
                    translate_mm: float, rotate_deg: float, foreground: np.ndarray | None,
                    foreground_fraction: float) -> Geometry:
    """A random window: centred on a foreground voxel with ``foreground_fraction``, else
    uniformly; z kept inside the volume when it is deeper than the window."""
    shape = np.asarray(shape_zyx, dtype=float)
    half_z = (window_shape[0] - 1) / 2.0
    if foreground is not None and len(foreground) and rng.random() < foreground_fraction:
        centre = foreground[rng.integers(len(foreground))].astype(float)
    else:
        centre = rng.uniform(0.0, 1.0, 3) * (shape - 1.0)
    lo_z, hi_z = half_z, max(half_z, shape[0] - 1.0 - half_z)
    centre[0] = np.clip(centre[0], lo_z, hi_z)
    half = (np.asarray(window_shape, dtype=float) - 1.0) / 2.0
    centre = np.round(centre - half) + half  # whole voxels: an unaugmented window is an exact crop
    shift = rng.uniform(-translate_mm, translate_mm, 2) / spacing_xy_mm if translate_mm > 0 else np.zeros(2)
    angle = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg)) if rotate_deg > 0 else 0.0
    return Geometry(tuple(centre), tuple(shift), float(angle))


def intensity(window: np.ndarray, rng: np.random.Generator, *, t_range, brightness_range,
              poisson_peak_range, poisson_probability: float, enabled: bool = True) -> np.ndarray:
    """Normalise with a random t, then brightness and Poisson noise (float32, in place)."""
    t = float(rng.uniform(*t_range))
    x = normalize(window, t, out=window)
    if not enabled:
        return x
    x *= np.float32(rng.uniform(*brightness_range))
    if rng.random() < poisson_probability:
        peak = float(rng.uniform(*poisson_peak_range))
        x[...] = rng.poisson(np.clip(x, 0, None) * peak).astype(np.float32) / np.float32(peak)
    return x


def sample_window(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, data_cfg,
                  aug_cfg, spacing_xy_mm: float, foreground: np.ndarray | None = None,
                  tissues: np.ndarray | None = None, synth_cfg=None):
    """One training window ``(image float32 (16, P, P), labels uint8 (16, P, P))``.

    ``synth_cfg`` (:class:`training.config.SynthConfig`) switches on domain
    randomisation; the generator is drawn from for it only when it is on, so a run
    without it is the same as before it existed."""
    shape = (data_cfg.window_slices, data_cfg.patch_xy, data_cfg.patch_xy)
    geometry = random_geometry(
        rng, image.shape, shape, spacing_xy_mm=spacing_xy_mm,
        translate_mm=aug_cfg.translate_mm if aug_cfg.enabled else 0.0,
        rotate_deg=aug_cfg.rotate_deg if aug_cfg.enabled else 0.0,
        foreground=foreground, foreground_fraction=data_cfg.foreground_fraction)
    render = (synth_cfg is not None and tissues is not None and synth_cfg.probability > 0
              and rng.random() < synth_cfg.probability)
    if render:
        img, lab, tis = extract_window(image, labels, geometry, shape, data_cfg.pad_value, tissues)
    else:
        img, lab = extract_window(image, labels, geometry, shape, data_cfg.pad_value)
    if render or (synth_cfg is not None and synth_cfg.cbct_probability > 0):
        from training import synth

        spacing_zyx = (float(data_cfg.working_spacing_mm[2]), spacing_xy_mm, spacing_xy_mm)
        if render:
            img = synth.render(tis, spacing_zyx, rng, synth_cfg)
        if synth_cfg.cbct_probability > 0 and rng.random() < synth_cfg.cbct_probability:
            img = synth.cbct_window(img, spacing_zyx, rng)
    img = intensity(img, rng, t_range=data_cfg.t_range, brightness_range=aug_cfg.brightness_range,
                    poisson_peak_range=aug_cfg.poisson_peak_range,
                    poisson_probability=aug_cfg.poisson_probability, enabled=aug_cfg.enabled)
    return img, lab
