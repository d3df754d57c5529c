"""Structure volumes of a label map (the ``structure_volumes_cm3`` key)."""

from __future__ import annotations

import numpy as np

from appliance.measure.api import structure_volumes_cm3


def test_volumes_count_each_label_and_omit_absent_ones():
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[1:3, 2:5, 3:7] = 1  # 24 voxels
    labels[5:9, 0:2, 0:2] = 3  # 16 voxels
    labels[0, 0, 0] = 7  # not part of the convention: not counted
    affine = np.diag([0.5, 0.5, 2.0, 1.0])  # 0.5 mm³ voxels
    assert structure_volumes_cm3(labels, affine) == {"vertebral_bodies": 0.012, "femoral_heads": 0.008}
