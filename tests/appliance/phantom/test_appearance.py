"""The image looks like cone-beam CT, not clean CT, and varies with the seed."""

from __future__ import annotations

import numpy as np

from appliance.labels import Label
from appliance.phantom.appearance import OUTSIDE_FOV
from tests.conftest import cached_study


def test_outside_the_circular_field_of_view_is_padding(small_study):
    image = small_study.image.array
    assert (image[:, 0, 0] == OUTSIDE_FOV).all() and (image[:, -1, -1] == OUTSIDE_FOV).all()
    centre = image.shape[1] // 2
    assert (image[:, centre, centre] != OUTSIDE_FOV).any()


def test_air_is_noisy_and_bone_is_brighter_than_soft_tissue(small_study):
    image = small_study.image.array.astype(float)
    labels = small_study.labels.array
    n = image.shape[1]
    air = image[:, n // 2 - 3 : n // 2 + 3, 3:8]  # inside the FOV circle, outside the body
    air = air[air > OUTSIDE_FOV]
    assert air.size > 50 and air.std() > 5.0  # noise, not a constant
    bone = image[labels == Label.VERTEBRAL_BODIES].mean()
    soft = np.median(image[(labels == 0) & (image > -300) & (image < 300)])
    assert bone > soft + 80.0


def test_grey_values_are_not_calibrated_hu_and_vary_by_seed():
    a, b = cached_study(1), cached_study(2)
    assert (a.params.gain, a.params.offset_hu) != (b.params.gain, b.params.offset_hu)
    def head_mean(s):
        return s.image.array[s.labels.array == Label.FEMORAL_HEADS].mean()
    assert abs(head_mean(a) - head_mean(b)) > 5.0
    assert a.image.array.shape != b.image.array.shape or not np.array_equal(a.image.array, b.image.array)


def test_anatomy_varies_with_seed():
    sizes = {round(cached_study(s).params.scale, 3) for s in (1, 2, 3, 4, 5, 6)}
    cobbs = {round(cached_study(s).truth["cobb"]["angle_deg"], 1) for s in (1, 2, 3, 4, 5, 6)}
    assert len(sizes) == 6 and len(cobbs) == 6
