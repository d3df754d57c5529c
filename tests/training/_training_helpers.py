"""Helpers shared by the training tests (importable from spawned DDP workers)."""

from __future__ import annotations


def tiny_overrides(dataset, out, **extra) -> list[str]:
    """A config that trains in seconds on 2 shared cores: 5 mm voxels, 32² crops, width 4."""
    values = {
        "data.dataset": f'"{dataset}"',
        "data.working_spacing_mm": "[5.0, 5.0, 5.0]",
        "data.patch_xy": 32,
        "data.windows_per_case": 2,
        "model.width": 4,
        "optim.lr": 1e-3,
        "train.epochs": 2,
        "train.batch_size": 2,
        "train.val_every": 1,
        "data.inference_overlap_slices": 0,
        "run.out": f'"{out}"',
        "run.num_workers": 0,
        "run.progress": "false",
        "run.torch_threads": 1,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]
