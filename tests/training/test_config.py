"""Config: paper defaults, file + overrides, stable hash, the default file."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from training.config import Config, config_hash, load_config

DEFAULT_TOML = Path(__file__).resolve().parents[2] / "training" / "configs" / "default.toml"


def test_defaults_are_the_papers():
    c = load_config()
    assert c.optim.lr == 1e-5 and c.optim.lr_gamma == 0.8 and c.optim.lr_step_epochs == 100
    assert c.optim.alpha == 0.8 and c.optim.alpha_gamma == 0.8 and c.optim.alpha_step_epochs == 30
    assert c.train.epochs == 500 and c.data.window_slices == 16
    assert c.data.t_range == (1000.0, 3000.0) and c.augment.brightness_range == (0.8, 1.2)
    assert c.model.depths == 4


def test_default_file_equals_built_in_defaults():
    assert load_config(DEFAULT_TOML) == Config()


def test_overrides_and_hash(tmp_path):
    base = load_config()
    c = load_config(None, ["optim.lr=3e-4", "train.epochs=20", 'run.out="/tmp/x"', "data.patch_xy=64"])
    assert c.optim.lr == 3e-4 and c.train.epochs == 20 and str(c.run.out) == "/tmp/x"
    assert config_hash(base) == config_hash(load_config())  # stable
    assert config_hash(base) != config_hash(c)
    run_only = load_config(None, ['run.out="/elsewhere"', "run.num_workers=0"])
    assert config_hash(run_only) == config_hash(base)  # where/how fast is not semantic
    f = tmp_path / "c.toml"
    f.write_text("[optim]\nlr = 1e-3\n[model]\nwidth = 8\n")
    c = load_config(f, ["model.width=4"])
    assert c.optim.lr == 1e-3 and c.model.width == 4


@pytest.mark.parametrize("bad", ["optim.lr", "optim.nonexistent=1", "data.patch_xy=30", "model.norm=\"x\""])
def test_bad_overrides_are_refused(bad):
    with pytest.raises(ConfigError):
        load_config(None, [bad])
