"""Tiny ONNX models and bundles for the inference tests (onnx.helper; no torch)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from appliance.bundle import (SCHEMA_VERSION, Manifest, config_hash, file_entry, write_manifest)

T = 2000.0
#: normalised intensity above which the oracle model says "bone" (250 HU-like with t = 2000)
BONE_X = (250.0 + 1000.0) / T


def conv_model(path: Path, weights: np.ndarray, bias: np.ndarray, input_name: str = "image",
               output_name: str = "logits", kernel: int = 1) -> Path:
    """A Conv3d ``logits[c] = weights[c] * mean_k(x) + bias[c]``, the mean over a ``kernel``³
    neighbourhood (zero-padded to keep the shape; 1: the voxel itself); batch and spatial
    dims dynamic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = len(weights)
    k = int(kernel)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel must be odd and positive, got {kernel}")
    mean = np.full((1, 1, k, k, k), 1.0 / k**3, np.float32)
    w = numpy_helper.from_array(np.asarray(weights, np.float32).reshape(c, 1, 1, 1, 1) * mean, "w")
    b = numpy_helper.from_array(np.asarray(bias, np.float32), "b")
    node = helper.make_node("Conv", [input_name, "w", "b"], [output_name], kernel_shape=[k, k, k],
                            pads=[k // 2] * 6)
    graph = helper.make_graph(
        [node], "conv1",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 1, "D", "H", "W"])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", c, "D", "H", "W"])],
        initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def threshold_model(path: Path) -> Path:
    """Oracle: class 1 where the normalised intensity exceeds BONE_X, else background."""
    k = 40.0
    return conv_model(path, np.array([0.0, k, 0.0, 0.0]), np.array([0.0, -k * BONE_X, -10.0, -10.0]))


#: the smoothed oracle's threshold: mean over 5³ voxels above 200 HU-like
SMOOTH_KERNEL, SMOOTH_X = 5, (200.0 + 1000.0) / T


def smoothed_bone_model(path: Path) -> Path:
    """Oracle for the tests of the whole loop: class 1 where the 5³-mean intensity exceeds
    SMOOTH_X. Thresholding each voxel breaks a noisy phantom's bone into hundreds of
    specks (343 components on seed 4, small), which the appliance rightly stops as "no
    vertebral column" (:mod:`appliance.column`); the mean keeps bone in pieces (7-30 on
    seeds 1, 2, 4), so the study goes through. Ribs, pelvis and femurs are still label 1:
    the loop is tested, not the anatomy."""
    k = 40.0
    return conv_model(path, np.array([0.0, k, 0.0, 0.0]), np.array([0.0, -k * SMOOTH_X, -10.0, -10.0]),
                      kernel=SMOOTH_KERNEL)


def manifest_dict(files: list, window=(16, 32, 32), spacing=(2.5, 2.5, 2.5)) -> dict:
    config = {"epochs": 1, "seed": 0, "window_zyx": list(window)}
    code = lambda v, m: {"value": v, "scheme": "SCT", "meaning": m}  # noqa: E731  (test codes)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": "test-threshold", "version": "0.0.1", "description": "oracle"},
        "created": datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat(),
        "source": {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False},
        "training": {"config": config, "config_sha256": config_hash(config)},
        "preprocessing": {"working_spacing_mm": list(spacing), "window_zyx": list(window),
                          "normalization_t": T, "intensity_offset": 1000.0, "canonical_orientation": "LPS"},
        "io": {"input_name": "image", "output_name": "logits", "layout": "NCDHW", "num_classes": 4,
               "output": "logits"},
        "labels": [{"value": 0, "name": "background"},
                   {"value": 1, "name": "vertebral_bodies", "code": code("1", "Vertebral body"),
                    "category": code("2", "Anatomical structure")},
                   {"value": 2, "name": "pelvis", "code": code("3", "Pelvis")},
                   {"value": 3, "name": "femoral_heads", "code": code("4", "Femoral head")}],
        "validation": {"dataset": "none", "structures": {
            "vertebral_bodies": {"dice": 0.5, "volume_similarity": 0.9, "recall": 0.6, "cases": 1}}},
        "files": [f.model_dump() for f in files],
    }


def make_bundle(root: Path, window=(16, 32, 32), spacing=(2.5, 2.5, 2.5), oracle: str = "voxel") -> Path:
    """A test bundle; ``oracle``: "voxel" (:func:`threshold_model`, whose answer is known
    voxel for voxel) or "smoothed" (:func:`smoothed_bone_model`, which passes the column
    check on the small phantoms; for tests of the whole loop)."""
    models = {"voxel": threshold_model, "smoothed": smoothed_bone_model}
    if oracle not in models:
        raise ValueError(f"unknown oracle {oracle!r}; one of {sorted(models)}")
    root.mkdir(parents=True, exist_ok=True)
    models[oracle](root / "model.onnx")
    (root / "MODEL_CARD.md").write_text("test model\n")
    files = [file_entry(root, "model.onnx", "onnx"), file_entry(root, "MODEL_CARD.md", "model_card")]
    write_manifest(root, Manifest.model_validate(manifest_dict(files, window, spacing)))
    return root


def rewrite_manifest(root: Path, **changes) -> None:
    data = json.loads((root / "manifest.json").read_text())
    data.update(changes)
    (root / "manifest.json").write_text(json.dumps(data))
