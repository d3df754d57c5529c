from __future__ import annotations

import numpy as np
import pytest

from appliance.metrics import overlap, structure_metrics


def test_paper_formulas_on_known_counts():
    ref = np.zeros(100, np.uint8)
    pred = np.zeros(100, np.uint8)
    ref[:40] = 1  # 40 reference voxels
    pred[10:60] = 1  # 30 TP, 20 FP, 10 FN
    o = overlap(pred, ref, 1)
    assert (o.tp, o.fp, o.fn) == (30, 20, 10)
    assert o.dice == pytest.approx(60 / 90)
    assert o.volume_similarity == pytest.approx(1 - 10 / 90)
    assert o.recall == pytest.approx(30 / 40)


def test_absent_structure_gives_none_not_a_number():
    a = np.zeros((3, 3, 3), np.uint8)
    m = structure_metrics(a, a)
    assert m["pelvis"]["dice"] is None and m["pelvis"]["recall"] is None
    a[0, 0, 0] = 1
    assert structure_metrics(a, a)["vertebral_bodies"]["dice"] == 1.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        overlap(np.zeros(3), np.zeros(4), 1)
