"""Following the spine: far fewer windows above the pelvis, the same labels everywhere."""

from __future__ import annotations

import numpy as np

from appliance.sliding_window import SlidingWindow
from appliance.tracking import LabelTracker

SPINE, PELVIS, ARM = 0.6, 0.8, 0.9


def synthetic_volume() -> np.ndarray:
    """(z, y, x) at 1.5 mm: a wide pelvis at the bottom, a drifting column of bodies
    separated by disc gaps above it, and bright 'arms' that no label belongs to."""
    img = np.zeros((240, 160, 200), np.float32)
    img[:, 20:140, 20:180] = 0.3                           # soft tissue
    img[10:50, 60:110, 25:175] = PELVIS                    # wide pelvis
    z = 50
    while z < 230:
        cx = int(100 + 25 * np.sin((z - 50) / 180 * np.pi))  # scoliotic drift, 37 mm
        img[z:z + 16, 70:95, cx - 15:cx + 15] = SPINE
        z += 21                                               # 16 slices body + 5 slices disc
    img[150:230, 30:50, 25:35] = ARM
    img[150:230, 30:50, 165:175] = ARM
    return img


def oracle(x: np.ndarray) -> np.ndarray:
    """Pointwise 'network': background / vertebral body / pelvis / nothing for the arms."""
    logits = np.zeros((x.shape[0], 4, *x.shape[2:]), np.float32)
    logits[:, 0] = 0.5
    logits[:, 1] = np.where(np.isclose(x[:, 0], SPINE), 1.0, 0.0)
    logits[:, 2] = np.where(np.isclose(x[:, 0], PELVIS), 1.0, 0.0)
    return logits


def whole_region(z0, z1):
    return (0, 160, 0, 200)


def test_tracking_runs_far_fewer_windows_and_finds_every_label():
    img = synthetic_volume()
    window = (16, 64, 64)
    plain = SlidingWindow(window, overlap=0.5, batch_size=4, empty_below=0.0)
    expected = plain.run(img, oracle, row_box=whole_region)
    tracker = LabelTracker(img.shape, (1.5, 1.5, 1.5), whole_region, margin_mm=30.0)
    sw = SlidingWindow(window, overlap=0.5, batch_size=4, empty_below=0.0)
    sw.run(img, oracle, sink=tracker, row_box=tracker.row_box, adaptive=True, widen=tracker.widen)
    assert np.array_equal(tracker.labels, expected)          # the oracle is pointwise: exact
    assert (expected == 1).sum() > 0 and (expected == 2).sum() > 0
    assert sw.stats.run < 0.6 * plain.stats.run, (sw.stats.run, plain.stats.run)
    assert tracker.stats["rows_tracked"] > tracker.stats["rows_whole_region"]


def test_labels_at_the_edge_of_the_inferred_region_widen_the_next_row():
    """A column that leaves the tracked box (here: a sudden 45 mm step sideways, more than
    the margin) is still found, because its labels touch the edge of what was inferred."""
    img = np.zeros((200, 100, 200), np.float32)
    img[:, 10:90, 10:190] = 0.3
    img[20:100, 40:60, 40:70] = SPINE
    img[100:200, 40:60, 70:100] = SPINE                      # shifted by 30 voxels at z=100
    window = (16, 32, 32)
    region = lambda z0, z1: (0, 100, 0, 200)  # noqa: E731
    expected = SlidingWindow(window, empty_below=0.0).run(img, oracle, row_box=region)
    tracker = LabelTracker(img.shape, (1.5, 1.5, 1.5), region, margin_mm=9.0)
    sw = SlidingWindow(window, overlap=0.5, batch_size=4, empty_below=0.0)
    sw.run(img, oracle, sink=tracker, row_box=tracker.row_box, adaptive=True, widen=tracker.widen)
    assert np.array_equal(tracker.labels, expected)
    assert tracker.stats["rows_tracked"] > 0 and tracker.stats["rows_widened"] >= 1
    assert sw.stats.widened_rows == tracker.stats["rows_widened"]


def test_nothing_found_yet_means_the_whole_region():
    calls = []

    def region(z0, z1):
        calls.append((z0, z1))
        return (0, 10, 0, 10)

    tracker = LabelTracker((50, 10, 10), (1.5, 1.5, 1.5), region)
    assert tracker.row_box(0, 16) == (0, 10, 0, 10) and tracker.stats["rows_whole_region"] == 1
