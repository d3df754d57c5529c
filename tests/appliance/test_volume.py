from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import InputVolumeError
from appliance.volume import Volume, read_nifti, write_nifti


def _oblique() -> np.ndarray:
    a = np.radians(20.0)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def test_affine_maps_indices_to_lps_and_back():
    vol = Volume(np.zeros((4, 5, 6), np.int16), (0.5, 0.7, 2.0), (10.0, -20.0, 30.0), _oblique())
    idx = np.array([[0, 0, 0], [5, 4, 3], [2.5, 1.0, 0.5]])
    lps = vol.index_to_lps(idx)
    assert np.allclose(lps[0], [10.0, -20.0, 30.0])
    homog = (vol.affine @ np.c_[idx, np.ones(3)].T).T[:, :3]
    assert np.allclose(homog, lps)
    assert np.allclose(vol.lps_to_index(lps), idx)


def test_nifti_round_trip_keeps_voxels_and_lps_geometry(tmp_path):
    rng = np.random.default_rng(0)
    vol = Volume(rng.integers(-1000, 2000, (7, 8, 9)).astype(np.int16), (0.8, 0.9, 1.5),
                 (-100.0, 50.0, 400.0), _oblique())
    back = read_nifti(write_nifti(vol, tmp_path / "v.nii.gz"))
    assert back.same_geometry(vol)
    assert back.array.dtype == np.int16
    assert np.array_equal(back.array, vol.array)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"array": np.zeros((3, 3))}, "3 dimensions"),
        ({"spacing_mm": (1.0, 0.0, 1.0)}, "positive"),
        ({"spacing_mm": (1.0, float("nan"), 1.0)}, "positive"),
        ({"direction": np.ones((3, 3))}, "orthonormal"),
    ],
)
def test_bad_volumes_are_refused_with_a_clear_error(kwargs, message):
    args = {"array": np.zeros((2, 2, 2)), "spacing_mm": (1.0, 1.0, 1.0)} | kwargs
    with pytest.raises(InputVolumeError, match=message):
        Volume(**args)


def test_reading_a_missing_or_non_image_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputVolumeError, match="no such file"):
        read_nifti(tmp_path / "absent.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputVolumeError, match="cannot read"):
        read_nifti(junk)
