"""Level naming from either end of the column, hints, and angles on unnamed bodies
(issue 18, items 2 and 3). Seed 8 is a small phantom whose clean kyphosis is within
1° of its truth, so the crops can be held to 1°."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from appliance.errors import MeasurementError
from appliance.labels import LEVELS
from appliance.measure.api import measure
from tests.appliance.measure.naming_crops import crop_z, vertebra, without_body
from tests.conftest import cached_study

SEED = 8


@functools.lru_cache(maxsize=4)
def _study():
    return cached_study(SEED, "small")


@functools.lru_cache(maxsize=4)
def _thoracolumbar():
    """T10–L3 whole; cut through the middle of T9 and of L4."""
    st = _study()
    mid = lambda n: 0.5 * (vertebra(st, n)["superior_point_mm"][2] + vertebra(st, n)["inferior_point_mm"][2])
    return crop_z(st, mid("L4"), mid("T9"))


def _names(m: dict) -> list[str]:
    return [v["name"] for v in m["vertebrae"]]


def _assert_centroids_match(m: dict, study, tol_mm: float = 3.0) -> None:
    truth = {v["name"]: v["centroid_mm"] for v in study.truth["vertebrae"]}
    for v, cut in zip(m["vertebrae"], (v["superior_normal"] is None for v in m["vertebrae"])):
        if not cut:
            assert np.linalg.norm(np.subtract(v["centroid_mm"], truth[v["name"]])) < tol_mm, v["name"]


def test_cut_below_l4_is_named_down_from_c2():
    st = _study()
    lab, aff = crop_z(st, vertebra(st, "L4")["inferior_point_mm"][2] - 2.0, None)
    m = measure(lab, aff)
    assert m["level_naming"]["rule"] == "c2"
    assert m["level_naming"]["bodies"] == len(m["vertebrae"]) >= 22
    assert _names(m) == list(LEVELS[: len(m["vertebrae"])])
    _assert_centroids_match(m, st)
    assert m["s1_plate"] is None
    assert abs(m["cobb"]["angle_deg"] - st.truth["cobb"]["angle_deg"]) < 1.0
    assert m["cobb"]["upper_end_vertebra"] == st.truth["cobb"]["upper_end_vertebra"]
    assert abs(m["thoracic_kyphosis_deg"] - st.truth["thoracic_kyphosis_deg"]) < 1.0
    assert abs(m["thoracic_kyphosis_t4_t12_deg"] - st.truth["thoracic_kyphosis_t4_t12_deg"]) < 1.0
    assert any("counted down from C2" in w for w in m["warnings"])


def test_thoracolumbar_crop_gets_cobb_and_segmental_angles_on_unnamed_bodies():
    lab, aff = _thoracolumbar()
    m = measure(lab, aff)
    names = _names(m)
    assert m["level_naming"] == {"rule": None, "bodies": len(names), "consistent": None, "uncertain": []}
    assert names == [f"V{k + 1}" for k in range(len(names))] and len(names) == 8  # T9 half, T10 … L3, L4 half
    cobb = m["cobb"]
    assert cobb is not None and cobb["angle_deg"] > 0
    by_name = {v["name"]: v for v in m["vertebrae"]}
    for role in ("upper_end", "lower_end", "apex"):
        assert cobb[f"{role}_centroid_mm"] == by_name[cobb[f"{role}_vertebra"]]["centroid_mm"]
    # the cut end bodies have no plates: the Cobb ends are among the whole ones
    assert cobb["upper_end_vertebra"] != "V1" and cobb["lower_end_vertebra"] != names[-1]
    seg = m["segmental_angles"]
    assert [(s["upper"], s["lower"]) for s in seg] == list(zip(names, names[1:]))
    assert seg[0]["sagittal_deg"] is None and seg[-1]["coronal_deg"] is None  # plates of cut bodies
    assert all(s["sagittal_deg"] is not None and s["coronal_deg"] is not None for s in seg[1:-1])
    for key in ("thoracic_kyphosis_deg", "thoracic_kyphosis_t4_t12_deg", "lumbar_lordosis_deg"):
        assert m[key] is None
        assert any(w.startswith(key) and "levels not named" in w for w in m["warnings"])
    assert any("C2 not recognised" in w and "cut by the field of view" in w for w in m["warnings"])


def test_segmental_angles_on_unnamed_bodies_are_those_of_the_named_spine():
    """The same discs measured in the whole phantom (named) and in the crop (V-names)."""
    st = _study()
    full = measure(st.labels.array, st.labels.affine)
    crop = measure(*_thoracolumbar())
    whole = {(s["upper"], s["lower"]): s for s in full["segmental_angles"]}
    # V1 is the T9 half, V2… are T10…; discs away from the cut bodies: T11/T12, T12/L1, L1/L2
    for s, key in zip(crop["segmental_angles"][2:5], (("T11", "T12"), ("T12", "L1"), ("L1", "L2"))):
        ref = whole[key]
        assert abs(s["sagittal_deg"] - ref["sagittal_deg"]) < 0.5, key
        assert abs(s["coronal_deg"] - ref["coronal_deg"]) < 0.5, key


def test_full_phantom_both_ends_agree():
    st = _study()
    m = measure(st.labels.array, st.labels.affine)
    assert m["level_naming"] == {"rule": "sacrum_and_c2", "bodies": 23, "consistent": True, "uncertain": []}
    assert _names(m) == list(LEVELS)


def test_a_missing_body_is_reported_not_guessed():
    st = _study()
    m = measure(without_body(st, "T6"), st.labels.affine)
    naming = m["level_naming"]
    assert naming["rule"] == "sacrum" and naming["consistent"] is False and naming["bodies"] == 22
    assert _names(m)[-1] == "L5" and _names(m)[0] == "C3"  # counted from the sacrum
    assert "C3" in naming["uncertain"] and "L5" not in naming["uncertain"]
    assert any("22 vertebral bodies from C2 to the sacrum, 23 expected" in w for w in m["warnings"])


def test_highest_level_hint_names_the_top_body():
    st = _study()
    m = measure(*_thoracolumbar(), highest_level="T9")
    assert m["level_naming"]["rule"] == "highest_level_hint"
    assert _names(m) == ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4"]
    _assert_centroids_match(m, st)
    assert m["thoracic_kyphosis_deg"] is None  # T1 is not in view
    both = measure(*_thoracolumbar(), highest_level="T9", lowest_level="L4")
    assert _names(both) == _names(m) and both["level_naming"]["consistent"] is True


def test_inconsistent_hints_raise():
    lab, aff = _thoracolumbar()
    with pytest.raises(MeasurementError, match="span"):
        measure(lab, aff, highest_level="T9", lowest_level="L5")
    with pytest.raises(MeasurementError, match="unknown highest_level"):
        measure(lab, aff, highest_level="T13")


def test_real_maps_keep_their_names(totalseg, verse):
    m = measure(totalseg.array, totalseg.affine)
    assert m["level_naming"] == {"rule": "sacrum", "bodies": 6, "consistent": None, "uncertain": []}
    assert _names(m) == ["T12", "L1", "L2", "L3", "L4", "L5"]
    binary, _ = verse
    v = measure(binary.array, binary.affine, lowest_level="L5")
    assert v["level_naming"]["rule"] == "lowest_level_hint" and v["level_naming"]["consistent"] is None
    assert _names(v)[0] == "T9"


def test_names_counted_across_a_fused_body_are_uncertain():
    from appliance.measure.levels import name_bodies

    up = name_bodies(22, True, (False, "no"), fused=[3])  # C4–C5 as one body, counted from L5
    assert up.rule == "sacrum" and up.uncertain == up.names[:4] and up.names[0] == "C3"
    down = name_bodies(22, False, (True, "tall"), fused=[3])  # counted down from C2
    assert down.rule == "c2" and down.uncertain == down.names[3:] and down.names[-1] == "L4"
    both = name_bodies(22, True, (True, "tall"), fused=[3])
    assert both.consistent is False and both.uncertain == both.names[:4]
    agree = name_bodies(23, True, (True, "tall"), fused=[])
    assert agree.rule == "sacrum_and_c2" and agree.consistent and agree.uncertain == []
