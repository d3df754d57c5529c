"""What the node accepts (PS3.4 Annex B storage SOP classes, PS3.5 transfer syntaxes).

Only what the pipeline reads is accepted: single-frame CT Image Storage, one file per
slice (``appliance.series``). Anything else (a Secondary Capture, a localizer-only
modality, and also the multi-frame Enhanced CT, Legacy Converted Enhanced CT and X-Ray 3D
objects some cone-beam scanners can send) is rejected at presentation-context
negotiation (PS3.8 9.3.3.2, result "abstract syntax not supported"), so it never reaches
the spool and the scanner's log says at once what was refused. Accepting them would
acknowledge studies that then fail at every attempt; configure the scanner to export
classic single-frame CT until the reader handles multi-frame objects (issue 19). A compressed transfer syntax is offered only when pydicom has a
working decoder for it, so the node never accepts what the pipeline cannot decode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)

#: Storage SOP classes of reconstructed (CB)CT volumes that the pipeline reads.
ACCEPTED_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
}
#: Multi-frame (CB)CT classes refused at negotiation until the reader handles them.
REFUSED_MULTIFRAME_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.13.1.1": "X-Ray 3D Angiographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.13.1.2": "X-Ray 3D Craniofacial Image Storage",
}

UNCOMPRESSED_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
)
COMPRESSED_CANDIDATES: tuple[UID, ...] = (JPEGLosslessSV1, JPEGLossless, JPEG2000Lossless, JPEG2000, RLELossless)

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: object) -> bool:
    """PS3.5 9.1: digits and dots, no leading zeros in a component, at most 64 characters."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID_RE.match(value))


def decodable_syntaxes() -> tuple[UID, ...]:
    """Compressed transfer syntaxes for which an installed pixel-data decoder is available."""
    from pydicom.pixels.decoders.base import get_decoder

    found: list[UID] = []
    for uid in COMPRESSED_CANDIDATES:
        try:
            if get_decoder(uid).is_available:
                found.append(uid)
        except (NotImplementedError, ValueError):
            continue
    return tuple(found)


@dataclass(frozen=True)
class StoragePolicy:
    """SOP classes and transfer syntaxes offered by the storage SCP."""

    sop_classes: tuple[str, ...]
    transfer_syntaxes: tuple[UID, ...]

    @classmethod
    def default(cls) -> StoragePolicy:
        return cls(tuple(ACCEPTED_SOP_CLASSES), UNCOMPRESSED_SYNTAXES + decodable_syntaxes())
