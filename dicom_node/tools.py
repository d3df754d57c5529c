"""DCMTK's command-line tools, found on PATH past pynetdicom's look-alikes.

pynetdicom installs Python applications named like DCMTK's (``storescu``, ``storescp``,
``echoscu``, ``findscu``, ...) into the environment's ``bin``. With a virtual
environment activated they come first on PATH, but take other options (no ``-R``, no
``+B``), so a DCMTK command line fails against them. :func:`dcmtk` skips executables
that are Python scripts.
"""

from __future__ import annotations

import os
from pathlib import Path


def _python_script(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def dcmtk(name: str) -> str | None:
    """Absolute path of DCMTK's ``name`` on PATH, or None when only look-alikes (or
    nothing) are there."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(folder or ".") / name
        if path.is_file() and os.access(path, os.X_OK) and not _python_script(path):
            return str(path)
    return None


def dcmtk_command(name: str) -> str:
    """:func:`dcmtk`'s path, or the bare name (so a missing tool fails naming itself)."""
    return dcmtk(name) or name
