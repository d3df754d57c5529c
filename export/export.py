"""The export procedure: checkpoint → ONNX → parity → (TensorRT) → card → manifest.

Every bundle also carries the checkpoint's weights (``model.safetensors``, role ``weights``,
all heads included) so that it can be fine-tuned (``wbspine train --init-from BUNDLE``)."""

from __future__ import annotations

import logging
from pathlib import Path

from appliance.bundle import load_bundle
from appliance.errors import ExportError
from export.bundle_writer import build_manifest, finish_bundle, model_card
from export.fp16 import convert_fp16
from export.onnx_export import export_onnx, window_zyx
from export.parity import FP16_THRESHOLDS, ParityThresholds, check_parity, phantom_windows
from export.tensorrt import EngineSpec, build_engine, unavailable_reason
from export.triton import write_triton_repository

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def export_bundle(checkpoint: str | Path, out_dir: str | Path, *, name: str = "wbspine-resunet3d",
                  version: str = "0.1.0", description: str = "", tensorrt: str = "auto",
                  triton_dir: str | Path | None = None,
                  thresholds: ParityThresholds = ParityThresholds(), fp16: bool = True,
                  fp16_thresholds: ParityThresholds = FP16_THRESHOLDS, card_extra: str = "") -> dict:
    """Write a verified bundle; raise :class:`ExportError` when parity fails.

    ``fp16`` adds ``model_fp16.onnx`` (role ``onnx_fp16``, used by ONNX Runtime CUDA),
    which must pass its own, looser parity thresholds against the same PyTorch outputs.
    """
    from training.checkpoint import model_from_checkpoint
    from training.weights import WEIGHTS_NAME, save_weights

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty; export into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    model, ckpt = model_from_checkpoint(checkpoint)
    window = window_zyx(ckpt)
    onnx_path = export_onnx(model, out / "model.onnx", window)
    windows = phantom_windows(ckpt, window)
    parity = check_parity(model, onnx_path, windows, thresholds)
    if not parity.passed:
        raise ExportError(f"parity check failed: {parity.as_dict()}")
    files = [("model.onnx", "onnx")]
    save_weights(model.state_dict(), out / WEIGHTS_NAME, ckpt["model"]["config"], ckpt["model"]["num_classes"])
    files.append((WEIGHTS_NAME, "weights"))  # for `wbspine train --init-from` (issue 17)
    parity_fp16 = None
    if fp16:
        fp16_path = convert_fp16(onnx_path, out / "model_fp16.onnx")
        parity_fp16 = check_parity(model, fp16_path, windows, fp16_thresholds)
        if not parity_fp16.passed:
            raise ExportError(f"FP16 parity check failed (export with fp16 off to skip the variant): "
                              f"{parity_fp16.as_dict()}")
        files.append((fp16_path.name, "onnx_fp16"))
    trt_note = ""
    if tensorrt != "off":
        reason = unavailable_reason()
        if reason and tensorrt == "require":
            raise ExportError(f"--tensorrt require: {reason}")
        plan = build_engine(onnx_path, out, EngineSpec(window)) if not reason else None
        if plan is not None:
            files.append((plan.name, "tensorrt_plan"))
        else:
            trt_note = f"TensorRT engine: not built ({reason}).\n\n"
    card = model_card(ckpt, name, version, parity.as_dict(), trt_note + card_extra,
                      parity_fp16=parity_fp16.as_dict() if parity_fp16 else None, weights_file=WEIGHTS_NAME)
    (out / "MODEL_CARD.md").write_text(card)
    files.append(("MODEL_CARD.md", "model_card"))
    manifest = build_manifest(ckpt, out, name=name, version=version, description=description,
                              window=window, files=files, repo=REPO)
    finish_bundle(out, manifest)
    load_bundle(out)  # what the appliance will do: verify schema and hashes
    result = {"bundle": str(out), "files": [f for f, _ in files], "parity": parity.as_dict(),
              "parity_fp16": parity_fp16.as_dict() if parity_fp16 else None,
              "tensorrt": "built" if any(r == "tensorrt_plan" for _, r in files) else trt_note.strip()}
    if triton_dir is not None:
        result["triton_model"] = str(write_triton_repository(out, triton_dir))
    return result
