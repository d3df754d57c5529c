"""Cone-beam CT degradations of a CT volume in HU (numpy/scipy only, seeded).

A diagnostic CT is not a weight-bearing CBCT: the cone beam reconstructs a truncated
cylinder (the Varian CBCT is a ~25 cm cylinder in a padded volume), scatter and beam
hardening give a low-frequency drop toward the centre (cupping) and a haze, dense
objects throw streaks, grey values are not calibrated HU, the noise is higher and the
resolution along z lower (Schulze et al., Dentomaxillofac Radiol 2011, "Artefacts in
CBCT: a review"). Each function below imitates one of these in the image domain, with
its parameter range documented in :class:`CbctConfig`; :func:`degrade` composes them
(issue 17; on top of the paper's augmentation and its t ∈ [1000, 3000] normalisation,
JoVE 67781).

Geometry: arrays are ``(z, y, x)``; the cylinder axis is the array's slice axis (z) and
in-plane distances use the volume's x/y spacing. Low-frequency fields are computed on
a coarse grid and brought back by separable linear interpolation, so a 512 × 512 × 133
volume takes a few seconds. :func:`draw` turns a generator and a config into one set of
parameters (:class:`CbctDraw`), :func:`apply` applies them: the same seed gives the same
output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from appliance.errors import DatasetError
from appliance.volume import Volume

#: Air in HU; also the "-1000" fill outside the field of view.
AIR_HU = -1000.0
#: Voxels above this (HU) count as the body when the field of view is centred on it.
BODY_HU = -400.0
#: Voxels above this (HU) are dense (bone cortex, contrast, metal) and may throw streaks.
DENSE_HU = 700.0
#: Fill values outside the field of view: the literal value 0, air, or noise ("garbage").
FILLS = ("zero", "air", "noise")
#: Coarse-grid voxel size (mm) of the low-frequency fields (scatter haze).
COARSE_MM = 8.0


@dataclass(frozen=True)
class CbctConfig:
    """Parameter ranges ``(low, high)``, drawn uniformly, and the probability of each step."""

    #: Cylindrical field of view: radius (mm; Varian ~125 mm), centre jitter around the
    #: body centre (mm), fill outside.
    p_truncate: float = 0.8
    fov_radius_mm: tuple[float, float] = (110.0, 170.0)
    fov_jitter_mm: float = 20.0
    fills: tuple[str, ...] = FILLS
    #: Garbage outside the field of view: Gaussian noise of this mean and sd (HU).
    garbage_hu: tuple[float, float] = (0.0, 300.0)
    #: Cupping: drop at the cylinder's centre (HU), falling to 0 at its edge, parabolic.
    p_cupping: float = 0.8
    cupping_hu: tuple[float, float] = (20.0, 250.0)
    #: Scatter haze: this fraction of a low-pass copy (sigma in mm) of (HU − air) is added.
    p_scatter: float = 0.7
    scatter_fraction: tuple[float, float] = (0.02, 0.15)
    scatter_sigma_mm: tuple[float, float] = (20.0, 60.0)
    #: Streaks: how many dense points throw lines, lines per point, peak (HU), half-width
    #: (mm), decay length along the line (mm), slices (each side) a point's streaks span.
    p_streaks: float = 0.5
    streak_points: tuple[int, int] = (1, 4)
    streak_lines: tuple[int, int] = (2, 6)
    streak_hu: tuple[float, float] = (150.0, 800.0)
    streak_width_mm: tuple[float, float] = (0.7, 2.0)
    streak_length_mm: tuple[float, float] = (40.0, 150.0)
    streak_half_slices: int = 1
    #: Noise: additive Gaussian sd (HU) and Poisson-like quantum noise with this many
    #: photons per voxel for water (fewer: noisier), normal approximation.
    p_noise: float = 0.9
    noise_sd_hu: tuple[float, float] = (5.0, 60.0)
    photons: tuple[float, float] = (300.0, 5000.0)
    #: Resolution along z: Gaussian blur sd (mm), and keeping every k-th slice
    #: (linearly interpolated back), k drawn from 1..``max_keep_every``.
    p_z: float = 0.6
    z_blur_mm: tuple[float, float] = (0.5, 2.5)
    max_keep_every: int = 3
    #: Grey values: out = scale · HU + offset (CBCT numbers are not HU).
    p_grey: float = 0.9
    grey_scale: tuple[float, float] = (0.7, 1.3)
    grey_offset_hu: tuple[float, float] = (-300.0, 300.0)

    def __post_init__(self) -> None:
        bad = set(self.fills) - set(FILLS)
        if bad or not self.fills:
            raise DatasetError(f"unknown field-of-view fill(s) {sorted(bad)}; choose from {FILLS}")
        if self.max_keep_every < 1:
            raise DatasetError("max_keep_every must be ≥ 1")


@dataclass(frozen=True)
class CbctDraw:
    """One drawn set of degradation parameters (None: that step is skipped)."""

    fov: tuple[float, float, float, str] | None = None        # centre x, y (mm from voxel 0), radius, fill
    cupping_hu: float | None = None
    scatter: tuple[float, float] | None = None                # fraction, sigma mm
    streaks: tuple[tuple[int, int, int, float, float, float, float], ...] = ()  # z, y, x, angle, hu, width, length
    noise: tuple[float, float] | None = None                  # sd HU, photons
    z: tuple[float, int] | None = None                        # blur mm, keep every k
    grey: tuple[float, float] | None = None                   # scale, offset HU
    seed: int = 0                                              # noise stream
    extra: dict = field(default_factory=dict)


def _inplane_mm(shape_yx: tuple[int, int], spacing_xy_mm: tuple[float, float]):
    """Column (y) and row (x) coordinate vectors in mm of voxel centres, broadcastable."""
    y = np.arange(shape_yx[0], dtype=np.float32)[:, None] * np.float32(spacing_xy_mm[1])
    x = np.arange(shape_yx[1], dtype=np.float32)[None, :] * np.float32(spacing_xy_mm[0])
    return y, x


def radius_map(shape_yx, spacing_xy_mm, centre_xy_mm) -> np.ndarray:
    """In-plane distance (mm) of every voxel column from the cylinder axis."""
    y, x = _inplane_mm(shape_yx, spacing_xy_mm)
    return np.sqrt((x - np.float32(centre_xy_mm[0])) ** 2 + (y - np.float32(centre_xy_mm[1])) ** 2)


def truncate(x: np.ndarray, spacing_xy_mm, centre_xy_mm, radius_mm: float, fill: str,
             rng: np.random.Generator, garbage_hu=(0.0, 300.0)) -> np.ndarray:
    """Set everything outside the cylinder of ``radius_mm`` about ``centre_xy_mm`` to the
    fill: 0, air (−1000 HU) or Gaussian garbage (mean, sd ``garbage_hu``). In place."""
    outside = radius_map(x.shape[1:], spacing_xy_mm, centre_xy_mm) > radius_mm
    if fill == "zero":
        x[:, outside] = 0.0
    elif fill == "air":
        x[:, outside] = AIR_HU
    elif fill == "noise":
        n = int(outside.sum()) * x.shape[0]
        x[:, outside] = rng.normal(garbage_hu[0], garbage_hu[1], n).astype(x.dtype).reshape(x.shape[0], -1)
    else:
        raise DatasetError(f"unknown field-of-view fill {fill!r}; choose from {FILLS}")
    return x


def cupping(x: np.ndarray, spacing_xy_mm, centre_xy_mm, radius_mm: float, drop_hu: float) -> np.ndarray:
    """Subtract ``drop_hu · (1 − (r/R)²)`` inside the cylinder of radius R (0 outside):
    the largest drop on the axis, none at the edge. In place."""
    r = radius_map(x.shape[1:], spacing_xy_mm, centre_xy_mm)
    field2d = np.float32(drop_hu) * np.clip(1.0 - (r / np.float32(radius_mm)) ** 2, 0.0, None)
    x -= field2d[None]
    return x


def _interp_matrix(n_fine: int, n_coarse: int) -> np.ndarray:
    """``(n_fine, n_coarse)`` linear interpolation weights, voxel centres aligned."""
    pos = np.clip((np.arange(n_fine) + 0.5) * n_coarse / n_fine - 0.5, 0.0, n_coarse - 1.0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_coarse - 1)
    w = np.zeros((n_fine, n_coarse), np.float32)
    np.add.at(w, (np.arange(n_fine), lo), 1.0 - (pos - lo))
    np.add.at(w, (np.arange(n_fine), hi), pos - lo)
    return w


def lowpass(x: np.ndarray, spacing_zyx_mm, sigma_mm: float, coarse_mm: float = COARSE_MM) -> np.ndarray:
    """Gaussian low-pass (sd ``sigma_mm``) computed on a ~``coarse_mm`` grid: area-weighted
    down-sampling, the filter, separable linear interpolation back (float32)."""
    mats = [_interp_matrix(n, max(2, int(np.ceil(n * s / coarse_mm)))) for n, s in zip(x.shape, spacing_zyx_mm)]
    small = x.astype(np.float32, copy=False)
    for axis, w in enumerate(mats):  # down: weights normalised per coarse sample
        down = (w / np.maximum(w.sum(axis=0, keepdims=True), 1e-6)).T
        small = np.moveaxis(np.tensordot(down, small, axes=(1, axis)), 0, axis)
    coarse_spacing = [n * s / w.shape[1] for n, s, w in zip(x.shape, spacing_zyx_mm, mats)]
    small = ndimage.gaussian_filter(small, [sigma_mm / c for c in coarse_spacing], mode="nearest")
    for axis, w in enumerate(mats):
        small = np.moveaxis(np.tensordot(w, small, axes=(1, axis)), 0, axis)
    return np.ascontiguousarray(small, dtype=np.float32)


def scatter(x: np.ndarray, spacing_zyx_mm, fraction: float, sigma_mm: float) -> np.ndarray:
    """Add ``fraction`` × a low-pass copy of ``x − air`` (haze ≥ 0 where there is matter). In place."""
    haze = lowpass(np.maximum(x - np.float32(AIR_HU), 0.0), spacing_zyx_mm, sigma_mm)
    x += np.float32(fraction) * haze
    return x


def streaks(x: np.ndarray, spacing_xy_mm, lines, half_slices: int = 1) -> np.ndarray:
    """Bright lines in axial slices: each ``(z, y, x, angle_rad, hu, width_mm, length_mm)``
    adds ``hu · exp(−d²/2w²) · exp(−|s|/L)`` (d across, s along the line through the voxel)
    on slices ``z ± half_slices`` (tapered). In place."""
    yy, xx = _inplane_mm(x.shape[1:], spacing_xy_mm)
    for z, y0, x0, angle, hu, width, length in lines:
        dx, dy = xx - np.float32(x0 * spacing_xy_mm[0]), yy - np.float32(y0 * spacing_xy_mm[1])
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        across, along = dx * -s + dy * c, dx * c + dy * s
        line = np.float32(hu) * np.exp(-0.5 * (across / np.float32(width)) ** 2 - np.abs(along) / np.float32(length))
        for dz in range(-half_slices, half_slices + 1):
            if 0 <= z + dz < x.shape[0]:
                x[z + dz] += line / np.float32(1 + abs(dz))
    return x


def noise(x: np.ndarray, rng: np.random.Generator, sd_hu: float, photons: float) -> np.ndarray:
    """Additive Gaussian noise (sd ``sd_hu``) plus quantum noise whose variance grows with
    attenuation: sd = 1000 HU · sqrt(μ/N) with μ = max(HU − air, 0)/1000 (the normal
    approximation of Poisson counts, N photons for water). In place."""
    mu = np.maximum(x - np.float32(AIR_HU), 0.0) / np.float32(1000.0)
    sd = np.sqrt(np.float32(sd_hu) ** 2 + np.float32(1.0e6 / photons) * mu)
    del mu
    x += sd * rng.standard_normal(x.shape, dtype=np.float32)
    return x


def z_resolution(x: np.ndarray, spacing_z_mm: float, blur_mm: float, keep_every: int) -> np.ndarray:
    """Blur along z (Gaussian sd ``blur_mm``), then keep every ``keep_every``-th slice and
    interpolate the others linearly (thicker effective slices). Returns a new array."""
    out = ndimage.gaussian_filter1d(x, blur_mm / spacing_z_mm, axis=0, mode="nearest") if blur_mm > 0 else x.copy()
    if keep_every > 1 and x.shape[0] > keep_every:
        kept = np.arange(0, x.shape[0], keep_every)
        w = np.stack([np.interp(np.arange(x.shape[0]), kept, np.eye(len(kept))[j]) for j in range(len(kept))], 1)
        out = np.tensordot(w.astype(np.float32), out[kept], axes=(1, 0))
    return np.ascontiguousarray(out, dtype=np.float32)


def grey(x: np.ndarray, scale: float, offset_hu: float) -> np.ndarray:
    """``scale · x + offset_hu`` (uncalibrated CBCT numbers). In place."""
    x *= np.float32(scale)
    x += np.float32(offset_hu)
    return x


def monotone_remap(x: np.ndarray, rng: np.random.Generator, knots: int = 6,
                   range_hu: tuple[float, float] = (-1024.0, 3071.0)) -> np.ndarray:
    """A random increasing piecewise-linear map of ``range_hu`` onto itself (``knots``
    inner knots, Dirichlet increments): same order of grey values, other contrasts."""
    lo, hi = range_hu
    xs = np.linspace(lo, hi, knots + 2)
    ys = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.ones(knots + 1)))])
    return np.interp(x, xs, ys).astype(np.float32)


def _u(rng: np.random.Generator, pair) -> float:
    return float(rng.uniform(*pair))


def draw(rng: np.random.Generator, config: CbctConfig, volume: Volume) -> CbctDraw:
    """Draw the parameters of one degradation of ``volume`` (each step with its probability)."""
    x = volume.array
    spacing_xy = volume.spacing_mm[:2]
    body = (x > BODY_HU).any(axis=0)
    if body.any():
        cy, cx = (np.argwhere(body).mean(axis=0) * np.asarray(spacing_xy)[::-1])
    else:
        cy, cx = (np.asarray(x.shape[1:]) - 1) / 2.0 * np.asarray(spacing_xy)[::-1]
    fov = None
    centre = (float(cx), float(cy))
    radius = 0.5 * float(np.hypot(x.shape[2] * spacing_xy[0], x.shape[1] * spacing_xy[1]))
    if rng.random() < config.p_truncate:
        centre = (float(cx + rng.uniform(-1, 1) * config.fov_jitter_mm),
                  float(cy + rng.uniform(-1, 1) * config.fov_jitter_mm))
        radius = _u(rng, config.fov_radius_mm)
        fov = (*centre, radius, str(rng.choice(config.fills)))
    cup = _u(rng, config.cupping_hu) if rng.random() < config.p_cupping else None
    sca = (_u(rng, config.scatter_fraction), _u(rng, config.scatter_sigma_mm)) \
        if rng.random() < config.p_scatter else None
    lines: list = []
    if rng.random() < config.p_streaks:
        dense = np.flatnonzero(x.ravel() > DENSE_HU)
        if dense.size:
            n_points = int(rng.integers(config.streak_points[0], config.streak_points[1] + 1))
            for flat in rng.choice(dense, size=min(n_points, dense.size), replace=False):
                z, y0, x0 = (int(v) for v in np.unravel_index(int(flat), x.shape))
                for _ in range(int(rng.integers(config.streak_lines[0], config.streak_lines[1] + 1))):
                    lines.append((z, y0, x0, float(rng.uniform(0, np.pi)), _u(rng, config.streak_hu),
                                  _u(rng, config.streak_width_mm), _u(rng, config.streak_length_mm)))
    noi = (_u(rng, config.noise_sd_hu), _u(rng, config.photons)) if rng.random() < config.p_noise else None
    zr = (_u(rng, config.z_blur_mm), int(rng.integers(1, config.max_keep_every + 1))) \
        if rng.random() < config.p_z else None
    gr = (_u(rng, config.grey_scale), _u(rng, config.grey_offset_hu)) if rng.random() < config.p_grey else None
    return CbctDraw(fov, cup, sca, tuple(lines), noi, zr, gr, int(rng.integers(2 ** 31)),
                    {"centre_xy_mm": centre, "radius_mm": radius})


def apply(volume: Volume, d: CbctDraw, config: CbctConfig = CbctConfig()) -> Volume:
    """Apply one drawn degradation: z resolution → cupping → scatter → streaks → noise →
    grey scale → truncation (last, so the fill is exact). Returns float32 grey values."""
    x = np.array(volume.array, dtype=np.float32, copy=True)
    spacing_xy, spacing_zyx = volume.spacing_mm[:2], volume.spacing_mm[::-1]
    rng = np.random.default_rng(d.seed)
    if d.z is not None:
        x = z_resolution(x, volume.spacing_mm[2], *d.z)
    if d.cupping_hu is not None:
        cupping(x, spacing_xy, d.extra["centre_xy_mm"], d.extra["radius_mm"], d.cupping_hu)
    if d.scatter is not None:
        scatter(x, spacing_zyx, *d.scatter)
    if d.streaks:
        streaks(x, spacing_xy, d.streaks, config.streak_half_slices)
    if d.noise is not None:
        noise(x, rng, *d.noise)
    if d.grey is not None:
        grey(x, *d.grey)
    if d.fov is not None:
        truncate(x, spacing_xy, d.fov[:2], d.fov[2], d.fov[3], rng, config.garbage_hu)
    return volume.with_array(x)


def degrade(volume: Volume, rng: np.random.Generator, config: CbctConfig = CbctConfig()) -> Volume:
    """``volume`` (HU) as a cone-beam CT might show it: :func:`draw` then :func:`apply`."""
    return apply(volume, draw(rng, config, volume), config)
