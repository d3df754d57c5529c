"""The canal rule that turns whole TotalSegmentator vertebrae into vertebral bodies."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import DatasetError
from training.totalseg import CANAL_MARGIN_MM, bodies_from_whole_vertebrae


def _vertebra(shape=(12, 60, 40)) -> tuple[np.ndarray, int]:
    """One vertebra (label 40) in LPS (z, y, x), 1 mm voxels: a body at y 5–24, a ring
    around the canal at y 25–40 and a spinous process behind; the cord at y 29–34."""
    seg = np.zeros(shape, np.int16)
    seg[:, 5:25, 10:30] = 40  # body
    seg[:, 25:41, 12:28] = 40  # arch
    seg[:, 41:55, 18:22] = 40  # spinous process
    seg[:, 27:37, 16:24] = 0  # canal
    seg[:, 29:35, 18:22] = 79  # cord
    return seg, 29


def test_body_is_the_part_in_front_of_the_canal() -> None:
    seg, cord_front = _vertebra()
    body = bodies_from_whole_vertebrae(seg, (1.0, 1.0, 1.0), {"T4": 40})
    ys = np.flatnonzero(body.any(axis=(0, 2)))
    assert ys.min() == 5 and ys.max() == cord_front - int(CANAL_MARGIN_MM) - 1
    assert not body[:, 41:].any()  # the arch and spinous process are gone


def test_slices_without_cord_use_the_nearest_slice_with_it() -> None:
    seg, cord_front = _vertebra()
    seg[:4][seg[:4] == 79] = 0  # the cord ends (conus) above the lowest slices
    body = bodies_from_whole_vertebrae(seg, (1.0, 1.0, 1.0), {"T4": 40})
    assert np.array_equal(body[0], body[8])


def test_without_a_cord_the_canal_cannot_be_located() -> None:
    seg, _ = _vertebra()
    seg[seg == 79] = 0
    with pytest.raises(DatasetError, match="spinal cord"):
        bodies_from_whole_vertebrae(seg, (1.0, 1.0, 1.0), {"T4": 40})
