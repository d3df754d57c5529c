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
    "DatasetError",
    "DatasetMismatch",
    "DicomStatusError",
    "BundleError",
    "EngineError",
    "InferenceInputError",
    "ExportError",
    "InputVolumeError",
    "SeriesError",
    "MeasurementError",
    "MissingExtraError",
    "NoColumnError",
    "OutputError",
    "OutOfResources",
    "PhantomError",
    "TrainingError",
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


# --- inference (issue 5) --------------------------------------------------------------

class BundleError(WbspineError):
    """A model bundle cannot be used: missing/oversized/invalid manifest, unknown schema
    version, missing file, unsafe path, or a size/sha256 mismatch. ``code`` names which
    (see ``appliance.bundle.BundleErrorCode``)."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class EngineError(WbspineError):
    """An inference engine cannot be created or run (missing provider, bad model I/O)."""


class SeriesError(InputVolumeError):
    """A DICOM folder is not one usable CT volume. ``code`` names why (see
    ``appliance.series.SeriesErrorCode``): not_a_volume, too_few_slices, uneven_spacing,
    missing_slices, mixed_orientation, multiple_series, not_ct, too_large, unreadable."""

    def __init__(self, message: str, code: str = "not_a_volume") -> None:
        super().__init__(message)
        self.code = code


class InferenceInputError(InputVolumeError):
    """A volume handed to inference is unusable (empty after cropping, wrong dtype/shape)."""


class OutputError(WbspineError):
    """A result object (SEG, SR, key image, STL) cannot be made from the given inputs."""


class DatasetError(WbspineError):
    """A training dataset folder, manifest or label mapping is unusable."""


class TrainingError(WbspineError):
    """Training or evaluation cannot proceed (checkpoint mismatch, no data, ...)."""


class ExportError(WbspineError):
    """A checkpoint cannot be exported to a valid model bundle (or fails parity)."""


class NoColumnError(WbspineError):
    """The segmentation holds no vertebral column (:mod:`appliance.column`): not a spine
    scan, or a model that does not segment. Raised before any result is written but the
    label map, so a DICOM job fails with this reason instead of sending noise."""
