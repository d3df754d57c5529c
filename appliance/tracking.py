"""Follow the spine up the volume so most slabs are inferred in one window, not a plane.

Coarse-to-fine with the network itself as the coarse pass. The sliding window runs its
rows bottom-up (canonical LPS: slice index grows toward the head) and, in adaptive mode,
plans each row only after every slice below it is final (:mod:`appliance.sliding_window`).
:class:`LabelTracker` is both the sink of those final slices (argmax into the label map)
and the ``row_box`` that plans the next row:

* below and through the pelvis (any pelvis or femoral-head label in the last
  ``memory_mm``), and wherever nothing has been found yet, the row covers the slab's whole
  bony region (:meth:`appliance.crop.Crop.row_box`) — the pelvis is wide and the femoral
  heads sit apart from it;
* above it, where only vertebral bodies were found in the last ``memory_mm`` (several
  disc heights), the row covers their in-plane box grown by ``margin_mm`` — one window
  for a lumbar or thoracic slab instead of the 4–9 a plane-wide row needs;
* safety (``widen``): if the labels a tracked row found reach an inner edge of the region
  its windows covered, the column may continue outside it, so the same row is widened to
  the whole bony region before any of its slices is finalised.

Voxels outside every planned window are background, as with any ``row_box``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from appliance.labels import Label

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open


class LabelTracker:
    """Label sink + adaptive ``row_box`` + ``widen`` for :meth:`SlidingWindow.run`
    (``adaptive=True``)."""

    def __init__(self, shape_zyx: Sequence[int], spacing_zyx_mm: Sequence[float],
                 region_box: Callable[[int, int], Box | None], *, margin_mm: float = 30.0,
                 memory_mm: float = 36.0, touch_vox: int = 2) -> None:
        self.labels = np.zeros(tuple(int(s) for s in shape_zyx), dtype=np.uint8)
        self.region_box = region_box
        self.margin = tuple(int(np.ceil(margin_mm / s)) for s in spacing_zyx_mm[1:])
        self.memory = max(1, int(round(memory_mm / spacing_zyx_mm[0])))
        self.touch = int(touch_vox)
        d = self.labels.shape[0]
        self.found: list[Box | None] = [None] * d       # in-plane box of any label, per final slice
        self.pelvic = np.zeros(d, dtype=bool)           # final slice holds pelvis or femoral heads
        self.final = 0                                  # slices [0, final) are final
        self._row: tuple[Box, Box] | None = None        # (region, tracked box) of the row in flight
        self.rows_tracked = 0
        self.rows_region = 0
        self.rows_widened = 0

    # -- sink -------------------------------------------------------------------------------
    def __call__(self, z0: int, z1: int, logits: np.ndarray) -> None:
        lab = np.argmax(logits, axis=0).astype(np.uint8)
        self.labels[z0:z1] = lab
        for k in range(z1 - z0):
            s = lab[k]
            ys, xs = np.flatnonzero(s.any(axis=1)), np.flatnonzero(s.any(axis=0))
            self.found[z0 + k] = (int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1) if ys.size else None
            self.pelvic[z0 + k] = bool(np.any((s == Label.PELVIS) | (s == Label.FEMORAL_HEADS)))
        self.final = max(self.final, z1)

    # -- planning ---------------------------------------------------------------------------
    def row_box(self, z0: int, z1: int) -> Box | None:
        self._row = None
        region = self.region_box(z0, z1)
        if region is None:
            return None
        hi = min(z0, self.final)
        lo = max(0, hi - self.memory)
        boxes = [self.found[z] for z in range(lo, hi) if self.found[z] is not None]
        if not boxes or self.pelvic[lo:hi].any():
            self.rows_region += 1
            return region
        y0, y1, x0, x1 = boxes[0]
        for b in boxes[1:]:
            y0, y1, x0, x1 = min(y0, b[0]), max(y1, b[1]), min(x0, b[2]), max(x1, b[3])
        my, mx = self.margin
        box = (max(y0 - my, region[0]), min(y1 + my, region[1]), max(x0 - mx, region[2]), min(x1 + mx, region[3]))
        if box[1] <= box[0] or box[3] <= box[2]:
            self.rows_region += 1
            return region
        self.rows_tracked += 1
        self._row = (region, box)
        return box

    def widen(self, z0: int, z1: int, covered: Box, label_box: Box | None) -> Box | None:
        """The whole region when a tracked row's labels reach an inner edge of ``covered``."""
        if self._row is None or label_box is None:
            return None
        region, _ = self._row
        t = self.touch
        touches = ((covered[0] > region[0] and label_box[0] - covered[0] < t)
                   or (covered[1] < region[1] and covered[1] - label_box[1] < t)
                   or (covered[2] > region[2] and label_box[2] - covered[2] < t)
                   or (covered[3] < region[3] and covered[3] - label_box[3] < t))
        if not touches:
            return None
        self.rows_widened += 1
        return region

    @property
    def stats(self) -> dict:
        return {"rows_tracked": self.rows_tracked, "rows_whole_region": self.rows_region,
                "rows_widened": self.rows_widened}
