from __future__ import annotations

import numpy as np
import pytest

from appliance.preprocess import normalize, reorient, resample
from appliance.volume import Volume


def test_normalize_follows_the_paper():
    x = np.array([-2000, -1000, 0, 500, 1000, 5000], np.int16)
    y = normalize(x, 2000.0)
    assert y.dtype == np.float32
    assert np.allclose(y, [0.0, 0.0, 0.5, 0.75, 1.0, 1.0])
    with pytest.raises(ValueError):
        normalize(x, 0.0)


def test_reorient_to_lps_keeps_every_voxel_at_its_place():
    rng = np.random.default_rng(1)
    flip = np.diag([-1.0, -1.0, 1.0])  # RAS-like in-plane axes
    vol = Volume(rng.integers(0, 100, (4, 5, 6)).astype(np.int16), (1.0, 2.0, 3.0), (10.0, 20.0, 30.0), flip)
    out = reorient(vol)
    assert np.allclose(out.direction, np.eye(3))
    # the LPS point of any voxel carries the same value before and after
    for idx in ([0, 0, 0], [5, 4, 3], [2, 1, 2]):
        p = vol.index_to_lps([idx])[0]
        j = np.rint(out.lps_to_index([p])[0]).astype(int)
        assert out.array[j[2], j[1], j[0]] == vol.array[idx[2], idx[1], idx[0]]


def test_resample_keeps_extent_and_labels():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[5:15, 5:15, 5:15] = 2
    vol = Volume(labels, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    coarse = resample(vol, (2.0, 2.0, 2.0), is_label=True)
    assert coarse.array.shape == (10, 10, 10)
    assert set(np.unique(coarse.array)) == {0, 2}
    assert coarse.array.sum() / 2 * 8 == pytest.approx(1000, rel=0.15)
    # centre of the labelled cube stays at the same LPS position
    z, y, x = np.nonzero(coarse.array)
    assert np.allclose(coarse.index_to_lps(np.c_[x, y, z]).mean(0), [9.5, 9.5, 9.5], atol=1.0)  # < half a new voxel
    img = resample(vol.with_array(labels.astype(np.int16) * 100), (2.0, 2.0, 2.0))
    assert img.array.dtype == np.float32
