"""Parameters of a synthetic standing-spine study, drawn reproducibly from a seed.

Every anatomical and appearance parameter is drawn here, once, from
``numpy.random.default_rng(seed)``; the builders downstream are deterministic.
Ranges are plausible adult / adolescent values (vertebral dimensions after
Panjabi et al., Spine 1991/1992; spinopelvic ranges after Legaye 1998 and
Schwab 2012), not a population model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from appliance.errors import PhantomError
from appliance.labels import LEVELS

Size = Literal["small", "full"]


@dataclass(frozen=True)
class GridSpec:
    """Reconstruction grid: axial slices, square pixels, circular field of view."""

    pixel_mm: float
    slice_spacing_mm: float
    slice_thickness_mm: float
    fov_mm: float = 350.0

    @property
    def matrix(self) -> int:
        return int(round(self.fov_mm / self.pixel_mm))


#: ``full`` is the paper's acquisition (350 mm FOV, 512² matrix, 2 mm thick slices every
#: 1 mm); ``small`` is a coarse grid for unit tests.
GRIDS: dict[str, GridSpec] = {
    "small": GridSpec(pixel_mm=2.5, slice_spacing_mm=2.5, slice_thickness_mm=2.5),
    "full": GridSpec(pixel_mm=350.0 / 512, slice_spacing_mm=1.0, slice_thickness_mm=2.0),
}


@dataclass(frozen=True)
class CurveSpec:
    """One planted coronal curve between two end vertebrae (cranial first)."""

    upper: str
    lower: str
    angle_deg: float
    #: +1: superior endplate of the upper end vertebra faces the patient's left.
    sign: int


@dataclass(frozen=True)
class PhantomParams:
    seed: int
    size: Size
    adolescent: bool
    scale: float  # skeletal size factor (1 = average adult)
    girth: float  # soft-tissue size factor
    curves: tuple[CurveSpec, ...]
    kyphosis_deg: float  # T1 superior vs T12 inferior endplate
    lordosis_deg: float  # L1 superior vs L5 inferior endplate
    cervical_lordosis_deg: float  # C2 superior vs C7 inferior endplate
    l5_s1_wedge_deg: float  # L5 inferior endplate vs S1 plate (lordotic)
    thoracolumbar_deg: float  # preferred T12 inferior vs L1 superior (lordotic if > 0); see spine
    pelvic_incidence_deg: float
    pelvic_tilt_deg: float
    c7_offset_mm: float  # sagittal vertical axis: C7 body centre ahead (−) of the S1 plate centre
    max_rotation_deg: float  # signed apical rotation of the major curve
    rotation_jitter_deg: tuple[float, ...]  # per level, added to the curve-driven rotation
    # appearance
    cortical_hu: float
    cancellous_hu: float
    disc_hu: float
    fat_thickness_mm: float
    gain: float
    offset_hu: float
    noise_hu: float
    blur_mm: float
    cupping_hu: float
    truncation_hu: float
    gas_pockets: int
    grid: GridSpec = field(default_factory=lambda: GRIDS["small"])

    @property
    def sacral_slope_deg(self) -> float:
        return self.pelvic_incidence_deg - self.pelvic_tilt_deg

    def as_dict(self) -> dict:
        d = asdict(self)
        d["sacral_slope_deg"] = self.sacral_slope_deg
        return d


def _draw_curves(rng: np.random.Generator, cobb_deg: float | None) -> tuple[CurveSpec, ...]:
    """A major curve (single thoracic, thoracolumbar, lumbar, or double major)."""
    major = float(rng.uniform(0.0, 60.0)) if cobb_deg is None else float(cobb_deg)
    if not 0.0 <= major <= 80.0:
        raise PhantomError(f"Cobb angle {major}° outside the supported 0–80°")
    sign = int(rng.choice([-1, 1]))
    pattern = str(rng.choice(["thoracic", "thoracolumbar", "lumbar", "double"]))
    ends = {
        "thoracic": (("T4", "T5", "T6"), ("T11", "T12", "L1")),
        "thoracolumbar": (("T8", "T9", "T10"), ("L2", "L3")),
        "lumbar": (("T11", "T12", "L1"), ("L3", "L4")),
    }
    if pattern in ends:
        uppers, lowers = ends[pattern]
        return (CurveSpec(str(rng.choice(uppers)), str(rng.choice(lowers)), major, sign),)
    # double major: thoracic T5–T11 and lumbar T12–L4, the second smaller
    second = major * float(rng.uniform(0.55, 0.85))
    return (
        CurveSpec("T5", "T11", major, sign),
        CurveSpec("T12", "L4", second, -sign),
    )


def draw_params(
    seed: int,
    size: Size = "small",
    *,
    cobb_deg: float | None = None,
    kyphosis_deg: float | None = None,
    lordosis_deg: float | None = None,
    pelvic_incidence_deg: float | None = None,
    pelvic_tilt_deg: float | None = None,
    max_rotation_deg: float | None = None,
    adolescent: bool | None = None,
) -> PhantomParams:
    """Draw every parameter from ``seed``; keyword overrides pin the planted values."""
    if size not in GRIDS:
        raise PhantomError(f"unknown phantom size {size!r}; use 'small' or 'full'")
    if seed < 0:
        raise PhantomError("seed must be ≥ 0")
    rng = np.random.default_rng(seed)
    is_adolescent = bool(rng.random() < 0.4) if adolescent is None else adolescent
    scale = float(rng.normal(0.88, 0.04) if is_adolescent else rng.normal(1.0, 0.05))
    curves = _draw_curves(rng, cobb_deg)
    pi = float(rng.uniform(35.0, 85.0)) if pelvic_incidence_deg is None else float(pelvic_incidence_deg)
    if not 20.0 <= pi <= 100.0:
        raise PhantomError(f"pelvic incidence {pi}° outside 20–100°")
    # Lumbar lordosis follows PI (Schwab: LL ≈ PI + 9 for L1–S1), kept in the 20–70° span.
    lordosis = float(np.clip(rng.normal(pi - 5.0, 7.0), 20.0, 70.0)) if lordosis_deg is None \
        else float(lordosis_deg)
    # Pelvic tilt grows with PI (Legaye) and compensates a PI–LL mismatch: retroversion when
    # the lordosis is too small for the pelvis, anteversion when it is too large.
    mismatch = pi - lordosis
    compensation = 0.6 * max(0.0, mismatch - 10.0) + 0.4 * min(0.0, mismatch + 5.0)
    pt_drawn = rng.normal(0.27 * pi - 1.0 + compensation, 4.0)
    pt = float(np.clip(pt_drawn, -5.0, pi - 15.0)) if pelvic_tilt_deg is None else float(pelvic_tilt_deg)
    if not -15.0 <= pt <= pi - 5.0:
        raise PhantomError(f"pelvic tilt {pt}° must lie in −15°…PI−5° (sacral slope ≥ 5°)")
    kyphosis = float(rng.uniform(10.0, 60.0)) if kyphosis_deg is None else float(kyphosis_deg)
    for name, value, lo, hi in (("lordosis", lordosis, 0.0, 90.0), ("kyphosis", kyphosis, 0.0, 90.0)):
        if not lo <= value <= hi:
            raise PhantomError(f"{name} {value}° outside {lo}–{hi}°")
    major = curves[0].angle_deg
    rot = float(np.clip(0.4 * major + rng.normal(0.0, 3.0), 0.0, 20.0)) * curves[0].sign
    if max_rotation_deg is not None:
        rot = float(max_rotation_deg)
    if abs(rot) > 30.0:
        raise PhantomError("apical rotation beyond ±30° is not modelled")
    return PhantomParams(
        seed=seed,
        size=size,
        adolescent=is_adolescent,
        scale=scale,
        girth=float(rng.uniform(0.85, 1.12) * (0.9 if is_adolescent else 1.0)),
        curves=curves,
        kyphosis_deg=kyphosis,
        lordosis_deg=lordosis,
        cervical_lordosis_deg=float(rng.uniform(5.0, 30.0)),
        l5_s1_wedge_deg=float(rng.uniform(4.0, 12.0)),
        thoracolumbar_deg=float(rng.uniform(-4.0, 4.0)),
        pelvic_incidence_deg=pi,
        pelvic_tilt_deg=pt,
        c7_offset_mm=float(rng.normal(-10.0, 15.0)),
        max_rotation_deg=rot,
        rotation_jitter_deg=tuple(float(v) for v in rng.normal(0.0, 1.0, len(LEVELS))),
        cortical_hu=float(rng.uniform(900.0, 1500.0)),
        cancellous_hu=float(rng.uniform(160.0, 380.0)),
        disc_hu=float(rng.uniform(70.0, 110.0)),
        fat_thickness_mm=float(rng.uniform(6.0, 25.0)),
        gain=float(rng.uniform(0.85, 1.15)),
        offset_hu=float(rng.uniform(-60.0, 60.0)),
        noise_hu=float(rng.uniform(15.0, 45.0)),
        blur_mm=float(rng.uniform(0.5, 0.9)),
        cupping_hu=float(rng.uniform(20.0, 120.0)),
        truncation_hu=float(rng.uniform(80.0, 250.0)),
        gas_pockets=int(rng.integers(3, 12)),
        grid=GRIDS[size],
    )
