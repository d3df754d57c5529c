"""Cheap crop to the bony region before inference (threshold + morphology at low resolution).

The network only has to see the spine, pelvis and femoral heads; air and soft tissue far
from them cost most of a whole-volume sliding window. At ~``coarse_mm`` voxels (block
maximum, so thin cortical shells survive; no interpolation):

1. body = largest connected component of ``value > body_hu`` (CBCT grey values are not
   calibrated HU, so both thresholds are options);
2. bone = ``value > bone_hu`` inside the body, closed, components smaller than
   ``min_bone_mm3`` dropped (noise, calcifications);
3. box = bounding box of the bone, grown by ``margin_mm`` per side, clipped to the volume
   (falls back to the body box, then to the whole volume, and says so).

Per slab (``per_slab``, default on): the coarse bone mask is kept in the :class:`Crop`
and :meth:`Crop.row_box` gives each 16-slice slab its own in-plane box, so the slabs
holding only the spine are not inferred over the width of the pelvis or shoulders.

Coarse-to-fine (``coarse_mask`` in :func:`find_crop`): a caller can pass a low-resolution
foreground mask (e.g. a first network pass at coarse spacing) instead of the thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class CropConfig:
    enabled: bool = True
    coarse_mm: float = 4.0
    body_hu: float = -500.0
    bone_hu: float = 250.0
    min_bone_mm3: float = 300.0
    margin_mm: float = 25.0
    #: plan each slab's windows over that slab's own bony region (else the crop's whole plane)
    per_slab: bool = True


@dataclass(frozen=True, eq=False)
class Crop:
    """Half-open box ``[start, stop)`` per axis ``(z, y, x)`` in the volume's index space.

    ``roi`` (optional) is the coarse region of interest (bone, or a coarse mask) on the
    grid ``volume[::stride]``; :meth:`row_box` turns it into a per-slab in-plane box for
    the sliding window, so slabs with only the spine are not inferred across the whole
    width of the pelvis or the shoulders.
    """

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    source: str  # "bone", "body", "mask", "full"
    roi: np.ndarray | None = None
    stride: tuple[int, int, int] = (1, 1, 1)
    margin: tuple[int, int, int] = (0, 0, 0)

    def row_box(self, z0: int, z1: int) -> tuple[int, int, int, int] | None:
        """In-plane box ``(y0, y1, x0, x1)`` of the ROI in crop slices ``[z0, z1)`` (crop
        coordinates, grown by the margin), or ``None`` when the slab holds none of it."""
        if self.roi is None:
            return (0, self.shape[1], 0, self.shape[2])
        sz, sy, sx = self.stride
        a = max((self.start[0] + z0 - self.margin[0]) // sz, 0)
        b = (self.start[0] + z1 + self.margin[0] - 1) // sz + 1
        hit = self.roi[a:b].any(axis=0)
        if not hit.any():
            return None
        ys, xs = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
        y0 = max(int(ys[0]) * sy - self.margin[1] - self.start[1], 0)
        y1 = min((int(ys[-1]) + 1) * sy + self.margin[1] - self.start[1], self.shape[1])
        x0 = max(int(xs[0]) * sx - self.margin[2] - self.start[2], 0)
        x1 = min((int(xs[-1]) + 1) * sx + self.margin[2] - self.start[2], self.shape[2])
        if y1 <= y0 or x1 <= x0:
            return None
        return (y0, y1, x0, x1)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def fraction_of(self, shape_zyx: Sequence[int]) -> float:
        return float(np.prod(self.shape) / np.prod(shape_zyx))


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def _block_max(image: np.ndarray, stride: Sequence[int]) -> np.ndarray:
    """Max over ``stride`` blocks (the last block may be short): thin cortical shells survive."""
    out = image
    for axis, k in enumerate(int(v) for v in stride):
        if k > 1:
            out = np.maximum.reduceat(out, np.arange(0, out.shape[axis], k), axis=axis)
    return out


def _box(mask: np.ndarray, stride: Sequence[int], margin_vox: Sequence[int], shape: Sequence[int]):
    idx = np.argwhere(mask)
    lo = idx.min(0) * np.asarray(stride) - np.asarray(margin_vox)
    hi = (idx.max(0) + 1) * np.asarray(stride) + np.asarray(margin_vox)
    start = tuple(int(max(v, 0)) for v in lo)
    stop = tuple(int(min(v, s)) for v, s in zip(hi, shape))
    return start, stop


def find_crop(image: np.ndarray, spacing_zyx_mm: Sequence[float], config: CropConfig = CropConfig(),
              min_shape: Sequence[int] = (1, 1, 1), coarse_mask: np.ndarray | None = None) -> Crop:
    """Box around the bony region of ``image`` (z, y, x) in grey values (HU-like)."""
    shape = image.shape
    full = Crop((0, 0, 0), tuple(int(s) for s in shape), "full")  # type: ignore[arg-type]
    if not config.enabled:
        return full
    spacing = np.asarray(spacing_zyx_mm, dtype=float)
    stride = np.maximum(1, np.round(config.coarse_mm / spacing).astype(int))
    margin = np.ceil(config.margin_mm / spacing).astype(int)
    if coarse_mask is not None:
        if not coarse_mask.any():
            return full
        stride = np.ceil(np.asarray(shape) / np.asarray(coarse_mask.shape)).astype(int)
        start, stop = _box(coarse_mask, stride, margin, shape)
        return _grow(Crop(start, stop, "mask", coarse_mask, tuple(stride), tuple(margin)), min_shape, shape)
    small = _block_max(image, stride)
    body = small > config.body_hu
    if not body.any():
        return full
    body = _largest(body)
    bone = ndimage.binary_closing((small > config.bone_hu) & ndimage.binary_dilation(body, iterations=1),
                                  iterations=1)
    voxel_mm3 = float(np.prod(spacing * stride))
    lab, n = ndimage.label(bone)
    if n:
        sizes = ndimage.sum_labels(bone, lab, index=np.arange(1, n + 1)) * voxel_mm3
        keep = np.flatnonzero(sizes >= config.min_bone_mm3) + 1
        bone = np.isin(lab, keep)
    if bone.any():
        start, stop = _box(bone, stride, margin, shape)
        return _grow(Crop(start, stop, "bone", bone, tuple(int(v) for v in stride), tuple(int(v) for v in margin)),
                     min_shape, shape)
    start, stop = _box(body, stride, margin, shape)
    return _grow(Crop(start, stop, "body"), min_shape, shape)


def _grow(crop: Crop, min_shape: Sequence[int], shape: Sequence[int]) -> Crop:
    """Grow a box symmetrically to at least ``min_shape`` (the window), inside ``shape``."""
    start, stop = list(crop.start), list(crop.stop)
    for a in range(3):
        need = min(int(min_shape[a]), int(shape[a])) - (stop[a] - start[a])
        if need > 0:
            start[a] = max(0, start[a] - need // 2 - need % 2)
            stop[a] = min(int(shape[a]), start[a] + max(stop[a] - start[a], int(min_shape[a])))
            start[a] = max(0, stop[a] - max(int(min_shape[a]), stop[a] - start[a]))
    return Crop(tuple(start), tuple(stop), crop.source, crop.roi, crop.stride, crop.margin)  # type: ignore[arg-type]
