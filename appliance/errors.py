"""Appliance errors: subclasses of the project's one hierarchy (``dicom_node.errors``)."""

from __future__ import annotations

from dicom_node.errors import (
    CannotUnderstand,
    ConfigError,
    DatasetMismatch,
    DicomStatusError,
    OutOfResources,
    WbspineError,
)

__all__ = [
    "CannotUnderstand",
    "ConfigError",
    "DatasetMismatch",
    "DicomStatusError",
    "InputVolumeError",
    "MeasurementError",
    "MissingExtraError",
    "OutOfResources",
    "PhantomError",
    "WbspineError",
]


class InputVolumeError(WbspineError):
    """An input image or label map is not a usable volume (shape, geometry, type)."""


class PhantomError(WbspineError):
    """A phantom cannot be generated with the requested parameters."""


class MissingExtraError(WbspineError):
    """A command needs an optional dependency group that is not installed."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed. "
            f"Install the '{extra}' extra: pip install 'wbspine[{extra}]'"
            + (" (torch==2.13.0 CPU build; a GPU site installs its CUDA build of torch first)"
               if extra == "train" else "")
        )
        self.module = module
        self.extra = extra


class MeasurementError(WbspineError):
    """Measurements cannot be attempted on the given label map (shape, geometry, type)."""
