"""The edge install has no torch: the appliance, the DICOM node and the CLI must not load it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training.torch_import import require_torch
from appliance.errors import MissingExtraError

CHECK = (
    "import sys\n"
    "{body}\n"
    "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
    "assert not bad, bad\n"
    "print('ok')\n"
)


def _run(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHECK.format(body=body)], capture_output=True, text=True)


def test_importing_appliance_and_dicom_node_loads_no_torch():
    body = ("import appliance, dicom_node, appliance.cli, appliance.phantom, appliance.volume, "
            "appliance.measure.definitions, appliance.phantom.dicom_series\n"
            "from appliance.phantom import generate_study\n"
            "generate_study(1, 'small')")
    result = _run(body)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_wbspine_help_loads_no_torch():
    body = ("from appliance.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "try:\n    main(['phantom', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0")
    result = _run(body)
    assert result.returncode == 0, result.stderr
    assert "phantom" in result.stdout


def test_a_torch_command_names_the_extra_when_torch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(MissingExtraError) as info:
        require_torch("Training")
    message = str(info.value)
    assert "wbspine[train]" in message and "Training" in message and "torch" in message


def test_the_base_install_set_does_not_require_torch():
    from importlib.metadata import requires

    base = [r for r in (requires("wbspine") or []) if "extra ==" not in r]
    assert base, "wbspine is not installed as a distribution (pip install -e .)"
    assert not [r for r in base if r.lower().startswith("torch")], base
    train = [r for r in requires("wbspine") if 'extra == "train"' in r]
    assert any(r.startswith("torch==2.13.0") for r in train), train
