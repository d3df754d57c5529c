"""Choose an engine: automatically (TensorRT > ONNX Runtime CUDA > OpenVINO CPU > ONNX Runtime
CPU) or by configuration, with the reasons for every fallback logged."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from appliance.errors import EngineError

log = logging.getLogger(__name__)

EngineKind = Literal["auto", "tensorrt", "ort-tensorrt", "cuda", "openvino", "cpu", "triton"]
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "ort-tensorrt", "cuda", "openvino", "cpu")


@dataclass(frozen=True)
class EngineConfig:
    kind: EngineKind = "auto"
    threads: int | None = None           # CPU threads, ORT and OpenVINO (default: usable CPUs)
    batch_size: int = 4                  # windows per call (also the TensorRT opt profile)
    fp16: bool = True                    # GPU precision: TensorRT FP16, and the bundle's FP16 ONNX on ORT CUDA
    device_id: int = 0
    cache_dir: Path | None = None        # TensorRT engine cache (default: <bundle>/.trt-cache)
    triton_url: str | None = None
    triton_model: str | None = None
    io_binding: bool | None = None
    cpu_precision: str = "f32"           # OpenVINO: "f32", or "bf16" on CPUs with AMX/AVX512-BF16
    cpu_streams: int | None = None       # OpenVINO: windows in flight (default 2, at most threads)


@dataclass
class Selection:
    engine: object
    tried: list[tuple[str, str]] = field(default_factory=list)  # (kind, why it was not used)


def candidates(kind: str, ort_providers: Sequence[str], has_tensorrt_python: bool,
               has_openvino: bool = False) -> list[str]:
    """Engine kinds to try, in order, for a configured ``kind`` on this machine."""
    if kind == "auto":
        out = []
        if has_tensorrt_python:
            out.append("tensorrt")
        if "TensorrtExecutionProvider" in ort_providers:
            out.append("ort-tensorrt")
        if "CUDAExecutionProvider" in ort_providers:
            out.append("cuda")
        if has_openvino:
            out.append("openvino")
        out.append("cpu")
        return out
    if kind not in (*AUTO_ORDER, "triton"):
        raise EngineError(f"unknown engine kind {kind!r}; choose one of auto, {', '.join(AUTO_ORDER)}, triton")
    return [kind]


def _build(kind: str, bundle, config: EngineConfig):
    m = bundle.manifest
    names = dict(input_name=m.io.input_name, output_name=m.io.output_name)
    window = m.preprocessing.window_zyx
    cache = config.cache_dir or (bundle.root / ".trt-cache")
    if kind == "cpu":
        from appliance.engines.onnxruntime import OrtEngine
        return OrtEngine(bundle.onnx_path, threads=config.threads, io_binding=config.io_binding, **names)
    if kind == "openvino":
        from appliance.engines.openvino import OpenVinoEngine
        return OpenVinoEngine(bundle.onnx_path, threads=config.threads, precision=config.cpu_precision,
                              streams=config.cpu_streams, **names)
    if kind == "cuda":
        from appliance.engines.onnxruntime import cuda_engine
        onnx = (bundle.path("onnx_fp16") if config.fp16 else None) or bundle.onnx_path
        return cuda_engine(onnx, config.device_id, io_binding=config.io_binding, **names)
    if kind in ("tensorrt", "ort-tensorrt"):
        from appliance.engines import tensorrt as trt
        profile = trt.profile_for(window, config.batch_size)
        if kind == "ort-tensorrt":
            return trt.ort_tensorrt_engine(bundle.onnx_path, profile, cache, fp16=config.fp16, **names)
        plan = bundle.path("tensorrt_plan")
        if plan is not None:
            try:
                return trt.TrtEngine(plan.read_bytes(), profile, config.device_id)
            except EngineError as exc:  # plan for another GPU: rebuild into the cache
                log.warning("bundled TensorRT plan unusable (%s); building one", exc)
        return trt.TrtEngine.from_onnx(bundle.onnx_path, profile, cache, fp16=config.fp16,
                                       device_id=config.device_id)
    if kind == "triton":
        from appliance.engines.triton import TritonEngine
        if not config.triton_url:
            raise EngineError("the triton engine needs triton_url")
        return TritonEngine(config.triton_url, config.triton_model or m.model.name, **names)
    raise EngineError(f"unknown engine kind {kind!r}")  # pragma: no cover


def select_engine(bundle, config: EngineConfig = EngineConfig()) -> Selection:
    """Build the first engine that works; an explicitly configured kind never falls back."""
    from appliance.engines.onnxruntime import available_providers

    order = candidates(config.kind, available_providers(), importlib.util.find_spec("tensorrt") is not None,
                       importlib.util.find_spec("openvino") is not None)
    tried: list[tuple[str, str]] = []
    for kind in order:
        try:
            engine = _build(kind, bundle, config)
        except Exception as exc:  # runtimes raise their own types (no GPU, driver mismatch)
            if config.kind != "auto":
                if isinstance(exc, EngineError):
                    raise
                raise EngineError(f"engine {kind} cannot start: {exc}") from exc
            log.info("engine %s not used: %s", kind, exc)
            tried.append((kind, str(exc)))
            continue
        return Selection(engine, tried)
    raise EngineError("no inference engine could be created: " + "; ".join(f"{k}: {w}" for k, w in tried))
