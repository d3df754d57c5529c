"""Fixtures of the training tests: a tiny phantom dataset and a tiny, fast config."""

from __future__ import annotations

import pytest

import torch  # noqa: F401  (the train extra; `make test` installs it)

from tests.training._training_helpers import tiny_overrides


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """4 small phantoms: 2 train (one without pelvis/heads annotation), 1 val, 1 test."""
    from training.dataset import from_phantoms

    root = tmp_path_factory.mktemp("tiny") / "dataset"
    return from_phantoms(root, 4, seed=300, size="small", val_fraction=0.25, test_fraction=0.25,
                         partial=True)


@pytest.fixture()
def tiny_config(tiny_dataset, tmp_path):
    from training.config import load_config

    def make(out="run", **extra):
        return load_config(None, tiny_overrides(tiny_dataset.root, tmp_path / out, **extra))

    return make
