"""Training checkpoints: exact resume, and everything export (issue 4) needs.

A checkpoint is a ``torch.save`` dict readable with ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists, dicts only — no pickled objects), so loading one
never runs code. Export reads: ``model`` (architecture, config, classes, weights),
``label_map``, ``working_spacing_mm``, ``window``, ``normalization`` (fixed inference t),
``orientation``, ``training_config`` + ``config_hash``, ``validation``.
"""

from __future__ import annotations

import datetime as _dt
import random
from pathlib import Path

import numpy as np

from appliance.errors import TrainingError
from appliance.preprocess import CANONICAL_ORIENTATION, INTENSITY_OFFSET
from training.torch_import import require_torch

torch = require_torch("Training checkpoints")

FORMAT = "wbspine-training-checkpoint"
VERSION = 1


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np.asarray(np_state["state"]["key"]).astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "cached_gaussian": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["cached_gaussian"]})
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain(value):
    """numpy scalars/arrays → Python numbers/lists, recursively (for ``weights_only`` loads)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def metadata(config) -> dict:
    """The export-facing fields derived from a training config."""
    multiple = [1, 1, 1]
    for s in config.model.strides:
        multiple = [m * int(v) for m, v in zip(multiple, s)]
    return {
        "format": FORMAT, "version": VERSION,
        "label_map": {int(k): v for k, v in config.data.labels.items()},
        "working_spacing_mm": [float(s) for s in config.data.working_spacing_mm],
        "window": {"slices": config.data.window_slices, "patch_xy": config.data.patch_xy,
                   "multiple_zyx": multiple, "axes": "N,1,z,y,x"},
        "normalization": {"offset": INTENSITY_OFFSET, "t": config.data.inference_t,
                          "t_train_range": list(config.data.t_range),
                          "formula": "clip(x + offset, 0, t) / t"},
        "orientation": CANONICAL_ORIENTATION,
        "training_config": config.semantic_dict(),
        "config_hash": config.hash,
    }


def build_checkpoint(config, model, *, optimizer, scheduler, scaler, epoch: int, alpha: float,
                     best_score: float | None, validation: dict, history: list) -> dict:
    ckpt = metadata(config)
    ckpt.update({
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
        "model": {"architecture": "training.model.ResUNet3d", "config": config.semantic_dict()["model"],
                  "num_classes": config.num_classes, "in_channels": 1,
                  "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
        "epoch": int(epoch),  # the last completed epoch (0-based)
        "alpha": float(alpha),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "best_score": None if best_score is None else float(best_score),
        "validation": plain(validation),
        "history": plain(history),
        "rng": rng_state(),
    })
    return ckpt


def save(ckpt: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a broken checkpoint
    return path


def load(path: str | Path) -> dict:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, Exception) as exc:  # unpickling errors vary by version
        raise TrainingError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or ckpt.get("version") != VERSION:
        raise TrainingError(f"{path} is not a {FORMAT} v{VERSION} file")
    return ckpt


def model_from_checkpoint(ckpt_or_path):
    """(model in eval mode, checkpoint dict): what export rebuilds the network from."""
    from training.model import build_model

    ckpt = load(ckpt_or_path) if isinstance(ckpt_or_path, (str, Path)) else ckpt_or_path
    m = ckpt["model"]
    model = build_model(m["config"], m["num_classes"])
    model.load_state_dict(m["state_dict"])
    return model.eval(), ckpt
