"""Start training from trained weights (``wbspine train --init-from``; issues 17 and 22).

The source is a model bundle whose manifest lists a ``weights`` file (safetensors, see
:mod:`training.weights`), or a training checkpoint (``last.pt``/``best.pt``). The network
the config describes must be the source's: same ``model`` settings, same labels, and
every state-dict key with the same shape. Anything else is refused with the list of what
differs, never loaded partially. The one allowed gap: deep-supervision heads the source
lacks (weights recovered from an ONNX have none, :func:`training.model.deep_supervision_keys`)
keep their fresh initialisation and are trained from there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from appliance.bundle import MANIFEST_NAME, load_bundle, sha256_file
from appliance.errors import BundleError, TrainingError

log = logging.getLogger(__name__)

#: ``--init-from`` scales the config's ``optim.lr`` by this unless ``--set optim.lr=...``
#: is given: a from-scratch recipe's rate would first undo much of what the source learnt;
#: a tenth is a common fine-tuning starting point.
FINE_TUNE_LR_FACTOR = 0.1
#: At most this many differences are listed in a refusal (the rest are counted).
MAX_LISTED = 20


@dataclass(frozen=True)
class InitSource:
    """Trained weights and the network they belong to."""

    path: Path
    kind: str                  # "bundle" or "checkpoint"
    state_dict: dict           # key -> CPU tensor
    model_config: dict         # training.config.ModelConfig as a JSON object
    labels: dict[int, str]     # label value -> name
    sha256: str                # of the weights file or checkpoint read


def _plain_json(value) -> object:
    return json.loads(json.dumps(value))


def read_source(path: str | Path) -> InitSource:
    """Read a bundle folder (verified: every listed file's sha256) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            raise TrainingError(f"--init-from {path}: a folder must be a model bundle (no {MANIFEST_NAME})")
        from training.weights import load_weights

        try:
            bundle = load_bundle(path, verify=True)
        except BundleError as exc:
            raise TrainingError(f"--init-from {path}: {exc}") from exc
        weights = bundle.path("weights")
        if weights is None:
            raise TrainingError(
                f"--init-from {path}: the bundle lists no trainable weights (role 'weights'), only ONNX; "
                "re-export it from its checkpoint, or recover the weights with "
                f"`python -m export.recover {path}`")
        state, meta = load_weights(weights)
        config_model = bundle.manifest.training.config.get("model")
        if config_model is not None and _plain_json(config_model) != _plain_json(meta["model_config"]):
            raise TrainingError(f"--init-from {path}: the weights file's model_config {meta['model_config']} "
                                f"differs from the manifest's training.config.model {config_model}")
        return InitSource(path, "bundle", state, meta["model_config"],
                          {lab.value: lab.name for lab in bundle.manifest.labels}, sha256_file(weights))
    if path.is_file():
        from training import checkpoint as ckpt_io

        ckpt = ckpt_io.load(path)
        m = ckpt["model"]
        return InitSource(path, "checkpoint", dict(m["state_dict"]), m["config"],
                          {int(k): v for k, v in ckpt["label_map"].items()}, sha256_file(path))
    raise TrainingError(f"--init-from {path}: no such bundle folder or checkpoint file")


def mismatches(config_model: dict, config_labels: dict[int, str], model_shapes: dict[str, tuple],
               source: InitSource, optional: set[str]) -> list[str]:
    """What differs between the config's network and the source's, one line each.

    ``model_shapes``: the config's network, key -> shape; ``optional``: keys the source
    may lack (deep-supervision heads)."""
    out = []
    mine, theirs = _plain_json(config_model), _plain_json(source.model_config)
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            out.append(f"model.{key}: config {mine.get(key)!r}, source {theirs.get(key)!r}")
    if dict(config_labels) != dict(source.labels):
        out.append(f"data.labels: config {dict(config_labels)}, source {dict(source.labels)}")
    src_shapes = {k: tuple(v.shape) for k, v in source.state_dict.items()}
    for key in list(model_shapes) + [k for k in src_shapes if k not in model_shapes]:  # network order
        a, b = model_shapes.get(key), src_shapes.get(key)
        if a is None:
            out.append(f"{key}: not in the config's network, source {b}")
        elif b is None:
            if key not in optional:
                out.append(f"{key}: config {a}, missing from the source")
        elif a != b:
            out.append(f"{key}: config {a}, source {b}")
    return out


def initialise(model, config, source: InitSource) -> list[str]:
    """Load ``source`` into ``model`` (built from ``config``); return the keys left at their
    fresh initialisation (deep-supervision heads the source lacks). Refuses any mismatch."""
    from training.model import deep_supervision_keys

    state = model.state_dict()
    problems = mismatches(config.semantic_dict()["model"], config.data.labels,
                          {k: tuple(v.shape) for k, v in state.items()}, source, deep_supervision_keys(model))
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise TrainingError(f"--init-from {source.path}: the network in the config is not the source's "
                            f"({len(problems)} differences; set the config's model/labels to the source's):"
                            f"\n  {listed}{more}")
    fresh = sorted(set(state) - set(source.state_dict))
    model.load_state_dict({**state, **source.state_dict}, strict=True)
    log.info("initialised from %s %s (sha256 %s); fresh: %s", source.kind, source.path, source.sha256[:12],
             ", ".join(fresh) or "none")
    return fresh
