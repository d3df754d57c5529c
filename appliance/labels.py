"""Label convention shared by every part of wbspine (a project-wide contract).

0 background, 1 vertebral bodies, 2 pelvis including the sacrum, 3 femoral heads.
Only vertebral *bodies* are labelled (no posterior elements), as in JoVE 67781.
"""

from __future__ import annotations

from enum import IntEnum


class Label(IntEnum):
    BACKGROUND = 0
    VERTEBRAL_BODIES = 1
    PELVIS = 2
    FEMORAL_HEADS = 3


#: Human-readable names, also used as keys in JSON files.
LABEL_NAMES: dict[int, str] = {
    Label.BACKGROUND: "background",
    Label.VERTEBRAL_BODIES: "vertebral_bodies",
    Label.PELVIS: "pelvis",
    Label.FEMORAL_HEADS: "femoral_heads",
}

#: Structures (foreground labels) in label order.
STRUCTURES: tuple[Label, ...] = (Label.VERTEBRAL_BODIES, Label.PELVIS, Label.FEMORAL_HEADS)

#: Vertebral levels the phantom models and the measurements name, cranial to caudal.
CERVICAL = tuple(f"C{i}" for i in range(2, 8))
THORACIC = tuple(f"T{i}" for i in range(1, 13))
LUMBAR = tuple(f"L{i}" for i in range(1, 6))
LEVELS: tuple[str, ...] = CERVICAL + THORACIC + LUMBAR
