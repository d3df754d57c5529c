"""``dicom_node.tools.dcmtk``: DCMTK's tools, not pynetdicom's look-alikes of the same name."""

from __future__ import annotations

import subprocess

from dicom_node.tools import dcmtk, dcmtk_command


def _exe(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_skips_python_look_alikes(tmp_path, monkeypatch):
    _exe(tmp_path / "venv" / "storescu", "#!/opt/venv/bin/python3\nfrom pynetdicom.apps.storescu import main\n")
    real = _exe(tmp_path / "usr" / "storescu", "#!/bin/sh\necho dcmtk\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'venv'}:{tmp_path / 'usr'}")
    assert dcmtk("storescu") == str(real)
    monkeypatch.setenv("PATH", str(tmp_path / "venv"))
    assert dcmtk("storescu") is None
    assert dcmtk_command("storescu") == "storescu"  # a missing tool fails naming itself


def test_finds_the_installed_dcmtk():
    exe = dcmtk("storescu")
    assert exe is not None, "DCMTK storescu is required"
    run = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert "$dcmtk: storescu" in run.stdout + run.stderr
