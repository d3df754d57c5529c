"""The export procedure: checkpoint → ONNX → parity → (TensorRT) → card → manifest.

Every bundle also carries the checkpoint's weights (``model.safetensors``, role ``weights``,
all heads included) so that it can be fine-tuned (``wbspine train --init-from BUNDLE``)."""

from __future__ import annotations

import logging
from pathlib import Path

from appliance.bundle import load_bundle
from appliance.bundle_quality import MIN_VAL_DICE, Assessment, assess
from appliance.errors import ExportError
from export.bundle_writer import build_manifest, finish_bundle, model_card, validation_info
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
                  fp16_thresholds: ParityThresholds = FP16_THRESHOLDS, card_extra: str = "",
                  allow_weak: bool = False, min_val_dice: float | None = None) -> dict:
    """Write a verified bundle; raise :class:`ExportError` when parity fails or the model is
    weak (:func:`quality_gate`), before anything is written.

    ``allow_weak`` exports a weak model anyway; the manifest's ``validation.gate`` and the
    model card say so. ``min_val_dice`` overrides the training config's gate.
    ``fp16`` adds ``model_fp16.onnx`` (role ``onnx_fp16``, used by ONNX Runtime CUDA),
    which must pass its own, looser parity thresholds against the same PyTorch outputs.
    """
    from training.checkpoint import model_from_checkpoint
    from training.weights import WEIGHTS_NAME, save_weights

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty; export into a new folder")
    model, ckpt = model_from_checkpoint(checkpoint)
    gate = quality_gate(ckpt, allow_weak=allow_weak, min_val_dice=min_val_dice)
    out.mkdir(parents=True, exist_ok=True)
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
    gate_record = gate.record(overridden=allow_weak)
    card = model_card(ckpt, name, version, parity.as_dict(), trt_note + card_extra,
                      parity_fp16=parity_fp16.as_dict() if parity_fp16 else None, weights_file=WEIGHTS_NAME,
                      gate=gate_record)
    (out / "MODEL_CARD.md").write_text(card)
    files.append(("MODEL_CARD.md", "model_card"))
    manifest = build_manifest(ckpt, out, name=name, version=version, description=description,
                              window=window, files=files, repo=REPO, gate=gate_record)
    finish_bundle(out, manifest)
    load_bundle(out)  # what the appliance will do: verify schema and hashes
    result = {"bundle": str(out), "files": [f for f, _ in files], "parity": parity.as_dict(),
              "validation_gate": gate_record.model_dump(),
              "parity_fp16": parity_fp16.as_dict() if parity_fp16 else None,
              "tensorrt": "built" if any(r == "tensorrt_plan" for _, r in files) else trt_note.strip()}
    if triton_dir is not None:
        result["triton_model"] = str(write_triton_repository(out, triton_dir))
    return result


def gate_threshold(ckpt: dict) -> float:
    """The run's ``export.min_val_dice`` (absent from configs at its default)."""
    section = (ckpt.get("training_config") or {}).get("export") or {}
    return float(section.get("min_val_dice", MIN_VAL_DICE))


def quality_gate(ckpt: dict, *, allow_weak: bool = False, min_val_dice: float | None = None) -> Assessment:
    """The checkpoint's validation against the gate (:mod:`appliance.bundle_quality`):
    raise :class:`ExportError` for a weak or unvalidated model unless ``allow_weak``."""
    a = assess(validation_info(ckpt), gate_threshold(ckpt) if min_val_dice is None else min_val_dice)
    if a.passed:
        return a
    if allow_weak:
        log.warning("exporting a weak model (--allow-weak): %s", a.problem())
        return a
    if not a.validated:
        raise ExportError("refusing to export: no validation recorded; train with a val split or pass --allow-weak")
    raise ExportError(f"refusing to export: {a.problem()} (export.min_val_dice); train further, or pass "
                      f"--allow-weak to export it anyway")
