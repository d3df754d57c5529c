"""The external validators the output tests share: dicom3tools' dciodvfy and DCMTK's dsrdump."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from dicom_node.tools import dcmtk, dcmtk_command

#: Warnings we accept, with the reason (see appliance/outputs/codes.py):
#: dciodvfy knows only the standard coding schemes; 99WBSPINE is our private scheme
#: (PS3.16 8.2), declared in the SR's Coding Scheme Identification Sequence with its UID.
ALLOWED_WARNINGS = (
    re.compile(r"Unrecognized defined term <99WBSPINE> for value 1 of attribute <Coding Scheme Designator>"),
    re.compile(r"Unrecognized defined term <[0-9.]+> for value 1 of attribute <Coding Scheme UID>"),
)

#: The one message dsrdump may print: DCMTK 3.6.7 does not check values for their
#: character repertoire under UTF-8 (it still reads and prints them).
DSRDUMP_NOTES = ("W: The VR checker does not support this Specific Character Set: ISO_IR 192",)


def dciodvfy(path: Path) -> tuple[int, list[str], list[str]]:
    """(exit status, error lines, warning lines not in :data:`ALLOWED_WARNINGS`) of dciodvfy."""
    assert shutil.which("dciodvfy"), "dicom3tools dciodvfy is required"
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, timeout=60)
    lines = (run.stdout + run.stderr).decode("latin-1").splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")
                and not any(p.search(line) for p in ALLOWED_WARNINGS)]
    return run.returncode, errors, warnings


def dsrdump(path: Path) -> tuple[int, str, list[str]]:
    """(exit status, UTF-8 text of the dump, stderr lines not in :data:`DSRDUMP_NOTES`) of
    ``dsrdump`` run without options."""
    assert dcmtk("dsrdump"), "DCMTK dsrdump is required"
    run = subprocess.run([dcmtk_command("dsrdump"), str(path)], capture_output=True, timeout=30)
    messages = [line for line in run.stderr.decode("utf-8", "replace").splitlines()
                if line.strip() and line.strip() not in DSRDUMP_NOTES]
    return run.returncode, run.stdout.decode("utf-8", "replace"), messages
