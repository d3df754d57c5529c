"""Recover a bundle's trainable weights from its ONNX and add them to the bundle.

Bundles before 1.1.1 (the shipped default among them) carry only ONNX: no checkpoint
survives. The ONNX initializers are the trained tensors, named by the exporter after the
PyTorch state-dict keys. Where torch's exporter merged equal tensors into one initializer
(an InstanceNorm bias of a residual skip receives the same gradient as the block's
``norm2`` bias, so the two stay equal), the graph keeps the name through an ``Identity``
node, which is followed here. Every state-dict key of :class:`training.model.ResUNet3d`
built with the manifest's ``training.config.model`` must be found with its shape, except
the deep-supervision heads (training only, never exported); every initializer must be
used. Parity: the rebuilt network against ONNX Runtime on the same windows
(:func:`export.parity.check_parity`, the export's thresholds).

Run: ``python -m export.recover BUNDLE [--write]`` (``--write`` adds ``model.safetensors``,
role ``weights``, bumps the version's patch, notes it in the model card, rehashes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from appliance.bundle import load_bundle
from appliance.errors import ExportError, WbspineError
from export.bundle_writer import rewrite_manifest
from export.parity import ParityThresholds, check_parity, phantom_windows
from export.validate import RECORD_HEADING

#: Seed of the random parity windows (uniform in [0, 1], the normalised intensity range).
PARITY_SEED = 0
PARITY_RANDOM_WINDOWS = 2
#: Heading of the model-card section :func:`add_weights` writes.
CARD_HEADING = "## Trainable weights"


def onnx_tensors(onnx_path: str | Path) -> dict[str, np.ndarray]:
    """Initializers by name, plus the names ``Identity`` nodes give them."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    tensors = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    return tensors


def recover(bundle_dir: str | Path):
    """(network with the bundle's weights in eval mode, the recovered state dict, bundle).

    Raises :class:`ExportError` listing every unmatched initializer, missing key or shape
    difference."""
    import torch

    from training.model import build_model, deep_supervision_keys

    bundle = load_bundle(bundle_dir)
    config_model = bundle.manifest.training.config.get("model")
    if config_model is None:
        raise ExportError(f"{bundle_dir}: the manifest's training.config has no 'model' section")
    model = build_model(config_model, bundle.manifest.io.num_classes)
    state = model.state_dict()
    tensors = onnx_tensors(bundle.onnx_path)
    optional = deep_supervision_keys(model)
    problems = [f"ONNX initializer {k!r} {v.shape}: no such state-dict key" for k, v in tensors.items()
                if k not in state]
    problems += [f"{k}: network {tuple(state[k].shape)}, ONNX {tensors[k].shape}" for k in tensors
                 if k in state and tuple(state[k].shape) != tensors[k].shape]
    problems += [f"{k}: not in the ONNX" for k in state if k not in tensors and k not in optional]
    if problems:
        raise ExportError(f"{bundle_dir}: the ONNX does not match the manifest's network:\n  " + "\n  ".join(problems))
    recovered = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()}
    model.load_state_dict({**state, **recovered}, strict=True)
    return model.eval(), recovered, bundle


def parity(model, bundle, thresholds: ParityThresholds = ParityThresholds()) -> dict:
    """Rebuilt network vs ONNX Runtime: random windows and held-out phantom windows."""
    window = tuple(bundle.manifest.preprocessing.window_zyx)
    rng = np.random.default_rng(PARITY_SEED)
    random = rng.random((PARITY_RANDOM_WINDOWS, 1) + window, dtype=np.float32)
    pre = bundle.manifest.preprocessing
    phantom = phantom_windows({"working_spacing_mm": list(pre.working_spacing_mm),
                               "normalization": {"t": pre.normalization_t}}, window)
    return {"random": check_parity(model, bundle.onnx_path, random, thresholds).as_dict(),
            "phantom": check_parity(model, bundle.onnx_path, phantom, thresholds).as_dict()}


def bump_patch(version: str) -> str:
    """``1.1.0`` -> ``1.1.1``."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ExportError(f"bundle version {version!r} is not MAJOR.MINOR.PATCH")
    return ".".join(parts[:2] + [str(int(parts[2]) + 1)])


def add_weights(bundle_dir: str | Path, recovered: dict, report: dict) -> Path:
    """Write ``model.safetensors`` into the bundle, list it (role ``weights``), bump the
    patch version, note it in the card, rehash every file and verify."""
    from training.weights import WEIGHTS_NAME, save_weights

    root = Path(bundle_dir)
    bundle = load_bundle(root)
    m = bundle.manifest
    if m.file("weights") is not None:
        raise ExportError(f"{root} already lists weights ({m.file('weights').path})")
    save_weights(recovered, root / WEIGHTS_NAME, m.training.config["model"], m.io.num_classes)
    card = bundle.path("model_card")
    if card is not None:
        r, p = report["random"], report["phantom"]
        title = f"# Model card: {m.model.name} "
        text = card.read_text().replace(title + m.model.version + "\n", title + bump_patch(m.model.version) + "\n", 1)
        cut = text.find("\n" + RECORD_HEADING)  # `export.validate --record` owns the card's tail
        head, tail = (text, "") if cut < 0 else (text[:cut + 1], text[cut + 1:])
        card.write_text(head.rstrip("\n") + "\n\n" + (
            f"{CARD_HEADING}\n\n`{WEIGHTS_NAME}` (safetensors, role `weights`) holds the network's "
            "trained tensors for fine-tuning (`wbspine train --init-from`). Recovered from `model.onnx` "
            "(`python -m export.recover`); the rebuilt PyTorch network matches ONNX Runtime: max "
            f"|Δlogit| = {r['max_abs_logit_diff']:.2e} on {r['windows']} random windows, "
            f"{p['max_abs_logit_diff']:.2e} (argmax agreement {p['argmax_agreement']:.6f}) on "
            f"{p['windows']} phantom windows. The deep-supervision heads (training only) were never "
            "exported, so they are not in the file; fine-tuning starts them fresh.\n") + ("\n" + tail if tail else ""))
    return rewrite_manifest(root, m, ((WEIGHTS_NAME, "weights"),),
                            model=m.model.model_copy(update={"version": bump_patch(m.model.version)}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.recover", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--write", action="store_true", help="add the weights to the bundle (else only check)")
    args = p.parse_args(argv)
    try:
        model, recovered, bundle = recover(args.bundle)
        report = parity(model, bundle)
        report["tensors"] = len(recovered)
        report["parameters"] = int(sum(v.numel() for v in recovered.values()))
        if not (report["random"]["passed"] and report["phantom"]["passed"]):
            raise ExportError(f"parity failed: {report}")
        if args.write:
            add_weights(args.bundle, recovered, report)
    except WbspineError as exc:
        print(f"recover: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
