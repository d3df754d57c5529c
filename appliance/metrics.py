"""Segmentation metrics of JoVE 67781 (Table 3), per structure.

Dice = 2TP / (2TP + FP + FN); Volume Similarity = 1 − |FN − FP| / (2TP + FP + FN);
Recall = TP / (TP + FN). Used by training's evaluation and the appliance alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from appliance.labels import LABEL_NAMES, STRUCTURES


@dataclass(frozen=True)
class Overlap:
    tp: int
    fp: int
    fn: int

    @property
    def dice(self) -> float | None:
        d = 2 * self.tp + self.fp + self.fn
        return None if d == 0 else 2 * self.tp / d

    @property
    def volume_similarity(self) -> float | None:
        d = 2 * self.tp + self.fp + self.fn
        return None if d == 0 else 1.0 - abs(self.fn - self.fp) / d

    @property
    def recall(self) -> float | None:
        d = self.tp + self.fn
        return None if d == 0 else self.tp / d

    def as_dict(self) -> dict:
        return asdict(self) | {"dice": self.dice, "volume_similarity": self.volume_similarity,
                               "recall": self.recall}


def overlap(prediction: np.ndarray, reference: np.ndarray, label: int) -> Overlap:
    """Confusion counts of one label (arrays of equal shape)."""
    if prediction.shape != reference.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {reference.shape}")
    p = prediction == label
    r = reference == label
    tp = int(np.count_nonzero(p & r))
    return Overlap(tp=tp, fp=int(np.count_nonzero(p)) - tp, fn=int(np.count_nonzero(r)) - tp)


def structure_metrics(prediction: np.ndarray, reference: np.ndarray,
                      labels=STRUCTURES) -> dict[str, dict]:
    """``{structure name: {tp, fp, fn, dice, volume_similarity, recall}}``; a metric
    whose denominator is zero (structure absent from both) is ``None``, never 0 or 1."""
    return {LABEL_NAMES[int(k)]: overlap(prediction, reference, int(k)).as_dict() for k in labels}
