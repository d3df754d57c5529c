"""appliance.bundle_quality: the lowest validated Dice against the gate; doctor's model check."""

from __future__ import annotations

from pathlib import Path

from appliance.bundle import DEFAULT_BUNDLE_DIR, StructureMetrics, Validation, ValidationGate
from appliance.bundle_quality import MIN_VAL_DICE, assess, check_bundle_quality

from tests.appliance.inference.inference_helpers import make_bundle, rewrite_manifest


def _m(dice: float, cases: int = 3) -> dict:
    return {"dice": dice, "volume_similarity": 0.9, "recall": 0.9, "cases": cases}


def test_the_weakest_validated_structure_decides():
    v = Validation(dataset="d", structures={"vertebral_bodies": StructureMetrics(**_m(0.95)),
                                            "pelvis": StructureMetrics(**_m(0.007)),
                                            "femoral_heads": StructureMetrics(**_m(0.0, cases=0))})
    a = assess(v)
    assert a.min_dice == MIN_VAL_DICE == 0.5 and not a.passed
    assert (a.structure, a.dice, a.cases) == ("pelvis", 0.007, 3)  # heads were never validated: not counted
    assert a.problem() == "validation Dice of pelvis is 0.007 over 3 cases, below the gate 0.5"
    assert assess(v, 0.005).passed and assess(v, 0.005).problem() is None
    empty = assess(Validation())
    assert not empty.validated and not empty.passed and empty.problem() == "no validation recorded"


def test_doctor_calls_the_shipped_default_bundle_ok():
    r = check_bundle_quality(DEFAULT_BUNDLE_DIR)
    assert r.status == "ok", r.line()
    assert "vertebral_bodies Dice 0.958 (3 cases)" in r.detail and "pelvis Dice 0.954" in r.detail
    assert "femoral_heads Dice 0.963" in r.detail and "default-model: test split" in r.detail


def test_doctor_warns_about_a_weak_bundle(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    rewrite_manifest(bundle, validation={"dataset": "site", "structures": {"vertebral_bodies": _m(0.9),
                                                                         "pelvis": _m(0.007)}})
    r = check_bundle_quality(bundle)
    assert r.status == "warn" and "weak model" in r.detail and "pelvis is 0.007" in r.detail and r.fix


def test_doctor_warns_about_a_bundle_without_validation(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    rewrite_manifest(bundle, validation={"dataset": "", "structures": {}})
    r = check_bundle_quality(bundle)
    assert r.status == "warn" and "no validation recorded" in r.detail and "export.validate" in r.fix


def test_doctor_uses_the_stricter_gate_recorded_by_the_export(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    gate = ValidationGate(min_dice=0.9, passed=True, structure="vertebral_bodies", dice=0.92).model_dump()
    rewrite_manifest(bundle, validation={"dataset": "site", "structures": {"vertebral_bodies": _m(0.8)},
                                         "gate": gate})
    r = check_bundle_quality(bundle)
    assert r.status == "warn" and "below the gate 0.9" in r.detail
    gate |= {"min_dice": 0.5, "passed": False, "overridden": True, "dice": 0.3}
    rewrite_manifest(bundle, validation={"dataset": "site", "structures": {"vertebral_bodies": _m(0.3)},
                                         "gate": gate})
    r = check_bundle_quality(bundle)
    assert r.status == "warn" and "exported with --allow-weak" in r.detail
