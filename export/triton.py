"""A Triton Inference Server model repository generated from a model bundle.

Layout (Triton's model repository convention)::

    REPO/<model name>/config.pbtxt
    REPO/<model name>/1/model.onnx

``config.pbtxt`` declares the ONNX Runtime backend, the bundle's input/output names,
the window dimensions (without the batch axis), ``max_batch_size`` and dynamic
batching, so a site that outgrows one box can serve the same model centrally (the
appliance's Triton engine then sends windows to it).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from appliance.bundle import load_bundle


def triton_model_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def config_pbtxt(name: str, input_name: str, output_name: str, window_zyx, num_classes: int,
                 max_batch_size: int = 8) -> str:
    dims_in = ", ".join(str(int(v)) for v in (1, *window_zyx))
    dims_out = ", ".join(str(int(v)) for v in (num_classes, *window_zyx))
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        f'input [ {{ name: "{input_name}" data_type: TYPE_FP32 dims: [ {dims_in} ] }} ]\n'
        f'output [ {{ name: "{output_name}" data_type: TYPE_FP32 dims: [ {dims_out} ] }} ]\n'
        f"dynamic_batching {{ preferred_batch_size: [ {max(1, max_batch_size // 2)} ] }}\n"
        'instance_group [ { kind: KIND_AUTO } ]\n'
    )


def write_triton_repository(bundle_dir: str | Path, repo_dir: str | Path, max_batch_size: int = 8) -> Path:
    """Write the repository for the (verified) bundle; returns the model folder."""
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    name = triton_model_name(m.model.name)
    model_dir = Path(repo_dir) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle.onnx_path, model_dir / "1" / "model.onnx")
    (model_dir / "config.pbtxt").write_text(config_pbtxt(
        name, m.io.input_name, m.io.output_name, m.preprocessing.window_zyx, m.io.num_classes, max_batch_size))
    return model_dir
