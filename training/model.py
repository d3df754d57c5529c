"""The paper's residual 3D U-Net (JoVE 67781), sized by :class:`training.config.ModelConfig`.

Input ``(N, 1, 16, H, W)``; ``H`` and ``W`` multiples of the in-plane downsampling.
In training mode ``forward`` returns the logits at the four depths, coarsest first
(``[out_0, out_1, out_2, out_3]``, ``out_3`` at full resolution) for the paper's deep
supervision; in eval mode (and so in an ONNX export) only the full-resolution logits
``(N, K, 16, H, W)``. Only ONNX-friendly ops: Conv3d, InstanceNorm3d/BatchNorm3d/
GroupNorm, LeakyReLU, ConvTranspose3d, addition and concatenation.
"""

from __future__ import annotations

from training.torch_import import require_torch

torch = require_torch("The training model")
nn = torch.nn


def _norm(kind: str, channels: int):
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """conv-norm-act-conv-norm + projected skip, then act (He et al. 2016, in 3D)."""

    def __init__(self, cin: int, cout: int, stride=(1, 1, 1), norm: str = "instance") -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, cout)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.skip = None
        if cin != cout or tuple(stride) != (1, 1, 1):
            self.skip = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), _norm(norm, cout))

    def forward(self, x):
        identity = x if self.skip is None else self.skip(x)
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + identity)


def _stage(cin: int, cout: int, blocks: int, stride, norm: str):
    layers = [ResBlock(cin, cout, stride, norm)]
    layers += [ResBlock(cout, cout, (1, 1, 1), norm) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResUNet3d(nn.Module):
    def __init__(self, num_classes: int, width: int = 16, strides=((1, 2, 2), (2, 2, 2), (2, 2, 2)),
                 blocks_per_level: int = 1, norm: str = "instance", max_width: int = 256,
                 in_channels: int = 1) -> None:
        super().__init__()
        self.strides = [tuple(int(v) for v in s) for s in strides]
        widths = [min(width * 2 ** i, max_width) for i in range(len(self.strides) + 1)]
        self.encoders = nn.ModuleList([_stage(in_channels, widths[0], blocks_per_level, (1, 1, 1), norm)])
        for i, s in enumerate(self.strides):
            self.encoders.append(_stage(widths[i], widths[i + 1], blocks_per_level, s, norm))
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(self.strides))):
            s = self.strides[i]
            self.ups.append(nn.ConvTranspose3d(widths[i + 1], widths[i], kernel_size=s, stride=s, bias=False))
            self.decoders.append(_stage(2 * widths[i], widths[i], blocks_per_level, (1, 1, 1), norm))
        # heads: bottleneck, then each decoder level, coarsest first (the paper's 4 depths)
        head_widths = [widths[-1]] + [widths[i] for i in reversed(range(len(self.strides)))]
        self.heads = nn.ModuleList([nn.Conv3d(w, num_classes, 1) for w in head_widths])

    def forward(self, x):
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
        x = skips.pop()
        outputs = [self.heads[0](x)] if self.training else []
        for k, (up, dec) in enumerate(zip(self.ups, self.decoders)):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
            if self.training:
                outputs.append(self.heads[k + 1](x))
        if self.training:
            return outputs
        return self.heads[-1](x)


def build_model(model_config: dict, num_classes: int) -> ResUNet3d:
    """Model from a ``ModelConfig`` dump (as stored in checkpoints)."""
    return ResUNet3d(num_classes=num_classes, width=model_config["width"],
                     strides=model_config["strides"], blocks_per_level=model_config["blocks_per_level"],
                     norm=model_config["norm"], max_width=model_config["max_width"])


def deep_supervision_keys(model: ResUNet3d) -> set[str]:
    """State-dict keys of the coarse heads (all but the last): used only in training mode,
    so absent from an ONNX export and from weights recovered from one."""
    return {f"heads.{i}.{name}" for i, head in enumerate(model.heads[:-1]) for name, _ in head.named_parameters()}


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
