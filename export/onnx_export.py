"""Checkpoint → ONNX (opset 17, dynamic batch, the bundle's fixed window)."""

from __future__ import annotations

import warnings
from pathlib import Path

from appliance.errors import ExportError
from training.torch_import import require_torch

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17


def window_zyx(ckpt: dict) -> tuple[int, int, int]:
    """The inference window: the paper's 16 slices × the training patch in-plane."""
    w = ckpt["window"]
    return int(w["slices"]), int(w["patch_xy"]), int(w["patch_xy"])


def export_onnx(model, path: str | Path, window: tuple[int, int, int], opset: int = OPSET) -> Path:
    """Write ``model`` (eval mode, full-resolution logits only) as ONNX and check it.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no extra package and
    matched ONNX Runtime to ~1e-5 on this network. Batch is dynamic (``batch``); the
    window dimensions are fixed, which lets TensorRT build one optimised profile.
    """
    torch = require_torch("ONNX export")
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros((1, 1) + tuple(window), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except Exception as exc:  # onnx raises ValidationError and friends
        raise ExportError(f"onnx.checker rejected the exported model: {exc}") from exc
    return path
