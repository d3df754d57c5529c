"""Rich phantoms carry their tissue map through the dataset, the case cache and the
training loop (issue 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import torch  # noqa: F401  (the train extra)

from tests.training._training_helpers import tiny_overrides


@pytest.fixture(scope="module")
def rich_dataset(tmp_path_factory):
    from training.dataset import from_phantoms

    root = tmp_path_factory.mktemp("rich") / "ds"
    return from_phantoms(root, 3, seed=310, size="small", val_fraction=1 / 3, test_fraction=0.0, anatomy="rich")


def test_rich_phantoms_write_their_tissue_maps(rich_dataset):
    manifest = json.loads((rich_dataset.root / "dataset.json").read_text())
    for case in manifest["cases"]:
        assert case["tissues"] == f"tissues/{case['id']}.nii.gz"
        assert case["provenance"]["anatomy"] == "rich"
        assert (rich_dataset.root / case["tissues"]).exists()


def test_classic_phantoms_keep_the_manifest_as_it_was(tmp_path):
    from training.dataset import from_phantoms

    data = from_phantoms(tmp_path / "ds", 2, seed=310, size="small", val_fraction=0.0, test_fraction=0.5)
    manifest = json.loads((data.root / "dataset.json").read_text())
    assert all("tissues" not in c for c in manifest["cases"])
    assert not (data.root / "tissues").exists()


def test_unknown_anatomy_is_refused_before_any_phantom(tmp_path):
    from appliance.errors import DatasetError
    from training.dataset import from_phantoms

    with pytest.raises(DatasetError, match="unknown anatomy"):
        from_phantoms(tmp_path / "ds", 2, anatomy="gothic")
    assert not (tmp_path / "ds").exists()


def test_prepared_cases_hold_the_tissue_map_on_the_label_grid_and_cache_it(rich_dataset, tmp_path):
    from appliance.phantom.tissues import labels_from_tissues
    from training.data import prepare_case

    case = rich_dataset.split("train")[0]
    fresh = prepare_case(rich_dataset, case, (5.0, 5.0, 5.0), tmp_path / "cache")
    cached = prepare_case(rich_dataset, case, (5.0, 5.0, 5.0), tmp_path / "cache")
    assert fresh.tissues is not None and fresh.tissues.shape == fresh.labels.shape
    assert np.array_equal(fresh.tissues, cached.tissues)
    agree = np.mean(labels_from_tissues(fresh.tissues) == fresh.labels)
    assert agree > 0.999  # both resampled with nearest neighbour from the same grid
    assert len(list((tmp_path / "cache").glob("*-tissues.npy"))) == 1


@pytest.mark.slow
def test_training_runs_with_domain_randomisation_on(rich_dataset, tmp_path):
    from training.config import load_config
    from training.loop import train

    cfg = load_config(None, tiny_overrides(rich_dataset.root, tmp_path / "run", **{
        "synth.probability": 1.0, "synth.cbct_probability": 1.0, "train.epochs": 2}))
    result = train(cfg)
    assert len(result.history) == 2
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert (result.out / "last.pt").exists()
