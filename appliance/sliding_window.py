"""Streamed sliding-window inference with Gaussian blending (MONAI/nnU-Net style).

The predictor is any callable ``(N, 1, D, H, W) float32 -> (N, C, D, H, W)`` logits
(an engine's ``run``, a test oracle, ...), so scheduling and blending are separate from
the model. Definitions (MONAI ``sliding_window_inference`` semantics, reproduced):

* window positions per axis: step ``int(window * (1 - overlap))`` (at least 1; the whole
  axis when the window covers it), last window shifted back to end at the border;
  positions ordered z-major (z outermost) as MONAI's ``dense_patch_slices``;
* an axis shorter than the window is zero-padded symmetrically (``diff // 2`` before);
* importance map: separable Gaussian, ``sigma = 0.125 * window`` per axis, centred at
  ``(window - 1) / 2``, then clamped below at ``max(min(map), 1e-3)``;
* blended output = ``sum(w * logits) / sum(w)`` over the windows covering a voxel.

Streaming: windows are visited z-major, so once every window starting before slice
``z`` has been accumulated, slices ``< z`` are final. The accumulator therefore only
spans the z-range of the windows in flight (about one window depth plus one step), never
the whole study; each finished slab is normalised and handed to a *sink* (by default an
argmax into a ``uint8`` label map). Windows whose input is entirely ``<= empty_below``
(air after normalisation) are not run: the predictor's output for an all-zero window is
computed once and reused, which is exact for ``empty_below == 0`` on zero windows.

Region of interest (optional ``row_box``): each row of windows (same z start) may be
planned over an in-plane box only (e.g. the bony region of that slab, from
:mod:`appliance.crop`); voxels no window covers get zero logits (background). With the
whole plane as the box the plan is MONAI's.

Adaptive rows (``adaptive=True``): rows are planned one at a time, just before they run,
after every slice below the row has been finalised and handed to the sink. ``row_box``
can then follow what the network has already found (:mod:`appliance.tracking`). After a
row has run, ``widen(z0, z1, covered, label_box)`` sees the in-plane region its windows
cover and the box of the labels they found, and may return a wider box for the same row:
its missing windows then run before any of the row's slices is finalised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from appliance.errors import InferenceInputError

Predictor = Callable[[np.ndarray], np.ndarray]
#: ``sink(z0, z1, logits)`` receives the blended, normalised logits ``(C, z1-z0, H, W)``.
Sink = Callable[[int, int, np.ndarray], None]
#: ``row_box(z0, z1) -> (y0, y1, x0, x1) | None``: in-plane region of interest of a slab.
RowBox = Callable[[int, int], "tuple[int, int, int, int] | None"]
#: ``widen(z0, z1, covered, label_box) -> wider box | None`` (adaptive rows only).
Widen = Callable[[int, int, "tuple[int, int, int, int]", "tuple[int, int, int, int] | None"],
                 "tuple[int, int, int, int] | None"]

MONAI_SIGMA_SCALE = 0.125
MONAI_MIN_WEIGHT = 1e-3


def gaussian_importance(window_zyx: Sequence[int], sigma_scale: float = MONAI_SIGMA_SCALE) -> np.ndarray:
    """MONAI ``compute_importance_map(mode="gaussian")``: float32, clamped min weight."""
    w = None
    for n in window_zyx:
        x = np.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=np.float32)[:n]
        g = np.exp(x.astype(np.float32) ** 2 / np.float32(-2 * (n * sigma_scale) ** 2)).astype(np.float32)
        w = g if w is None else np.multiply.outer(w, g)
    w = np.asarray(w, dtype=np.float32)
    floor = max(float(w.min()), MONAI_MIN_WEIGHT)
    return np.maximum(w, np.float32(floor))


def axis_starts(size: int, window: int, overlap: float) -> list[int]:
    """Window start indices along one axis (MONAI ``_get_scan_interval`` + ``dense_patch_slices``)."""
    if window >= size:
        return [0]
    step = max(int(window * (1 - overlap)), 1)
    num = int(math.ceil(size / step))
    count = next((d for d in range(num) if d * step + window >= size), num - 1) + 1
    return [i * step - max(i * step + window - size, 0) for i in range(count)]


@dataclass
class WindowStats:
    windows: int = 0          # planned windows
    run: int = 0              # windows sent to the predictor
    skipped_empty: int = 0    # windows replaced by the cached empty output
    predictor_calls: int = 0  # batches (plus one for the empty-window output)
    widened_rows: int = 0     # adaptive rows re-planned wider after they ran
    peak_buffer_bytes: int = 0


class LabelSink:
    """Default sink: argmax of each finished slab into a preallocated ``uint8`` map."""

    def __init__(self, shape_zyx: Sequence[int]) -> None:
        self.labels = np.zeros(tuple(shape_zyx), dtype=np.uint8)

    def __call__(self, z0: int, z1: int, logits: np.ndarray) -> None:
        self.labels[z0:z1] = np.argmax(logits, axis=0)


class SlidingWindow:
    """Plan and run a streamed sliding window over one ``(D, H, W)`` float32 volume."""

    def __init__(self, window_zyx: Sequence[int], *, overlap: float = 0.5, batch_size: int = 4,
                 empty_below: float | None = 0.0, sigma_scale: float = MONAI_SIGMA_SCALE,
                 progress: Callable[[int, int], None] | None = None) -> None:
        if len(window_zyx) != 3 or any(int(n) < 1 for n in window_zyx):
            raise ValueError(f"window must be 3 positive sizes (z, y, x), got {window_zyx}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.window = tuple(int(n) for n in window_zyx)
        self.overlap = float(overlap)
        self.batch_size = int(batch_size)
        self.empty_below = empty_below
        self.importance = gaussian_importance(self.window, sigma_scale)
        self.progress = progress
        self.stats = WindowStats()

    # -- planning -----------------------------------------------------------------------
    def plan(self, shape_zyx: Sequence[int], row_box: RowBox | None = None) -> tuple[tuple[int, int, int], np.ndarray]:
        """Padded shape and the ``(n, 3)`` window starts (z-major, padded coordinates).

        ``row_box(z0, z1)`` (image coordinates) may restrict each row of windows (the
        windows sharing a z start) to an in-plane box ``(y0, y1, x0, x1)``, or drop the
        row (``None``): the in-plane positions are then planned over that box only (the
        same rule as the whole plane, centred when the box is smaller than the window).
        """
        padded = tuple(max(int(s), w) for s, w in zip(shape_zyx, self.window))
        starts = [axis_starts(s, w, self.overlap) for s, w in zip(padded, self.window)]
        if row_box is None:
            grid = np.stack(np.meshgrid(*starts, indexing="ij"), axis=-1).reshape(-1, 3)
            return padded, grid
        rows = [self._plan_row(z, shape_zyx, padded, row_box) for z in starts[0]]
        return padded, np.concatenate(rows).astype(int) if rows else np.zeros((0, 3), int)

    def _row_slices(self, z: int, shape_zyx: Sequence[int], padded: Sequence[int]) -> tuple[int, int]:
        """Image slices ``[z0, z1)`` covered by the row starting at padded slice ``z``."""
        before = (padded[0] - shape_zyx[0]) // 2
        return max(z - before, 0), max(min(z - before + self.window[0], shape_zyx[0]), 1)

    def _plan_row(self, z: int, shape_zyx: Sequence[int], padded: Sequence[int], row_box: RowBox) -> np.ndarray:
        """Window starts ``(n, 3)`` of one row, over ``row_box`` of its slab (none if dropped)."""
        box = row_box(*self._row_slices(z, shape_zyx, padded))
        if box is None:
            return np.zeros((0, 3), int)
        axes = []
        for a, (lo, hi) in ((1, box[0:2]), (2, box[2:4])):
            before = (padded[a] - shape_zyx[a]) // 2
            lo, hi = min(max(int(lo), 0), shape_zyx[a]) + before, min(max(int(hi), 0), shape_zyx[a]) + before
            w, size = self.window[a], padded[a]
            if hi - lo >= w:
                axes.append([lo + s for s in axis_starts(hi - lo, w, self.overlap)])
            else:
                axes.append([int(min(max((lo + hi) // 2 - w // 2, 0), size - w))])
        return np.asarray([(z, y, x) for y in axes[0] for x in axes[1]], dtype=int).reshape(-1, 3)

    # -- running ------------------------------------------------------------------------
    def run(self, image: np.ndarray, predictor: Predictor, sink: Sink | None = None,
            row_box: RowBox | None = None, *, adaptive: bool = False,
            widen: "Widen | None" = None) -> np.ndarray | None:
        """Blend ``predictor`` over ``image``; return the label map if no sink is given.

        Voxels no window covers (only possible with ``row_box``) get all-zero logits,
        i.e. background after argmax. ``adaptive`` plans each row just before it runs
        (see the module docstring).
        """
        if image.ndim != 3 or image.size == 0:
            raise InferenceInputError(f"sliding window needs a non-empty 3D array, got {image.shape}")
        if adaptive:
            if row_box is None:
                raise ValueError("adaptive rows need a row_box")
            return self._run_adaptive(image, predictor, sink, row_box, widen)
        label_sink = LabelSink(image.shape) if sink is None else None
        padded_shape, starts = self.plan(image.shape, row_box)
        pad_before = tuple((p - s) // 2 for p, s in zip(padded_shape, image.shape))
        stats = self.stats = WindowStats(windows=len(starts))
        windows = _Windows(image, self.window, padded_shape, pad_before)
        empty = np.array([self.empty_below is not None and float(windows.get(s).max()) <= self.empty_below
                          for s in starts], dtype=bool)
        steps = self._steps(np.flatnonzero(~empty), len(starts))
        depth = self._depth(starts, steps, padded_shape[0])
        acc = _Accumulator(self.importance, self.window, padded_shape, pad_before, image.shape, depth,
                           label_sink if sink is None else sink)
        if len(starts) == 0:  # nothing to infer (row_box dropped every row): all background
            channels = np.asarray(predictor(np.zeros((1, 1, *self.window), np.float32))).shape[1]
            stats.predictor_calls += 1
            acc.emit_zeros(0, padded_shape[0], channels)
            return label_sink.labels if label_sink is not None else None
        empty_out: np.ndarray | None = None
        next_i = 0
        for batch, end in steps:
            outputs = self._predict(predictor, windows, starts, batch) if batch is not None else {}
            for i in range(next_i, end):
                if i in outputs:
                    acc.add(starts[i], outputs[i])
                    continue
                if empty_out is None:  # the all-zero window, run once and reused
                    empty_out = np.asarray(predictor(np.zeros((1, 1, *self.window), np.float32)), np.float32)[0]
                    stats.predictor_calls += 1
                acc.add(starts[i], empty_out)
                stats.skipped_empty += 1
            next_i = end
            if self.progress is not None:
                self.progress(end, len(starts))
            acc.flush(int(starts[end, 0]) if end < len(starts) else padded_shape[0])
        stats.peak_buffer_bytes = acc.nbytes
        return label_sink.labels if label_sink is not None else None

    def _run_adaptive(self, image: np.ndarray, predictor: Predictor, sink: Sink | None, row_box: RowBox,
                      widen: "Widen | None") -> np.ndarray | None:
        """Row by row: plan, run (in batches), maybe widen, accumulate, then finalise the
        slices below the next row."""
        label_sink = LabelSink(image.shape) if sink is None else None
        padded_shape = tuple(max(int(s), w) for s, w in zip(image.shape, self.window))
        pad_before = tuple((p - s) // 2 for p, s in zip(padded_shape, image.shape))
        z_starts = axis_starts(padded_shape[0], self.window[0], self.overlap)
        stats = self.stats = WindowStats()
        windows = _Windows(image, self.window, padded_shape, pad_before)
        acc = _Accumulator(self.importance, self.window, padded_shape, pad_before, image.shape, self.window[0],
                           label_sink if sink is None else sink)
        self._empty_out = None
        for k, z in enumerate(z_starts):
            slab = self._row_slices(z, image.shape, padded_shape)
            starts = self._plan_row(z, image.shape, padded_shape, row_box)
            found = self._run_row(predictor, windows, starts, acc)
            if widen is not None and len(starts):
                more = widen(*slab, self._covered(starts, pad_before, image.shape), self._label_box(found, pad_before))
                if more is not None:
                    wider = self._plan_row(z, image.shape, padded_shape, lambda z0, z1: more)
                    done = {tuple(s) for s in starts.tolist()}
                    extra = np.asarray([s for s in wider.tolist() if tuple(s) not in done], int).reshape(-1, 3)
                    self._run_row(predictor, windows, extra, acc)
                    stats.widened_rows += 1
            until = z_starts[k + 1] if k + 1 < len(z_starts) else padded_shape[0]
            if acc.acc is None:  # nothing accumulated yet: these slices are background
                acc.emit_zeros(acc.base, until, self._channels(predictor))
                acc.base = until
            else:
                acc.flush(until)
            if self.progress is not None:
                self.progress(k + 1, len(z_starts))
        stats.peak_buffer_bytes = acc.nbytes
        return label_sink.labels if label_sink is not None else None

    def _channels(self, predictor: Predictor) -> int:
        return self._empty_output(predictor).shape[0]

    def _empty_output(self, predictor: Predictor) -> np.ndarray:
        if self._empty_out is None:  # the all-zero window, run once and reused
            self._empty_out = np.asarray(predictor(np.zeros((1, 1, *self.window), np.float32)), np.float32)[0]
            self.stats.predictor_calls += 1
        return self._empty_out

    def _run_row(self, predictor: Predictor, windows: "_Windows", starts: np.ndarray,
                 acc: "_Accumulator") -> list[tuple[np.ndarray, np.ndarray]]:
        """Run and accumulate ``starts``; return (start, argmax) of the windows that found labels."""
        self.stats.windows += len(starts)
        empty = np.array([self.empty_below is not None and float(windows.get(s).max()) <= self.empty_below
                          for s in starts], dtype=bool)
        found = []
        runnable = np.flatnonzero(~empty)
        for i in range(0, len(runnable), self.batch_size):
            for j, logits in self._predict(predictor, windows, starts, runnable[i:i + self.batch_size]).items():
                acc.add(starts[j], logits)
                labels = np.argmax(logits, axis=0)
                if labels.any():
                    found.append((starts[j], labels))
        for j in np.flatnonzero(empty):
            acc.add(starts[j], self._empty_output(predictor))
            self.stats.skipped_empty += 1
        return found

    def _covered(self, starts: np.ndarray, pad_before, shape) -> tuple[int, int, int, int]:
        """In-plane region ``(y0, y1, x0, x1)`` (image coordinates) the windows cover."""
        y0 = max(int(starts[:, 1].min()) - pad_before[1], 0)
        y1 = min(int(starts[:, 1].max()) + self.window[1] - pad_before[1], shape[1])
        x0 = max(int(starts[:, 2].min()) - pad_before[2], 0)
        x1 = min(int(starts[:, 2].max()) + self.window[2] - pad_before[2], shape[2])
        return (y0, y1, x0, x1)

    @staticmethod
    def _label_box(found, pad_before) -> tuple[int, int, int, int] | None:
        """In-plane box (image coordinates) of every non-background argmax voxel found."""
        box = None
        for start, labels in found:
            hit = labels.any(axis=0)
            ys, xs = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
            b = (int(start[1] + ys[0]) - pad_before[1], int(start[1] + ys[-1]) + 1 - pad_before[1],
                 int(start[2] + xs[0]) - pad_before[2], int(start[2] + xs[-1]) + 1 - pad_before[2])
            box = b if box is None else (min(box[0], b[0]), max(box[1], b[1]), min(box[2], b[2]), max(box[3], b[3]))
        return box

    def _steps(self, runnable: np.ndarray, n: int) -> list[tuple[np.ndarray | None, int]]:
        """Each step runs one batch, then accumulates every window up to its last one."""
        steps: list[tuple[np.ndarray | None, int]] = [
            (runnable[i:i + self.batch_size], int(runnable[min(i + self.batch_size, len(runnable)) - 1]) + 1)
            for i in range(0, len(runnable), self.batch_size)]
        if n and (not steps or steps[-1][1] < n):
            steps.append((None, n))
        return steps

    def _depth(self, starts: np.ndarray, steps, padded_depth: int) -> int:
        """Accumulator depth: lowest unfinished slice to the highest window end, per step."""
        depth, lo, first = self.window[0], 0, 0
        for _, end in steps:
            depth = max(depth, int(starts[first:end, 0].max()) + self.window[0] - lo)
            lo = int(starts[end, 0]) if end < len(starts) else padded_depth
            first = end
        return min(depth, padded_depth)

    def _predict(self, predictor: Predictor, windows: "_Windows", starts: np.ndarray,
                 batch: np.ndarray) -> dict[int, np.ndarray]:
        x = np.stack([windows.get(starts[i]) for i in batch])[:, None]
        y = np.asarray(predictor(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)
        self.stats.predictor_calls += 1
        self.stats.run += len(batch)
        if y.ndim != 5 or y.shape[0] != len(batch) or tuple(y.shape[2:]) != self.window:
            raise InferenceInputError(
                f"predictor returned shape {y.shape} for input {x.shape}; expected (N, C, *window)")
        return {int(i): y[k] for k, i in enumerate(batch)}


class _Windows:
    """Windows of the (virtually) zero-padded image: views when no padding is needed."""

    def __init__(self, image: np.ndarray, window, padded_shape, pad_before) -> None:
        self.image, self.window, self.pad_before = image, window, pad_before
        self.padded = any(pad_before) or tuple(padded_shape) != image.shape

    def get(self, s: np.ndarray) -> np.ndarray:
        wd, wh, ww = self.window
        if not self.padded:
            return self.image[s[0]:s[0] + wd, s[1]:s[1] + wh, s[2]:s[2] + ww]
        out = np.zeros(self.window, dtype=np.float32)
        src, dst = [], []
        for a in range(3):
            lo = int(s[a]) - self.pad_before[a]
            hi = lo + self.window[a]
            clo, chi = max(lo, 0), min(hi, self.image.shape[a])
            src.append(slice(clo, chi))
            dst.append(slice(clo - lo, chi - lo))
        out[tuple(dst)] = self.image[tuple(src)]
        return out


class _Accumulator:
    """Weighted logits and weights over padded slices ``[base, base + depth)``, all planes."""

    def __init__(self, importance, window, padded_shape, pad_before, shape, depth: int, sink: Sink) -> None:
        _, H, W = padded_shape
        self.importance, self.window, self.pad_before, self.shape = importance, window, pad_before, shape
        self.depth, self.sink, self.base = depth, sink, 0
        self.acc: np.ndarray | None = None
        self.wsum = np.zeros((depth, H, W), dtype=np.float32)
        self.ys = slice(pad_before[1], pad_before[1] + shape[1])
        self.xs = slice(pad_before[2], pad_before[2] + shape[2])

    @property
    def nbytes(self) -> int:
        return self.wsum.nbytes + (self.acc.nbytes if self.acc is not None else 0)

    def add(self, start: np.ndarray, logits: np.ndarray) -> None:
        if self.acc is None:
            self.acc = np.zeros((logits.shape[0], *self.wsum.shape), dtype=np.float32)
        wd, wh, ww = self.window
        z, y, x = int(start[0]) - self.base, int(start[1]), int(start[2])
        region = (slice(z, z + wd), slice(y, y + wh), slice(x, x + ww))
        self.acc[(slice(None), *region)] += logits * self.importance
        self.wsum[region] += self.importance

    def _emit(self, z0p: int, z1p: int, logits_of) -> None:
        """Hand padded slices ``[z0p, z1p)`` to the sink, z padding cropped away."""
        zc0, zc1 = max(z0p, self.pad_before[0]), min(z1p, self.pad_before[0] + self.shape[0])
        if zc1 > zc0:
            self.sink(zc0 - self.pad_before[0], zc1 - self.pad_before[0], logits_of(zc0, zc1))

    def _blended(self, zc0: int, zc1: int) -> np.ndarray:
        rows = slice(zc0 - self.base, zc1 - self.base)
        part = self.acc[:, rows, self.ys, self.xs]
        weight = self.wsum[rows, self.ys, self.xs][None]
        return np.divide(part, weight, out=np.zeros_like(part), where=weight > 0)

    def emit_zeros(self, z0p: int, z1p: int, channels: int) -> None:
        """Slices no window covers: zero logits (background), in chunks of ``depth``."""
        for z in range(z0p, z1p, self.depth):
            self._emit(z, min(z + self.depth, z1p), lambda a, b: np.zeros(
                (channels, b - a, self.shape[1], self.shape[2]), np.float32))

    def flush(self, until: int) -> None:
        """Finalise padded slices ``[base, until)``, emit them, shift the buffer."""
        n = until - self.base
        if n <= 0 or self.acc is None:
            return
        self._emit(self.base, min(until, self.base + self.depth), self._blended)
        self.emit_zeros(self.base + self.depth, until, self.acc.shape[0])
        keep = max(self.depth - n, 0)
        if keep:
            self.acc[:, :keep] = self.acc[:, n:n + keep]
            self.wsum[:keep] = self.wsum[n:n + keep]
        self.acc[:, keep:] = 0
        self.wsum[keep:] = 0
        self.base = until


def reference_blend(image: np.ndarray, predictor: Predictor, window_zyx: Sequence[int],
                    overlap: float = 0.5, sigma_scale: float = MONAI_SIGMA_SCALE) -> np.ndarray:
    """Direct (non-streamed, whole-volume) blending: the test reference. Small inputs only."""
    sw = SlidingWindow(window_zyx, overlap=overlap, sigma_scale=sigma_scale)
    padded, starts = sw.plan(image.shape)
    before = [(p - s) // 2 for p, s in zip(padded, image.shape)]
    x = np.zeros(padded, np.float32)
    x[tuple(slice(b, b + s) for b, s in zip(before, image.shape))] = image
    out = None
    count = np.zeros(padded, np.float32)
    wd, wh, ww = sw.window
    for z, y, xx in starts:
        win = x[z:z + wd, y:y + wh, xx:xx + ww][None, None]
        logits = np.asarray(predictor(win))[0]
        if out is None:
            out = np.zeros((logits.shape[0], *padded), np.float32)
        out[:, z:z + wd, y:y + wh, xx:xx + ww] += logits * sw.importance
        count[z:z + wd, y:y + wh, xx:xx + ww] += sw.importance
    out /= count[None]
    return out[(slice(None), *(slice(b, b + s) for b, s in zip(before, image.shape)))]


#: Batch axis of the patient's left-right direction (``(B, C, z, y, x)`` in canonical LPS).
LEFT_RIGHT_AXIS = 4


def mirrored(predictor: Predictor, axes: Sequence[int] = (LEFT_RIGHT_AXIS,)) -> Predictor:
    """Mirroring test-time augmentation: average logits over all flips of ``axes``.

    The default flips left-right only. nnU-Net mirrors every axis because it trains with
    mirroring; our training does not mirror, and a spine flipped head-to-foot or
    front-to-back is anatomy the network never saw (on the default model, mirroring all
    three axes dropped the vertebral-body Dice from 0.96 to 0.34-0.58). Bilateral
    symmetry makes the left-right flip the one plausible view."""
    axes = tuple(axes)
    combos: list[tuple[int, ...]] = [()]
    for a in axes:
        combos += [c + (a,) for c in combos]

    def run(batch: np.ndarray) -> np.ndarray:
        total = None
        for flip in combos:
            x = np.ascontiguousarray(np.flip(batch, flip)) if flip else batch
            y = np.asarray(predictor(x), dtype=np.float32)
            y = np.flip(y, flip) if flip else y
            total = y.copy() if total is None else total + y
        return total / np.float32(len(combos))

    return run
