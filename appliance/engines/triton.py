"""A Triton Inference Server client engine (HTTP), for sites that serve the model centrally.

The model repository is generated from the same bundle by the export step (issue 4);
this client only needs the server URL, the model name and the manifest's input/output
tensor names.
"""

from __future__ import annotations

import numpy as np

from appliance.engines.base import check_batch
from appliance.errors import EngineError


class TritonEngine:
    def __init__(self, url: str, model_name: str, *, input_name: str, output_name: str,
                 model_version: str = "", timeout_s: float = 60.0, client=None) -> None:
        if client is None:
            try:
                import tritonclient.http as httpclient
            except ImportError as exc:
                raise EngineError("the Triton engine needs 'tritonclient[http]' (pip install 'tritonclient[http]')") from exc
            client = httpclient.InferenceServerClient(url=url, connection_timeout=timeout_s,
                                                      network_timeout=timeout_s)
            self._http = httpclient
        else:  # injected (tests): must provide the tritonclient.http API subset we use
            self._http = client.module
        self.client = client
        self.model_name, self.model_version = model_name, model_version
        self.input_name, self.output_name = input_name, output_name
        self.name = f"triton:{url}/{model_name}"
        try:
            ready = client.is_model_ready(model_name, model_version)
        except Exception as exc:
            raise EngineError(f"Triton server at {url} is not reachable: {exc}") from exc
        if not ready:
            raise EngineError(f"Triton server at {url} has no ready model {model_name!r}")

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = check_batch(batch)
        inp = self._http.InferInput(self.input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        out = self._http.InferRequestedOutput(self.output_name, binary_data=True)
        try:
            result = self.client.infer(self.model_name, [inp], model_version=self.model_version, outputs=[out])
        except Exception as exc:
            raise EngineError(f"Triton inference failed: {exc}") from exc
        y = result.as_numpy(self.output_name)
        if y is None:
            raise EngineError(f"Triton returned no output {self.output_name!r}")
        return np.asarray(y, dtype=np.float32)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover
            pass
