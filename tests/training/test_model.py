"""Residual 3D U-Net: deep-supervision outputs, eval output, ONNX parity, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

import torch  # the train extra; `make test` installs it

from training.config import load_config
from training.model import ResUNet3d, build_model, count_parameters


def _model(width=4, **kw):
    torch.manual_seed(0)
    return ResUNet3d(num_classes=4, width=width, **kw)


def test_training_mode_returns_four_depths_coarsest_first():
    m = _model().train()
    outs = m(torch.randn(2, 1, 16, 32, 48))
    assert [tuple(o.shape) for o in outs] == [
        (2, 4, 4, 4, 6), (2, 4, 8, 8, 12), (2, 4, 16, 16, 24), (2, 4, 16, 32, 48)]


def test_eval_mode_returns_full_resolution_logits_only():
    m = _model().eval()
    with torch.no_grad():
        out = m(torch.randn(1, 1, 16, 40, 24))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 4, 16, 40, 24)


def test_residual_blocks_and_no_z_pooling_at_first_level():
    m = _model()
    assert m.strides[0] == (1, 2, 2)
    assert any(b.skip is not None for stage in m.encoders for b in stage)
    assert count_parameters(build_model(load_config().semantic_dict()["model"], 4)) > count_parameters(m)


def test_onnx_export_matches_onnxruntime(tmp_path):
    import onnx  # noqa: F401  (the train extra)
    import onnxruntime as ort

    m = _model(width=4).eval()
    x = torch.randn(2, 1, 16, 32, 48)
    path = tmp_path / "model.onnx"
    torch.onnx.export(m, (x,), str(path), input_names=["image"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"image": {0: "n", 3: "h", 4: "w"}, "logits": {0: "n", 3: "h", 4: "w"}},
                      dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((2, 1, 16, 32, 48), (1, 1, 16, 64, 40)):
        xi = torch.randn(*shape)
        with torch.no_grad():
            ref = m(xi).numpy()
        got = sess.run(None, {"image": xi.numpy()})[0]
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) <= 1e-4
