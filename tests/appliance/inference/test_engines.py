import numpy as np
import pytest

from appliance.bundle import load_bundle
from appliance.engines.base import Engine
from appliance.engines.onnxruntime import CPU, OrtEngine
from appliance.engines.select import EngineConfig, candidates, select_engine
from appliance.engines.tensorrt import Profile, plan_path
from appliance.errors import EngineError

from tests.appliance.inference.inference_helpers import conv_model, make_bundle


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "conv.onnx"
    return conv_model(path, np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, -3.0]))


@pytest.mark.parametrize("n", [1, 3, 5])
def test_ort_cpu_conv_gives_known_logits_for_any_batch(conv, n):
    engine = OrtEngine(conv, threads=1)
    assert isinstance(engine, Engine) and engine.name == "onnxruntime:CPUExecutionProvider"
    x = np.random.default_rng(n).random((n, 1, 16, 8, 8), dtype=np.float32)
    y = engine.run(x)
    assert y.shape == (n, 3, 16, 8, 8) and y.dtype == np.float32
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1e-6)
    np.testing.assert_allclose(y[:, 1], -2 * x[:, 0] + 1, atol=1e-6)
    np.testing.assert_allclose(y[:, 2], 0.5 * x[:, 0] - 3, atol=1e-6)


def test_ort_io_binding_and_micro_batches_match_plain_run(conv):
    x = np.random.default_rng(9).random((5, 1, 16, 8, 8), dtype=np.float32)
    plain = OrtEngine(conv, threads=1, io_binding=False, micro_batch=None).run(x)
    bound = OrtEngine(conv, threads=1, io_binding=True).run(x)
    split = OrtEngine(conv, threads=1, micro_batch=2).run(x)
    assert OrtEngine(conv).micro_batch == 1  # CPU default: one window per session call
    np.testing.assert_array_equal(plain, bound)
    np.testing.assert_array_equal(plain, split)


def test_ort_errors_are_typed(conv, tmp_path):
    with pytest.raises(EngineError, match="not found"):
        OrtEngine(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(EngineError, match="cannot load"):
        OrtEngine(tmp_path / "junk.onnx")
    with pytest.raises(EngineError, match="no input"):
        OrtEngine(conv, input_name="wrong")
    with pytest.raises(EngineError, match="not available"):
        OrtEngine(conv, providers=["CUDAExecutionProvider", CPU])
    with pytest.raises(EngineError, match=r"\(N, 1, D, H, W\)"):
        OrtEngine(conv).run(np.zeros((1, 2, 4, 4, 4), np.float32))


def test_automatic_choice_order():
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert candidates("auto", cpu_only, False) == ["cpu"]
    assert candidates("auto", gpu, True) == ["tensorrt", "ort-tensorrt", "cuda", "cpu"]
    assert candidates("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], False) == ["cuda", "cpu"]
    assert candidates("cuda", cpu_only, False) == ["cuda"]
    with pytest.raises(EngineError, match="unknown engine kind"):
        candidates("fpga", cpu_only, False)


def test_select_on_this_machine_falls_back_to_cpu_and_explicit_gpu_fails_clearly(tmp_path):
    bundle = load_bundle(make_bundle(tmp_path / "b"))
    sel = select_engine(bundle)
    assert sel.engine.name == "onnxruntime:CPUExecutionProvider"
    with pytest.raises(EngineError, match="CUDAExecutionProvider"):
        select_engine(bundle, EngineConfig(kind="cuda"))
    with pytest.raises(EngineError, match="TensorRT|tensorrt|cuda"):
        select_engine(bundle, EngineConfig(kind="tensorrt"))
    with pytest.raises(EngineError, match="triton_url"):
        select_engine(bundle, EngineConfig(kind="triton"))


def test_tensorrt_profile_and_cache_naming(tmp_path, conv):
    p = Profile((16, 128, 128), 1, 4, 8)
    assert p.shapes() == ((1, 1, 16, 128, 128), (4, 1, 16, 128, 128), (8, 1, 16, 128, 128))
    opts = p.ort_provider_options("image", tmp_path, fp16=True)
    assert opts["trt_profile_opt_shapes"] == "image:4x1x16x128x128"
    assert opts["trt_engine_cache_enable"] is True and opts["trt_engine_cache_path"] == str(tmp_path)
    with pytest.raises(EngineError):
        Profile((16, 128, 128), 4, 2, 8)
    a = plan_path(conv, tmp_path, p, True, "H100/10.0")
    assert a == plan_path(conv, tmp_path, p, True, "H100/10.0")
    assert a != plan_path(conv, tmp_path, p, False, "H100/10.0") != plan_path(conv, tmp_path, p, True, "A2/10.0")


def test_triton_client_with_fake_server():
    from appliance.engines.triton import TritonEngine

    class Input:
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, shape, dtype

        def set_data_from_numpy(self, x, binary_data=True):
            self.data = x

    class Output:
        def __init__(self, name, binary_data=True):
            self.name = name

    class Module:
        InferInput, InferRequestedOutput = Input, Output

    class Result:
        def __init__(self, y):
            self.y = y

        def as_numpy(self, name):
            return self.y if name == "logits" else None

    class Client:
        module = Module

        def is_model_ready(self, name, version):
            return name == "wbspine"

        def infer(self, name, inputs, model_version="", outputs=()):
            assert inputs[0].name == "image" and inputs[0].dtype == "FP32"
            return Result(np.concatenate([inputs[0].data, -inputs[0].data], axis=1))

    engine = TritonEngine("fake:8000", "wbspine", input_name="image", output_name="logits", client=Client())
    x = np.ones((2, 1, 4, 4, 4), np.float32)
    assert engine.run(x).shape == (2, 2, 4, 4, 4)
    with pytest.raises(EngineError, match="no ready model"):
        TritonEngine("fake:8000", "other", input_name="image", output_name="logits", client=Client())
