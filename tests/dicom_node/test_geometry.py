"""The shared regular-grid rule (dicom_node.geometry)."""

import numpy as np
import pytest

from dicom_node.geometry import SLICE_POSITION_TOLERANCE_MM, slice_grid


def test_regular_grid_and_each_way_to_leave_it():
    z = [0.0, 2.5, 5.0, 7.5, 10.0]
    g = slice_grid(z)
    assert g.regular and g.step_mm == 2.5 and g.deviation_mm == 0.0
    assert slice_grid([0.0, 2.5, 2.5, 5.0]).duplicates
    gap = slice_grid([0.0, 2.5, 7.5, 10.0])
    assert gap.missing == 1 and not gap.regular and "1 slice(s) missing" in gap.describe()
    off = slice_grid([0.0, 2.5, 5.0 + 2 * SLICE_POSITION_TOLERANCE_MM, 7.5, 10.0])
    assert not off.regular and off.worst == 2 and "off the regular" in off.describe()
    assert slice_grid([0.0, 2.5, 5.0 + SLICE_POSITION_TOLERANCE_MM / 2, 7.5]).regular


def test_three_d_positions_count_in_plane_shifts():
    normal = np.array([0.0, 0.0, 1.0])
    straight = [[10.0, -5.0, 2.5 * k] for k in range(6)]
    assert slice_grid(straight, normal).regular
    tilted = [[10.0, -5.0 + 0.2 * k, 2.5 * k] for k in range(6)]  # a sheared (gantry-tilt) stack
    g = slice_grid(tilted, normal)
    assert not g.regular and g.worst == 5 and g.deviation_mm == pytest.approx(1.0)
    # an oblique normal: positions along it
    n = np.array([0.0, np.sin(0.3), np.cos(0.3)])
    assert slice_grid([list(k * 1.25 * n + [1.0, 2.0, 3.0]) for k in range(8)], n).regular


def test_one_slice_is_no_grid():
    with pytest.raises(ValueError):
        slice_grid([0.0])
