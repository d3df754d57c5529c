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


def _openvino_engine(*args, **kwargs):
    from appliance.engines.openvino import OpenVinoEngine

    return OpenVinoEngine(*args, **kwargs)


@pytest.mark.parametrize("make,name", [(OrtEngine, "onnxruntime:CPUExecutionProvider"),
                                       (_openvino_engine, "openvino:CPU:f32")], ids=["onnxruntime", "openvino"])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_cpu_engines_give_known_logits_for_any_batch(conv, n, make, name):
    engine = make(conv, threads=1)
    assert isinstance(engine, Engine) and engine.name == name
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


@pytest.mark.parametrize("make", [OrtEngine, _openvino_engine], ids=["onnxruntime", "openvino"])
def test_engine_errors_are_typed(make, conv, tmp_path):
    with pytest.raises(EngineError, match="not found"):
        make(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(EngineError, match="cannot load"):
        make(tmp_path / "junk.onnx")
    with pytest.raises(EngineError, match="no input"):
        make(conv, input_name="wrong")
    with pytest.raises(EngineError, match="no output"):
        make(conv, output_name="wrong")
    with pytest.raises(EngineError, match=r"\(N, 1, D, H, W\)"):
        make(conv).run(np.zeros((1, 2, 4, 4, 4), np.float32))


def test_ort_missing_provider_is_named(conv):
    with pytest.raises(EngineError, match="not available"):
        OrtEngine(conv, providers=["CUDAExecutionProvider", CPU])


def test_automatic_choice_order():
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert candidates("auto", cpu_only, False) == ["cpu"]
    assert candidates("auto", cpu_only, False, has_openvino=True) == ["openvino", "cpu"]
    assert candidates("auto", gpu, True) == ["tensorrt", "ort-tensorrt", "cuda", "cpu"]
    assert candidates("auto", gpu, True, True) == ["tensorrt", "ort-tensorrt", "cuda", "openvino", "cpu"]
    assert candidates("openvino", cpu_only, False) == ["openvino"]
    assert candidates("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], False) == ["cuda", "cpu"]
    assert candidates("cuda", cpu_only, False) == ["cuda"]
    with pytest.raises(EngineError, match="unknown engine kind"):
        candidates("fpga", cpu_only, False)


def test_select_on_this_machine_falls_back_to_cpu_and_explicit_gpu_fails_clearly(tmp_path):
    bundle = load_bundle(make_bundle(tmp_path / "b"))
    sel = select_engine(bundle)
    # the appliance installs OpenVINO: it is the automatic CPU choice, ONNX Runtime on request
    assert sel.engine.name == "openvino:CPU:f32"
    assert [k for k, _ in sel.tried] == []
    assert select_engine(bundle, EngineConfig(kind="cpu")).engine.name == "onnxruntime:CPUExecutionProvider"
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


def test_openvino_compiles_each_window_shape_once(conv):
    from appliance.engines.openvino import OpenVinoEngine

    engine = OpenVinoEngine(conv, threads=1)
    x = np.random.default_rng(3).random((3, 1, 16, 8, 8), dtype=np.float32)
    y = engine.run(x)
    np.testing.assert_allclose(y, OrtEngine(conv, threads=1).run(x), atol=1e-5)
    # a second window shape compiles once more and is cached; the first stays valid
    z = np.random.default_rng(7).random((1, 1, 8, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(engine.run(z)[:, 2], 0.5 * z[:, 0] - 3, atol=1e-5)
    assert len(engine._compiled) == 2
    np.testing.assert_array_equal(engine.run(x), y)


def test_openvino_streams_run_chunks_concurrently_in_order(conv):
    """Two streams, micro-batches of 2, 5 windows: the odd last chunk has its own shape."""
    from appliance.engines.openvino import OpenVinoEngine

    x = np.random.default_rng(5).random((5, 1, 16, 8, 8), dtype=np.float32)
    engine = OpenVinoEngine(conv, threads=2, streams=2, micro_batch=2)
    assert engine.streams == 2 and OpenVinoEngine(conv, threads=1, streams=4).streams == 1
    y = engine.run(x)
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1e-6)  # window order kept
    np.testing.assert_allclose(y, OpenVinoEngine(conv, threads=1).run(x), atol=1e-5)
    np.testing.assert_array_equal(engine.run(x), y)


def test_openvino_matches_ort_on_the_default_model():
    """The shipped U-Net through both CPU engines: FP32 logits agree to float rounding."""
    from appliance.bundle import DEFAULT_BUNDLE_DIR
    from appliance.engines.openvino import OpenVinoEngine

    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    window = bundle.manifest.preprocessing.window_zyx
    x = np.random.default_rng(3).normal(0.0, 0.3, (2, 1, *window)).astype(np.float32)
    ov = OpenVinoEngine(bundle.onnx_path, threads=2).run(x)
    ort = OrtEngine(bundle.onnx_path, threads=2).run(x)
    assert ov.shape == ort.shape
    assert float(np.abs(ov - ort).max()) < 1e-2 * max(1.0, float(np.abs(ort).max()))
    assert (ov.argmax(1) == ort.argmax(1)).mean() > 0.9999


def test_openvino_settings_are_checked(conv):
    from appliance.engines.openvino import OpenVinoEngine

    with pytest.raises(EngineError, match="precision"):
        OpenVinoEngine(conv, precision="int4")
    with pytest.raises(EngineError, match="streams"):
        OpenVinoEngine(conv, streams=0)
    with pytest.raises(EngineError, match="device"):
        OpenVinoEngine(conv, device="NPU")


def test_openvino_bf16_runs_close_to_fp32_or_is_refused_clearly(conv):
    """BF16 only on request, and only where the CPU has it (AMX / AVX512-BF16)."""
    import openvino as ov

    from appliance.engines.openvino import OpenVinoEngine

    x = np.random.default_rng(4).random((2, 1, 16, 8, 8), dtype=np.float32)
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(EngineError, match="BF16"):
            OpenVinoEngine(conv, precision="bf16")
        return
    engine = OpenVinoEngine(conv, precision="bf16")
    assert engine.name == "openvino:CPU:bf16"
    y = engine.run(x)
    np.testing.assert_allclose(y, OpenVinoEngine(conv).run(x), rtol=2e-2, atol=3e-2)
