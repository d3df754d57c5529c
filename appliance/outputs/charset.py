"""The character set every result object declares: ISO_IR 192, Unicode in UTF-8
(PS3.3 C.12.1.1.2, Table C.12-5; PS3.5 6.1.2.5.3).

Our own text holds characters outside the default repertoire (ASCII): measurement
warnings and reasons say "±2.5°", "mm³", "≥", "C2–L5". Under the default repertoire
pydicom writes them as "?" (and dciodvfy and DCMTK reject the value), and Latin-1
(ISO_IR 100) has no "≥" or "–". UTF-8 holds every character, so text is never lost.
Values copied from the source series (patient name, study description) were decoded by
pydicom from the source's own Specific Character Set and are re-encoded in UTF-8.
"""

from __future__ import annotations

#: Specific Character Set (0008,0005) of every object :mod:`appliance.outputs` writes.
SPECIFIC_CHARACTER_SET = "ISO_IR 192"
