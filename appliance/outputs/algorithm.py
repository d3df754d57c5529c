"""Identification of the algorithm that produced a segmentation (PS3.3 C.8.20.2,
Segment Algorithm Name/Version; PS3.16 TID 4019 Algorithm Identification)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlgorithmInfo:
    """Name and version of the model (filled from the model bundle manifest)."""

    name: str
    version: str
    manufacturer: str = "wbspine"

    def __post_init__(self) -> None:
        if not self.name.strip() or not self.version.strip():
            raise ValueError("algorithm name and version must not be empty")
