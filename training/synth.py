"""Domain-randomised rendering of tissue maps, the SynthSeg recipe (Billot et al.,
"SynthSeg: segmentation of brain MRI scans of any contrast and resolution without
retraining", Medical Image Analysis 2023), applied to the phantom's tissue map
(``appliance.phantom.tissues``) one training window at a time.

A rendering draws one grey value per appearance group (the cortex of a rib and of a
vertebral body look alike, so they share one), either from a wide CT-like range per
tissue (contrast-filled aorta, kidneys and bowel can outshine bone; lungs and gas stay
dark) or, with ``random_fraction``, anything in ``random_range_hu`` (SynthSeg's fully
random contrast: bone darker than fat, inverted). Then, in SynthSeg's order: a
per-tissue texture, blur, a lower acquired resolution, a smooth multiplicative bias
field and noise. The result is a grey-value window in HU-like units, ready for the
paper's normalisation with t ∈ [1000, 3000] (``training.augment.intensity``).

:func:`cbct_window` puts ``training.cbct``'s cone-beam degradations on a window; since a
window sees only part of the body, its cylinder of view is placed with a wider jitter
(:data:`WINDOW_CBCT`) so that its edge crosses windows as it crosses real scans.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from appliance.phantom.tissues import GROUP, Tissue
from appliance.volume import Volume
from training import cbct
from training.config import SynthConfig

#: CT-like grey value ranges (HU) per appearance group, wide on purpose: contrast phases,
#: calibration offsets and partial volume. Contrast-filled vessels, kidneys, heart and
#: bowel reach past cancellous bone; table materials from foam to carbon fibre.
CT_PRIOR_HU: dict[str, tuple[float, float]] = {
    "air": (-1024.0, -900.0), "fat": (-160.0, -40.0), "soft": (0.0, 90.0), "lung": (-950.0, -600.0),
    "heart": (20.0, 450.0), "liver": (30.0, 200.0), "gas": (-1024.0, -800.0),
    "disc_shell": (60.0, 160.0), "disc": (40.0, 130.0),
    "cortex": (350.0, 1900.0), "cancellous": (90.0, 500.0),
    "kidney": (20.0, 350.0), "spleen": (30.0, 200.0), "aorta": (30.0, 650.0), "vena_cava": (30.0, 400.0),
    "bowel": (-60.0, 500.0), "skin": (0.0, 120.0), "table": (-400.0, 700.0), "metal": (1800.0, 3071.0),
    "bladder": (-10.0, 300.0), "muscle": (20.0, 90.0),
}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(GROUP[t] for t in Tissue))
_CODE_GROUP = np.array([GROUPS.index(GROUP[t]) for t in Tissue], dtype=np.intp)
#: Grey value range of the result (the CT range of the appliance's readers).
GREY_RANGE = (-1024.0, 3071.0)
#: Cone-beam degradations for a window: its cylinder of view may sit anywhere within
#: 80 mm of the window's body centre, and be as narrow as 80 mm, so its edge crosses the
#: window; the other ranges are ``training.cbct``'s.
WINDOW_CBCT = cbct.CbctConfig(fov_radius_mm=(80.0, 170.0), fov_jitter_mm=80.0)


def draw_means(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """Grey value (HU) of every appearance group for one rendering."""
    if rng.random() < cfg.random_fraction:
        return rng.uniform(*cfg.random_range_hu, len(GROUPS))
    return np.array([rng.uniform(*CT_PRIOR_HU[g]) for g in GROUPS])


def bias_field(shape: tuple[int, int, int], rng: np.random.Generator, sd: float) -> np.ndarray:
    """exp of a smooth random field (a 4 x 5 x 5 grid of N(0, sd) log-gains, linearly upsampled)."""
    coarse = rng.normal(0.0, sd, (4, 5, 5))
    zoom = [n / c for n, c in zip(shape, coarse.shape)]
    return np.exp(ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)[
        tuple(slice(0, n) for n in shape)]).astype(np.float32)


def render(tissues: np.ndarray, spacing_zyx_mm, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """A new grey-value image (float32, HU-like) of a tissue-code window."""
    groups = _CODE_GROUP[tissues]
    means = draw_means(rng, cfg).astype(np.float32)
    sds = rng.uniform(*cfg.tissue_sd_hu, len(GROUPS)).astype(np.float32)
    x = means[groups]
    x += sds[groups] * rng.standard_normal(tissues.shape, dtype=np.float32)
    spacing = np.asarray(spacing_zyx_mm, dtype=float)
    sigma_mm = np.full(3, float(rng.uniform(*cfg.blur_mm)))
    if rng.random() < cfg.resolution_probability:  # FWHM = acquired resolution
        res = np.array([rng.uniform(*cfg.slice_mm), *(2 * [rng.uniform(*cfg.inplane_mm)])])
        sigma_mm = np.hypot(sigma_mm, res / 2.355)
    sigma = sigma_mm / spacing
    if np.any(sigma > 0.1):
        ndimage.gaussian_filter(x, sigma=sigma, output=x, truncate=3.0)
    if rng.random() < cfg.bias_probability:
        air = np.float32(GREY_RANGE[0])
        x -= air
        x *= bias_field(x.shape, rng, float(rng.uniform(*cfg.bias_sd)))
        x += air
    noise_sd = float(rng.uniform(*cfg.noise_sd_hu))
    if noise_sd > 0:
        x += np.float32(noise_sd) * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x, *GREY_RANGE, out=x)


def cbct_window(image: np.ndarray, spacing_zyx_mm, rng: np.random.Generator,
                config: cbct.CbctConfig = WINDOW_CBCT) -> np.ndarray:
    """``training.cbct.degrade`` on one window (float32, HU-like grey values)."""
    z, y, x = (float(s) for s in spacing_zyx_mm)
    out = cbct.degrade(Volume(np.asarray(image, dtype=np.float32), (x, y, z)), rng, config).array
    return np.clip(out, *GREY_RANGE).astype(np.float32, copy=False)
