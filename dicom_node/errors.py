"""The one exception hierarchy of wbspine.

It lives in the lowest layer (``dicom_node``) so that every package can use it;
``appliance.errors`` re-exports it and adds the appliance's own subclasses.
DICOM-facing errors carry the DIMSE status they map to (PS3.7 Annex C).
"""

from __future__ import annotations


class WbspineError(Exception):
    """Base of every error wbspine raises on purpose."""


class ConfigError(WbspineError):
    """A configuration file, option or environment override is invalid."""


class DicomStatusError(WbspineError):
    """An error that is answered to a DICOM peer with a DIMSE status code."""

    #: DIMSE status sent to the peer (PS3.7 C.4.2.1.2): 0xC000 "cannot understand".
    status: int = 0xC000

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class OutOfResources(DicomStatusError):
    """Refused for lack of space or other resources (0xA700)."""

    status = 0xA700


class DatasetMismatch(DicomStatusError):
    """Dataset does not match the SOP class/instance of the command (0xA900)."""

    status = 0xA900


class CannotUnderstand(DicomStatusError):
    """Dataset cannot be parsed or understood (0xC000)."""

    status = 0xC000
