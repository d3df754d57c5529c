"""Lazy, explained import of torch for the commands that need it."""

from __future__ import annotations

import importlib
from types import ModuleType

from appliance.errors import MissingExtraError


def require_torch(purpose: str = "This command") -> ModuleType:
    """Import and return torch, or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module("torch")
    except ImportError as exc:  # ModuleNotFoundError, or a broken install
        raise MissingExtraError("torch", "train", purpose) from exc
