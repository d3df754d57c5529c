"""Cone-beam CT look: blur, cupping, truncation glow, correlated noise that grows toward
the ends of the cone, an uncalibrated grey scale, and a circular field of view.

CBCT grey values are not reliably calibrated HU (JoVE 67781), so each phantom gets its
own gain and offset; the network's normalisation must cope with that.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from appliance.phantom.body import Outline
from appliance.phantom.params import PhantomParams
from appliance.phantom.raster import Grid

#: Value written outside the reconstructed circular field of view (stored pixel 0).
OUTSIDE_FOV = -1024
GREY_MIN, GREY_MAX = -1024, 3071


def fov_mask(grid: Grid, fov_centre_xy: np.ndarray, radius_mm: float) -> np.ndarray:
    x = grid.axis_mm(0)[None, :] - fov_centre_xy[0]
    y = grid.axis_mm(1)[:, None] - fov_centre_xy[1]
    return x * x + y * y <= radius_mm * radius_mm


def apply_cbct(density: np.ndarray, grid: Grid, ol: Outline, p: PhantomParams,
               fov_centre_xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn the HU-like ``density`` (float32, modified in place) into int16 grey values."""
    sigma_xy = p.blur_mm / grid.spacing_mm[0]
    sigma_z = max(p.blur_mm, p.grid.slice_thickness_mm / 2.355) / grid.spacing_mm[2]
    ndimage.gaussian_filter(density, sigma=(sigma_z, sigma_xy, sigma_xy), output=density, truncate=3.0)

    radius = p.grid.fov_mm / 2.0
    x = grid.axis_mm(0)[None, :]
    y = grid.axis_mm(1)[:, None]
    r_fov = np.sqrt((x - fov_centre_xy[0]) ** 2 + (y - fov_centre_xy[1]) ** 2)
    glow = np.exp(-np.clip(radius - r_fov, 0.0, None) / 12.0)
    for k in range(density.shape[0]):
        rho2 = ((x - ol.cx[k]) / ol.a[k]) ** 2 + ((y - ol.cy[k]) / ol.b[k]) ** 2
        inside = rho2 < 1.0
        if not ol.trunk[k]:
            continue
        density[k][inside] -= (p.cupping_hu * (1.0 - rho2[inside])).astype(np.float32)
        if ol.a[k] > radius - 5.0:  # the trunk leaves the field of view: truncation glow
            density[k][inside] += (p.truncation_hu * glow[inside]).astype(np.float32)

    nz = density.shape[0]
    cone = 1.0 + 0.6 * np.linspace(-1.0, 1.0, nz) ** 2
    for start in range(0, nz, 64):  # bounded memory: noise in slabs
        stop = min(nz, start + 64)
        noise = rng.standard_normal((stop - start,) + density.shape[1:], dtype=np.float32)
        ndimage.gaussian_filter(noise, sigma=(0.0, 0.6, 0.6), output=noise)
        noise *= np.float32(p.noise_hu / max(float(noise.std()), 1e-6))
        noise *= cone[start:stop, None, None].astype(np.float32)
        density[start:stop] += noise

    density *= np.float32(p.gain)
    density += np.float32(p.offset_hu)
    np.clip(density, GREY_MIN, GREY_MAX, out=density)
    grey = np.rint(density).astype(np.int16)
    grey[:, ~fov_mask(grid, fov_centre_xy, radius)] = OUTSIDE_FOV
    return grey
