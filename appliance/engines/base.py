"""The engine protocol: a batch of normalised windows in, logits out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Engine(Protocol):
    """``run(batch float32 (N, 1, D, H, W)) -> logits float32 (N, C, D, H, W)``.

    ``name`` says which backend/provider actually runs (e.g. ``"onnxruntime:CPUExecutionProvider"``),
    for logs and ``timing.json``. An engine is also a sliding-window predictor: pass
    ``engine.run``.
    """

    name: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def check_batch(batch: np.ndarray) -> np.ndarray:
    """Validate and return a C-contiguous float32 ``(N, 1, D, H, W)`` batch."""
    from appliance.errors import EngineError

    if batch.ndim != 5 or batch.shape[1] != 1 or batch.shape[0] < 1:
        raise EngineError(f"engine input must be (N, 1, D, H, W), got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)
