"""Tissue classes of the phantom's label map, and the fixed grey values of its own look.

The phantom is drawn as a *tissue map* first (one uint8 code per voxel) and rendered
afterwards, the design of SynthSeg (Billot et al., Medical Image Analysis 2023): the
phantom's own CBCT look is one rendering (:func:`classic_lut` and
``appliance.phantom.appearance``); training draws others from the same map
(``training.synth``), so the network has to learn shape, not our grey values.

Codes that differ only in which structure they belong to (the cortex of a rib and of a
vertebral body) share an *appearance group*: a renderer gives them the same grey value,
because a scanner cannot tell them apart either.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from appliance.labels import Label
from appliance.phantom.params import PhantomParams


class Tissue(IntEnum):
    AIR = 0
    FAT = 1
    SOFT = 2  # generic soft tissue (trunk, neck, thighs, arms)
    LUNG = 3
    HEART = 4  # blood pool; bright with contrast
    LIVER = 5
    GAS = 6  # bowel gas
    DISC_SHELL = 7  # annulus
    DISC = 8  # nucleus
    BONE_CORTEX = 9  # unlabelled bone: posterior elements, ribs, sternum, femora, humeri
    BONE_CANCELLOUS = 10
    BODY_CORTEX = 11  # vertebral bodies (label 1)
    BODY_CANCELLOUS = 12
    PELVIS_CORTEX = 13  # pelvis with sacrum (label 2)
    PELVIS_CANCELLOUS = 14
    HEAD_CORTEX = 15  # femoral heads (label 3)
    HEAD_CANCELLOUS = 16
    # "rich" anatomy only (appliance.phantom.organs)
    KIDNEY = 17  # bright with contrast
    SPLEEN = 18
    AORTA = 19  # bright with contrast, at times brighter than bone
    VENA_CAVA = 20
    BOWEL = 21  # bright with oral contrast
    SKIN = 22
    TABLE = 23
    METAL = 24  # clips, stent wires
    BLADDER = 25
    MUSCLE = 26  # psoas, paraspinal muscles


N_TISSUES = len(Tissue)

#: Which project label each tissue code belongs to (everything else is background).
TISSUE_LABEL: dict[Tissue, Label] = {
    Tissue.BODY_CORTEX: Label.VERTEBRAL_BODIES, Tissue.BODY_CANCELLOUS: Label.VERTEBRAL_BODIES,
    Tissue.PELVIS_CORTEX: Label.PELVIS, Tissue.PELVIS_CANCELLOUS: Label.PELVIS,
    Tissue.HEAD_CORTEX: Label.FEMORAL_HEADS, Tissue.HEAD_CANCELLOUS: Label.FEMORAL_HEADS,
}

#: Appearance groups: codes in one group are rendered with one grey value.
GROUP: dict[Tissue, str] = {t: t.name.lower() for t in Tissue}
for _t in (Tissue.BONE_CORTEX, Tissue.BODY_CORTEX, Tissue.PELVIS_CORTEX, Tissue.HEAD_CORTEX):
    GROUP[_t] = "cortex"
for _t in (Tissue.BONE_CANCELLOUS, Tissue.BODY_CANCELLOUS, Tissue.PELVIS_CANCELLOUS, Tissue.HEAD_CANCELLOUS):
    GROUP[_t] = "cancellous"

#: The phantom's fixed grey values (HU-like, before the CBCT effects) of the codes that
#: do not come from the drawn parameters.
FIXED_HU: dict[Tissue, float] = {
    Tissue.AIR: -1000.0, Tissue.FAT: -95.0, Tissue.SOFT: 50.0, Tissue.LUNG: -830.0,
    Tissue.HEART: 45.0, Tissue.LIVER: 65.0, Tissue.GAS: -950.0,
    Tissue.KIDNEY: 35.0, Tissue.SPLEEN: 48.0, Tissue.AORTA: 40.0, Tissue.VENA_CAVA: 38.0,
    Tissue.BOWEL: 25.0, Tissue.SKIN: 60.0, Tissue.TABLE: 150.0, Tissue.METAL: 3000.0,
    Tissue.BLADDER: 8.0, Tissue.MUSCLE: 55.0,
}


def classic_lut(p: PhantomParams) -> np.ndarray:
    """Grey value (float32, HU-like) of every code in the phantom's own look."""
    lut = np.zeros(N_TISSUES, dtype=np.float32)
    for t, hu in FIXED_HU.items():
        lut[t] = hu
    lut[Tissue.DISC_SHELL] = p.disc_hu + 25.0
    lut[Tissue.DISC] = p.disc_hu
    for t, g in GROUP.items():
        if g == "cortex":
            lut[t] = p.cortical_hu
        elif g == "cancellous":
            lut[t] = p.cancellous_hu
    return lut


def labels_from_tissues(tissues: np.ndarray) -> np.ndarray:
    """The project label map (uint8) a tissue map implies."""
    lut = np.zeros(N_TISSUES, dtype=np.uint8)
    for t, label in TISSUE_LABEL.items():
        lut[t] = int(label)
    return lut[tissues]
