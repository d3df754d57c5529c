"""TensorRT engines: the TensorRT Python API (build/load a serialized plan with an
optimisation profile), or ONNX Runtime's TensorRT execution provider with an engine cache.

Neither can run without an NVIDIA GPU; on such a box the constructors raise
:class:`EngineError` with the reason, and :mod:`appliance.engines.select` falls back.
The pure-Python parts (profile shapes, cache paths, option dictionaries) are tested
without a GPU.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.engines.base import check_batch
from appliance.errors import EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """Optimisation profile over the batch axis for a fixed window ``(D, H, W)``."""

    window_zyx: tuple[int, int, int]
    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise EngineError(f"need 1 <= min <= opt <= max batch, got {self.min_batch}/{self.opt_batch}/"
                              f"{self.max_batch}")
        if len(self.window_zyx) != 3 or min(self.window_zyx) < 1:
            raise EngineError(f"bad window {self.window_zyx}")

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple((b, 1, *self.window_zyx) for b in (self.min_batch, self.opt_batch, self.max_batch))  # type: ignore[return-value]

    def ort_provider_options(self, input_name: str, cache_dir: Path, fp16: bool) -> dict[str, str | bool]:
        """Options for ``TensorrtExecutionProvider`` (explicit profile + engine cache)."""
        fmt = lambda shape: f"{input_name}:{'x'.join(str(n) for n in shape)}"  # noqa: E731
        mn, op, mx = self.shapes()
        return {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
            "trt_fp16_enable": fp16,
            "trt_profile_min_shapes": fmt(mn),
            "trt_profile_opt_shapes": fmt(op),
            "trt_profile_max_shapes": fmt(mx),
        }


def plan_path(onnx_path: Path, cache_dir: Path, profile: Profile, fp16: bool, device_name: str) -> Path:
    """Engine cache file name: tied to the ONNX bytes, the profile, precision and GPU model
    (a TensorRT plan is only valid on the GPU model and TensorRT version it was built for)."""
    h = hashlib.sha256(onnx_path.read_bytes())
    h.update(repr((profile, fp16, device_name)).encode())
    return cache_dir / f"{onnx_path.stem}-{h.hexdigest()[:16]}.plan"


def ort_tensorrt_engine(onnx_path: str | Path, profile: Profile, cache_dir: str | Path, *, fp16: bool = True,
                        input_name: str = "image", **kw):
    """ONNX Runtime with TensorRT first, CUDA then CPU as fallbacks for unsupported nodes."""
    from appliance.engines.onnxruntime import CPU, CUDA, TENSORRT, OrtEngine

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    opts = profile.ort_provider_options(input_name, cache, fp16)
    engine = OrtEngine(onnx_path, providers=[(TENSORRT, opts), CUDA, CPU], input_name=input_name, **kw)
    engine.name = f"onnxruntime:{engine.provider}"
    return engine


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError("the TensorRT Python package is not installed (install the 'gpu' extra "
                          "on a machine with an NVIDIA GPU)") from exc
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise EngineError("TensorRT needs the 'cuda-python' package for device memory") from exc
    return trt, cudart


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EngineError(f"CUDA runtime call failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def build_plan(onnx_path: str | Path, profile: Profile, *, fp16: bool = True, workspace_bytes: int = 2 << 30) -> bytes:
    """Build a serialized TensorRT engine from ONNX with one optimisation profile."""
    trt, _ = _import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {Path(onnx_path).name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt = builder.create_optimization_profile()
    name = network.get_input(0).name
    opt.set_shape(name, *profile.shapes())
    config.add_optimization_profile(opt)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError("TensorRT engine build failed (see the TensorRT log above)")
    return bytes(plan)


class TrtEngine:
    """A deserialized TensorRT plan run on one CUDA device (TensorRT 10 tensor API)."""

    def __init__(self, plan: bytes, profile: Profile, device_id: int = 0) -> None:
        trt, cudart = _import_tensorrt()
        self._trt, self._cudart = trt, cudart
        _check(cudart.cudaSetDevice(device_id))
        self.profile = profile
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineError("cannot deserialize the TensorRT plan (built for another GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        modes = {n: self.engine.get_tensor_mode(n) for n in names}
        self.input_name = next(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT)
        self.stream = _check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device ptr, bytes)
        self.name = "tensorrt"

    @classmethod
    def from_onnx(cls, onnx_path: str | Path, profile: Profile, cache_dir: str | Path, *, fp16: bool = True,
                  device_id: int = 0) -> "TrtEngine":
        trt, cudart = _import_tensorrt()
        _check(cudart.cudaSetDevice(device_id))
        props = _check(cudart.cudaGetDeviceProperties(device_id))
        device_name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        cache = Path(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        path = plan_path(Path(onnx_path), cache, profile, fp16, f"{device_name}/{trt.__version__}")
        if path.is_file():
            plan = path.read_bytes()
        else:
            log.info("building TensorRT engine %s (minutes, once per GPU model)", path.name)
            plan = build_plan(onnx_path, profile, fp16=fp16)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(plan)
            tmp.replace(path)
        return cls(plan, profile, device_id)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = check_batch(batch)
        if tuple(x.shape[2:]) != self.profile.window_zyx or not x.shape[0] <= self.profile.max_batch:
            raise EngineError(f"batch {x.shape} outside the engine's profile {self.profile}")
        cudart = self._cudart
        kind = cudart.cudaMemcpyKind
        self.context.set_input_shape(self.input_name, x.shape)
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out = np.empty(out_shape, dtype=np.float32)
        d_in = self._buffer(self.input_name, x.nbytes)
        d_out = self._buffer(self.output_name, out.nbytes)
        self.context.set_tensor_address(self.input_name, d_in)
        self.context.set_tensor_address(self.output_name, d_out)
        _check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, kind.cudaMemcpyHostToDevice, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise EngineError("TensorRT execution failed")
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, kind.cudaMemcpyDeviceToHost, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return out

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()


def profile_for(window_zyx: Sequence[int], batch_size: int) -> Profile:
    return Profile(tuple(int(n) for n in window_zyx), 1, batch_size, max(batch_size, 1))  # type: ignore[arg-type]
