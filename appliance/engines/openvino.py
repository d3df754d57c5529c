"""OpenVINO engine: the bundle's ONNX model on the CPU through Intel's OpenVINO runtime.

Why a second CPU engine: the U-Net's full-resolution layers are 3D convolutions with
8–16 channels. ONNX Runtime runs them as im2col + SGEMM with M = 8 output rows, which
is memory-bound (measured 74–79 GFLOP/s on the 2-core box, 22–26 % of its matmul
peak); OpenVINO's oneDNN kernels convolve directly in blocked channel layouts and ran
the same windows about 1.8× faster in FP32 (``tests/benchmarks/bench_engines.py``).

The model is compiled for a static input shape (one compile per window shape, cached),
which is what the CPU plugin optimises best. Precision is FP32 unless asked otherwise:
on CPUs with AMX/AVX512-BF16 OpenVINO would silently pick BF16, which changes logits by
up to ~1 and therefore needs its own validation (``precision="bf16"``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from appliance.engines.base import check_batch
from appliance.errors import EngineError

log = logging.getLogger(__name__)

Precision = Literal["f32", "bf16"]
#: compiled shapes kept per engine (the sliding window uses one; a safety bound for odd callers)
MAX_COMPILED_SHAPES = 4
#: windows in flight at once, each on its share of the threads. Two single-thread streams
#: were never slower than one two-thread stream on the 2-core box (FP32, best of 3-5: 67.1 vs
#: 69.1 ms/window quiet, 86.9 vs 95.6 loaded): 8-16-channel instance norms parallelise poorly.
DEFAULT_STREAMS = 2


def _ov():
    try:
        import openvino
    except ImportError as exc:
        raise EngineError("openvino is not installed (pip install openvino)") from exc
    return openvino


def available() -> bool:
    """True when the OpenVINO runtime imports and offers a CPU device."""
    try:
        return "CPU" in _ov().Core().available_devices
    except Exception:  # any runtime failure means "not usable here"
        return False


class OpenVinoEngine:
    """``run(batch) -> logits`` on OpenVINO's CPU plugin.

    A batch is cut into ``micro_batch`` windows per infer request (default 1: the smallest
    activation memory), and up to ``streams`` requests run at once (default
    :data:`DEFAULT_STREAMS`, at most ``threads``); ``threads`` defaults to the CPUs this
    process may use.
    """

    def __init__(self, model_path: str | Path, *, threads: int | None = None, precision: Precision = "f32",
                 input_name: str | None = None, output_name: str | None = None, micro_batch: int = 1,
                 streams: int | None = None, device: str = "CPU") -> None:
        from appliance.engines.onnxruntime import cpu_threads

        ov = _ov()
        model_path = Path(model_path)
        if not model_path.is_file():
            raise EngineError(f"model file not found: {model_path}")
        if precision not in ("f32", "bf16"):
            raise EngineError(f"OpenVINO precision must be f32 or bf16, got {precision!r}")
        if micro_batch < 1:
            raise EngineError(f"micro_batch must be >= 1, got {micro_batch}")
        if streams is not None and streams < 1:
            raise EngineError(f"streams must be >= 1, got {streams}")
        self.core = ov.Core()
        if device not in self.core.available_devices:
            raise EngineError(f"OpenVINO device {device!r} not available (has {self.core.available_devices})")
        if precision == "bf16":
            caps = self.core.get_property(device, "OPTIMIZATION_CAPABILITIES")
            if "BF16" not in caps:
                raise EngineError(f"this CPU has no BF16 support in OpenVINO (capabilities: {list(caps)})")
        try:
            self.model = self.core.read_model(str(model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise EngineError(f"cannot load {model_path.name} in OpenVINO: {exc}") from exc
        inputs = [n for i in self.model.inputs for n in i.get_names()]
        outputs = [n for o in self.model.outputs for n in o.get_names()]
        self.input_name = input_name or self.model.inputs[0].get_any_name()
        self.output_name = output_name or self.model.outputs[0].get_any_name()
        if self.input_name not in inputs:
            raise EngineError(f"model has no input {self.input_name!r} (has {inputs})")
        if self.output_name not in outputs:
            raise EngineError(f"model has no output {self.output_name!r} (has {outputs})")
        self.device, self.precision, self.micro_batch = device, precision, micro_batch
        self.threads = threads or cpu_threads()
        self.streams = min(streams or DEFAULT_STREAMS, self.threads)
        # no thread pinning: the node's receive, blending and meshing threads share these cores
        # (pinned, a window took 421 ms instead of 322 ms on the 2-core box under load)
        self.properties = {"NUM_STREAMS": self.streams, "ENABLE_CPU_PINNING": False,
                           "INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": precision}
        self._compiled: dict[tuple[int, ...], tuple[list, object]] = {}
        self.name = f"openvino:{device}:{precision}"

    def _request(self, shape: tuple[int, ...]):
        """The infer request and output port compiled for one static input ``shape``."""
        hit = self._compiled.get(shape)
        if hit is not None:
            return hit
        if len(self._compiled) >= MAX_COMPILED_SHAPES:
            self._compiled.pop(next(iter(self._compiled)))
        model = self.model.clone()
        try:
            model.reshape({self.input_name: list(shape)})
            compiled = self.core.compile_model(model, self.device, self.properties)
        except Exception as exc:
            raise EngineError(f"OpenVINO cannot compile the model for input {shape}: {exc}") from exc
        # one request per stream; no AsyncInferQueue: its Python callbacks run on OpenVINO's
        # threads and were seen to abort the process ("Resource deadlock avoided") on teardown
        hit = ([compiled.create_infer_request() for _ in range(self.streams)], compiled.output(self.output_name))
        self._compiled[shape] = hit
        log.debug("OpenVINO compiled %s for %s", self.name, shape)
        return hit

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = check_batch(batch)
        m = self.micro_batch
        try:
            out = self._run_chunks([x[i:i + m] for i in range(0, x.shape[0], m)])
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"OpenVINO failed on a batch of shape {x.shape}: {exc}") from exc
        return out[0] if len(out) == 1 else np.concatenate(out, axis=0)

    def _run_chunks(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Chunks run ``streams`` at a time, each on its own request (the last chunk of a
        batch may have another shape: it runs on its own compiled model)."""
        out: list[np.ndarray] = []
        k = 0
        while k < len(chunks):
            requests, port = self._request(tuple(chunks[k].shape))
            group = []
            for request in requests:
                if k == len(chunks) or (group and chunks[k].shape != chunks[k - 1].shape):
                    break
                request.start_async({self.input_name: chunks[k]})
                group.append(request)
                k += 1
            for request in group:
                request.wait()
                # the request's output buffer is reused by its next call: copy it out
                out.append(np.array(request.get_tensor(port).data, dtype=np.float32, copy=True))
        return out

    def close(self) -> None:
        self._compiled.clear()
