"""One rule for "these slices form a regular volume", shared by the node and the appliance.

A stack of single-frame slices is a volume when, sorted along the slice normal, every
slice's Image Position (Patient) (PS3.3 C.7.6.2.1.1) lies within
:data:`SLICE_POSITION_TOLERANCE_MM` of the regular grid ``p_0 + k · step · normal`` with
``step`` the median spacing. That is exactly the grid the appliance's reader gives the
volume and the grid its DICOM writers check each referenced slice against, so the node's
series completion (``dicom_node.series``), the reader (``appliance.series``) and the
writers (``appliance.outputs.source``) cannot disagree: a series one of them accepts is
never refused by another after a full inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: [ours] Largest distance (mm) of a slice from its regular-grid position. Positions are
#: written with at least 3 decimals by scanners computing ``origin + k · spacing``, so a
#: regular series deviates by ~1e-3 mm; 0.05 mm is 2-10 % of a CBCT voxel.
SLICE_POSITION_TOLERANCE_MM = 0.05


@dataclass(frozen=True)
class SliceGrid:
    """How sorted slice positions fit the regular grid."""

    step_mm: float
    deviation_mm: float  # the largest distance of a slice from its grid position
    worst: int  # the index (sorted) of that slice
    missing: int  # slices a gap of about whole steps leaves out (0 when none)
    duplicates: bool  # two slices at the same position

    @property
    def regular(self) -> bool:
        return (not self.duplicates and self.missing == 0 and self.step_mm > 0
                and self.deviation_mm <= SLICE_POSITION_TOLERANCE_MM)

    def describe(self) -> str:
        """Why the slices are not a regular volume (for error messages)."""
        if self.duplicates:
            return "two or more slices share the same position (duplicates)"
        if self.missing:
            return f"{self.missing} slice(s) missing from the series (gaps in position)"
        return (f"slice {self.worst} lies {self.deviation_mm:.3f} mm off the regular {self.step_mm:.4g} mm grid "
                f"(tolerance {SLICE_POSITION_TOLERANCE_MM} mm): the spacing is uneven")


def slice_grid(positions: Sequence[Sequence[float]] | Sequence[float],
               normal: Sequence[float] | None = None) -> SliceGrid:
    """Fit sorted slice positions to the regular grid.

    ``positions``: 3-D Image Position (Patient) per slice, sorted along ``normal`` (then
    the full 3-D distance counts, in-plane shifts included), or 1-D positions along the
    normal, sorted ascending. At least two slices.
    """
    p = np.asarray(positions, float)
    if p.ndim == 1:
        along, points, n_vec = p, p[:, None], np.ones(1)
    else:
        n_vec = np.asarray(normal, float)
        n_vec = n_vec / np.linalg.norm(n_vec)
        along, points = p @ n_vec, p
    if along.size < 2:
        raise ValueError("a grid needs at least two slices")
    steps = np.diff(along)
    if np.any(steps < 1e-3):
        return SliceGrid(float(np.median(steps)), float("inf"), int(np.argmin(steps)) + 1, 0, True)
    step = float(np.median(steps))
    ratio = steps / step
    missing = int(np.sum(np.maximum(np.round(ratio) - 1, 0)))
    k = np.arange(along.size)[:, None]
    expected = points[0] + k * step * n_vec
    dev = np.linalg.norm(points - expected, axis=1)
    worst = int(np.argmax(dev))
    return SliceGrid(step, float(dev[worst]), worst, missing, False)
