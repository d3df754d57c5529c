"""Serialized TensorRT engine for the bundle, built where a GPU and TensorRT exist.

Built with the TensorRT Python API from the bundle's ONNX model, with one optimisation
profile for the bundle's window (batch 1 … ``max_batch``, optimised for ``opt_batch``).
Where TensorRT or a CUDA GPU is missing, :func:`build_engine` returns ``None`` with the
reason, and the bundle stays valid without an engine (the appliance falls back to
ONNX Runtime CUDA or CPU). An engine is tied to the GPU model and TensorRT version it
was built with; the file name records both.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ExportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    window_zyx: tuple[int, int, int]
    input_name: str = "image"
    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8
    fp16: bool = True
    workspace_bytes: int = 2 << 30


def unavailable_reason() -> str | None:
    """Why no engine can be built here, or ``None`` when TensorRT and a GPU are present."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        return "the TensorRT Python package is not installed (install the 'gpu' extra)"
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as exc:  # TypeError/RuntimeError when no CUDA device or driver
        return f"TensorRT cannot create a builder (no usable CUDA GPU?): {exc}"
    if builder is None:
        return "TensorRT cannot create a builder (no usable CUDA GPU)"
    return None


def build_engine(onnx_path: str | Path, out_dir: str | Path, spec: EngineSpec) -> Path | None:
    """Build and serialise the engine; ``None`` (and a logged reason) when not possible."""
    reason = unavailable_reason()
    if reason is not None:
        log.warning("no TensorRT engine: %s; the bundle stays valid without one", reason)
        return None
    trt = importlib.import_module("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT ≥ 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {Path(onnx_path).name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    if spec.fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = lambda n: (n, 1) + tuple(spec.window_zyx)  # noqa: E731
    profile.set_shape(spec.input_name, shape(spec.min_batch), shape(spec.opt_batch), shape(spec.max_batch))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)")
    import torch  # only to name the GPU; export runs with the train extra

    gpu = torch.cuda.get_device_name(0).replace(" ", "_") if torch.cuda.is_available() else "gpu"
    path = Path(out_dir) / f"model.{gpu}.trt{trt.__version__}.plan"
    path.write_bytes(bytes(plan))
    return path
