"""Assemble a model bundle: ONNX model (+ optional TensorRT plan), model card, manifest.

The manifest schema is the appliance's (:mod:`appliance.bundle`); export only fills it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from appliance.bundle import (
    SCHEMA_VERSION, Code, FileEntry, IOInfo, LabelInfo, Manifest, ModelInfo, Preprocessing,
    SourceInfo, StructureMetrics, TrainingInfo, Validation, ValidationGate, config_hash, file_entry, load_bundle,
    write_manifest,
)
from appliance.errors import ExportError
from appliance.outputs import codes

#: DICOM codes of each label (the SEG writer uses the same ones).
LABEL_CODES = {
    "vertebral_bodies": codes.VERTEBRAL_BODY,
    "pelvis": codes.PELVIS_BONE,
    "femoral_heads": codes.FEMORAL_HEAD,
}


def _code(c) -> Code:
    return Code(value=c.value, scheme=c.scheme_designator, meaning=c.meaning)


def git_source(repo: Path) -> SourceInfo:
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return SourceInfo(git_commit="unknown", git_dirty=False)
    return SourceInfo(git_commit=commit, git_dirty=dirty)


def labels_info(label_map: dict) -> list[LabelInfo]:
    out = []
    for value, name in sorted((int(k), v) for k, v in label_map.items()):
        code = LABEL_CODES.get(name)
        if value != 0 and code is None:
            raise ExportError(f"no DICOM code for label {value} {name!r}; add it to export.bundle_writer")
        out.append(LabelInfo(value=value, name=name, code=_code(code) if code else None,
                             category=_code(codes.ANATOMICAL_STRUCTURE) if code else None))
    return out


def validation_info(ckpt: dict, gate: ValidationGate | None = None) -> Validation:
    table = (ckpt.get("validation") or {}).get("table3") or {}
    structures = {
        name: StructureMetrics(dice=e["dice"], volume_similarity=e["volume_similarity"], recall=e["recall"],
                               cases=int(e.get("test", 0)))
        for name, e in table.items() if None not in (e.get("dice"), e.get("volume_similarity"), e.get("recall"))
    }
    dataset = str((ckpt.get("training_config") or {}).get("data", {}).get("dataset", ""))
    return Validation(dataset=dataset, structures=structures, gate=gate)


def build_manifest(ckpt: dict, out_dir: Path, *, name: str, version: str, description: str,
                   window: tuple[int, int, int], files: list[tuple[str, str]], repo: Path,
                   gate: ValidationGate | None = None) -> Manifest:
    config = ckpt["training_config"]
    sha = config_hash(config)
    if not sha.startswith(str(ckpt.get("config_hash", ""))):
        raise ExportError("the checkpoint's config hash does not match its training config")
    entries: list[FileEntry] = [file_entry(out_dir, rel, role) for rel, role in files]
    return Manifest(
        schema_version=SCHEMA_VERSION,
        model=ModelInfo(name=name, version=version, description=description),
        created=dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
        source=git_source(repo),
        training=TrainingInfo(config=config, config_sha256=sha),
        preprocessing=Preprocessing(
            working_spacing_mm=tuple(float(s) for s in ckpt["working_spacing_mm"]),
            window_zyx=window, normalization_t=float(ckpt["normalization"]["t"]),
            intensity_offset=float(ckpt["normalization"]["offset"]),
            canonical_orientation=ckpt["orientation"]),
        io=IOInfo(input_name="image", output_name="logits", num_classes=int(ckpt["model"]["num_classes"])),
        labels=labels_info(ckpt["label_map"]),
        validation=validation_info(ckpt, gate),
        files=entries,
    )


def model_card(ckpt: dict, name: str, version: str, parity: dict, extra: str = "",
               parity_fp16: dict | None = None, weights_file: str | None = None,
               gate: ValidationGate | None = None) -> str:
    """A human-readable card; the numbers come from the checkpoint and the parity run."""
    v = validation_info(ckpt)
    rows = "\n".join(f"| {k} | {m.cases} | {m.dice:.3f} | {m.volume_similarity:.3f} | {m.recall:.3f} |"
                     for k, m in v.structures.items()) or "| (no validation recorded) | | | | |"
    return (
        f"# Model card: {name} {version}\n\n"
        "Residual 3D U-Net (JoVE 67781 protocol) segmenting vertebral bodies (1), pelvis incl. "
        "sacrum (2) and femoral heads (3) in weight-bearing CBCT.\n\n"
        f"- Training config hash: `{ckpt.get('config_hash')}`; dataset: `{v.dataset}`\n"
        f"- Working spacing {ckpt['working_spacing_mm']} mm, window {ckpt['window']}, "
        f"normalisation t = {ckpt['normalization']['t']}\n"
        f"- Export parity (ONNX Runtime vs PyTorch): max |Δlogit| = {parity['max_abs_logit_diff']:.2e}, "
        f"argmax agreement = {parity['argmax_agreement']:.6f} over {parity['windows']} phantom windows\n"
        + (f"- Trainable weights: `{weights_file}` (the PyTorch state dict as safetensors) for "
           "`wbspine train --init-from`\n" if weights_file else "")
        + (f"- FP16 variant `model_fp16.onnx` (for GPUs) vs PyTorch FP32: max |Δlogit| = "
           f"{parity_fp16['max_abs_logit_diff']:.2e}, argmax agreement = {parity_fp16['argmax_agreement']:.6f}\n"
           if parity_fp16 else "") + "\n"
        "## Validation during training (paper Table 3 metrics; the checkpoint's validation "
        "cases, at the working spacing)\n\n"
        "| Structure | Cases | Dice | VS | Recall |\n|---|---|---|---|---|\n" + rows + "\n\n"
        + (gate_line(gate) + "\n\n" if gate is not None else "")
        + (extra.rstrip("\n") + "\n\n" if extra.strip() else "") +
        "**Not for clinical use.** Clinical use requires retraining on annotated weight-bearing "
        "CBCT following the protocol and validation on the site's own data.\n"
    )


def gate_line(gate: ValidationGate) -> str:
    """The card's sentence on the export's quality gate."""
    lowest = (f"lowest validation Dice {gate.dice:.3f} ({gate.structure})" if gate.structure is not None
              else "no validation recorded")
    if gate.passed:
        return f"Export quality gate: {lowest} >= {gate.min_dice:g}: passed."
    return (f"**Export quality gate NOT passed**: {lowest}, gate {gate.min_dice:g}. Exported anyway "
            "(`wbspine export --allow-weak`): do not use this model's results.")


def finish_bundle(out_dir: Path, manifest: Manifest) -> Path:
    return write_manifest(out_dir, manifest)


def rewrite_manifest(root: Path, manifest: Manifest, extra_files: tuple[tuple[str, str], ...] = (),
                     **update) -> Path:
    """Rewrite a bundle's manifest after its files changed: every file (and the
    ``(path, role)`` pairs in ``extra_files``) rehashed, ``update`` applied, then the bundle
    loaded with full verification so a bad rewrite fails here, not on the box."""
    files = [file_entry(root, f.path, f.role) for f in manifest.files] + \
        [file_entry(root, path, role) for path, role in extra_files]
    path = write_manifest(root, manifest.model_copy(update={**update, "files": files}))
    load_bundle(root)
    return path
