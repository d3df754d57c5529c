"""FP16 variant of the exported model, for GPUs (ONNX Runtime CUDA; TensorRT builds its
own FP16 engine from the FP32 ONNX).

Weights and activations become float16 with ONNX Runtime's converter
(``onnxruntime.transformers.float16``); the input and output stay float32
(``keep_io_types``) so the appliance feeds both variants the same arrays. Instance
normalisation is kept in float32 (``op_block_list``): its mean and variance are sums
over a whole window (~260 k voxels), where float16 accumulation is the weakest link.
The variant gets its own parity figures against PyTorch FP32 on the same windows.
"""

from __future__ import annotations

from pathlib import Path

from appliance.errors import ExportError

#: Ops left in float32 (see the module docstring).
FP32_OPS = ("InstanceNormalization",)


def convert_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Write the float16 twin of ``onnx_path`` (float32 I/O) and check it with onnx.checker."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel
    except ImportError as exc:  # pragma: no cover - both are install requirements of export
        raise ExportError(f"FP16 conversion needs onnx and onnxruntime: {exc}") from exc
    model = onnx.load(str(onnx_path))
    half = convert_float_to_float16(model, keep_io_types=True,
                                    op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS])
    OnnxModel(half).topological_sort()  # the converter appends the I/O casts at the end
    onnx.checker.check_model(half)
    out = Path(out_path)
    onnx.save(half, str(out))
    return out
