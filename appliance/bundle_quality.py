"""Is a model good enough to ship? Its recorded validation against a Dice gate (issue 22).

One rule, used by ``wbspine export`` (which refuses a weak model unless ``--allow-weak``)
and ``wbspine doctor`` (which warns about a weak or unvalidated bundle):

* the score is the **lowest** Dice among the structures that were validated (``cases > 0``
  in the manifest's ``validation.structures``): a model weak on one structure is weak;
* a model is *weak* when that score is below the gate (:data:`MIN_VAL_DICE` unless the
  training config's ``export.min_val_dice`` says otherwise; doctor uses the higher of
  :data:`MIN_VAL_DICE` and the gate recorded in the manifest);
* a model with no validated structure is *unvalidated*, and treated as weak.

Dice is the paper's overlap metric (JoVE 67781 Table 3); the trained default model
scores ~0.95 on every structure, an untrained network ~0.01.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.bundle import StructureMetrics, Validation, ValidationGate

#: [ours] The default gate: a Dice of 0.5 means the predicted and true masks overlap by
#: no more than they differ; far below the paper's 0.93-0.96, far above noise (~0.01).
MIN_VAL_DICE = 0.5


@dataclass(frozen=True)
class Assessment:
    """The gate applied to one validation record."""

    min_dice: float
    structure: str | None  # the weakest validated structure; None: nothing validated
    dice: float | None
    cases: int = 0

    @property
    def validated(self) -> bool:
        return self.structure is not None

    @property
    def passed(self) -> bool:
        return self.dice is not None and self.dice >= self.min_dice

    def problem(self) -> str | None:
        """One line saying why the model is weak; None when it passes."""
        if self.passed:
            return None
        if not self.validated:
            return "no validation recorded"
        return (f"validation Dice of {self.structure} is {self.dice:.3f} over {self.cases} "
                f"case{'s' if self.cases != 1 else ''}, below the gate {self.min_dice:g}")

    def record(self, overridden: bool = False) -> ValidationGate:
        """The manifest's ``validation.gate``."""
        return ValidationGate(min_dice=self.min_dice, passed=self.passed, overridden=overridden and not self.passed,
                              structure=self.structure, dice=self.dice)


def validated(validation: Validation) -> dict[str, StructureMetrics]:
    """The structures that were validated on at least one case."""
    return {name: m for name, m in validation.structures.items() if m.cases > 0}


def assess(validation: Validation, min_dice: float = MIN_VAL_DICE) -> Assessment:
    """The gate on ``validation``: its weakest validated structure against ``min_dice``."""
    scored = validated(validation)
    if not scored:
        return Assessment(min_dice, None, None)
    name = min(scored, key=lambda k: scored[k].dice)
    return Assessment(min_dice, name, scored[name].dice, scored[name].cases)


def describe(validation: Validation) -> str:
    """``dataset: structure Dice d (n cases), ...`` for humans."""
    scored = validated(validation)
    parts = ", ".join(f"{k} Dice {m.dice:.3f} ({m.cases} cases)" for k, m in scored.items()) or "none"
    return f"validation on {validation.dataset or 'an unnamed dataset'!r}: {parts}"


def check_bundle_quality(directory: Path):
    """``wbspine doctor``'s ``model`` check: the bundle's recorded validation, a warning
    when it is weak or missing (a warning, not a failure: the box still runs)."""
    from appliance.bundle import load_bundle
    from appliance.doctor import ok, warn
    from appliance.errors import BundleError

    try:
        manifest = load_bundle(directory, verify=False).manifest
    except (BundleError, OSError) as exc:  # the bundle check reports it
        return warn("model", f"no validation read: {exc}", "fix the bundle first (see the bundle check)")
    v = manifest.validation
    gate = max(MIN_VAL_DICE, v.gate.min_dice if v.gate is not None else 0.0)
    a = assess(v, gate)
    name = f"{manifest.model.name} {manifest.model.version}"
    overridden = v.gate is not None and v.gate.overridden
    if not a.validated:
        return warn("model", f"{name}: no validation recorded in its manifest: how well it segments is unknown",
                    "use a validated bundle, or validate this one: python -m export.validate BUNDLE "
                    "--dataset DATASET --record")
    detail = f"{name}: {describe(v)}" + ("; exported with --allow-weak" if overridden else "")
    if not a.passed:
        return warn("model", f"{detail}; weak model: {a.problem()}",
                    "its segmentations and measurements are unreliable: install a bundle trained and validated "
                    "to Dice >= the gate (wbspine train, wbspine export)")
    return ok("model", f"{detail}; lowest {a.dice:.3f} >= gate {gate:g}")
