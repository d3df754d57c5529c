"""Trainable weights as a file: safetensors (no pickle, so reading one never runs code).

The bundle ships them as ``model.safetensors`` (role ``weights``) next to the ONNX; export
writes them, ``wbspine train --init-from`` reads them. The file's metadata (strings only,
per the safetensors format) describes the network so a file can be checked on its own:

    format        "wbspine.weights/1"
    architecture  "training.model.ResUNet3d"
    model_config  JSON of training.config.ModelConfig
    num_classes   number of output classes

A file may lack the deep-supervision heads (:func:`training.model.deep_supervision_keys`):
they act only in training, so an ONNX export drops them, and weights recovered from an
ONNX (:mod:`export.recover`) cannot hold them.
"""

from __future__ import annotations

import json
from pathlib import Path

from appliance.errors import TrainingError
from training.torch_import import require_torch

torch = require_torch("Model weights")

FORMAT = "wbspine.weights/1"
ARCHITECTURE = "training.model.ResUNet3d"
WEIGHTS_NAME = "model.safetensors"


def save_weights(state_dict: dict, path: str | Path, model_config: dict, num_classes: int) -> Path:
    """Write ``state_dict`` (tensors, made contiguous on the CPU) with its description."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata={
        "format": FORMAT, "architecture": ARCHITECTURE,
        "model_config": json.dumps(model_config, sort_keys=True), "num_classes": str(int(num_classes)),
    })
    path.chmod(0o644)  # safetensors writes 0600; the bundle's other files are world-readable
    return path


def load_weights(path: str | Path) -> tuple[dict, dict]:
    """(state dict of CPU tensors, metadata) of a weights file; :class:`TrainingError` if
    it is not a readable ``wbspine.weights/1`` file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise TrainingError(f"cannot read weights {path}: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("architecture") != ARCHITECTURE:
        raise TrainingError(f"{path} is not a {FORMAT} file of {ARCHITECTURE} (metadata {meta})")
    try:
        meta["model_config"] = json.loads(meta["model_config"])
        meta["num_classes"] = int(meta["num_classes"])
    except (KeyError, ValueError) as exc:
        raise TrainingError(f"{path}: metadata lacks a valid model_config/num_classes") from exc
    return tensors, meta
