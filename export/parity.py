"""Parity of the exported model through the real runtime: ONNX Runtime vs PyTorch on
real phantom windows (preprocessed exactly as the appliance does), with thresholds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from appliance.errors import ExportError
from appliance.phantom import generate_study
from appliance.preprocess import normalize, reorient, resample
from training.torch_import import require_torch


@dataclass(frozen=True)
class ParityThresholds:
    """``max_abs_logit_diff`` is per unit of logit scale: the bound applied is
    ``max_abs_logit_diff * max(1, max |PyTorch logit|)``, since float32 summation-order
    differences grow with the logits (a trained model's reach ~20; an untrained one's ~1)."""

    max_abs_logit_diff: float = 1e-3
    min_argmax_agreement: float = 0.9999


#: FP16 weights/activations keep ~3 decimal digits, so the bound is looser; the labels
#: must still agree almost everywhere.
FP16_THRESHOLDS = ParityThresholds(max_abs_logit_diff=0.0125, min_argmax_agreement=0.999)


@dataclass(frozen=True)
class ParityReport:
    windows: int
    voxels: int
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    argmax_agreement: float
    passed: bool
    thresholds: dict

    def as_dict(self) -> dict:
        return asdict(self)


def phantom_windows(ckpt: dict, window: tuple[int, int, int], count: int = 4, seed: int = 101) -> np.ndarray:
    """``count`` normalised windows ``(N, 1, z, y, x)`` centred on labelled voxels of a
    held-out phantom (seed not used in training), at the model's working spacing."""
    study = generate_study(seed, "small")
    spacing = ckpt["working_spacing_mm"]
    image = resample(reorient(study.image), spacing)
    labels = resample(reorient(study.labels), spacing, is_label=True)
    x = normalize(image.array, float(ckpt["normalization"]["t"]))
    pad = [(max(0, w - s), 0) for w, s in zip(window, x.shape)]
    x = np.pad(x, pad)
    lab = np.pad(labels.array, pad)
    rng = np.random.default_rng(seed)
    fg = np.argwhere(lab > 0)
    out = np.empty((count, 1) + tuple(window), np.float32)
    for i in range(count):
        centre = fg[rng.integers(len(fg))]
        start = [int(np.clip(c - w // 2, 0, s - w)) for c, w, s in zip(centre, window, x.shape)]
        out[i, 0] = x[start[0]:start[0] + window[0], start[1]:start[1] + window[1], start[2]:start[2] + window[2]]
    return out


def check_parity(model, onnx_path: str | Path, windows: np.ndarray,
                 thresholds: ParityThresholds = ParityThresholds()) -> ParityReport:
    torch = require_torch("The export parity check")
    from appliance.engines.onnxruntime import OrtEngine

    engine = OrtEngine(onnx_path)
    with torch.no_grad():
        reference = model.eval()(torch.from_numpy(windows)).numpy()
    ours = engine.run(windows)
    if ours.shape != reference.shape:
        raise ExportError(f"ONNX output shape {ours.shape} differs from PyTorch {reference.shape}")
    diff = np.abs(ours - reference)
    agree = float(np.mean(ours.argmax(axis=1) == reference.argmax(axis=1)))
    max_diff = float(diff.max())
    scale = max(1.0, float(np.abs(reference).max()))
    passed = max_diff <= thresholds.max_abs_logit_diff * scale and agree >= thresholds.min_argmax_agreement
    return ParityReport(int(windows.shape[0]), int(np.prod(windows.shape[2:]) * windows.shape[0]),
                        max_diff, float(diff.mean()), agree, passed, asdict(thresholds))
