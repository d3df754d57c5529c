"""Shared fixtures: phantom studies are generated once per session (they are deterministic)."""

from __future__ import annotations

import functools

import pytest

from appliance.phantom import Study, generate_study


@functools.lru_cache(maxsize=8)
def cached_study(seed: int, size: str = "small", **overrides) -> Study:
    return generate_study(seed, size, **overrides)


@pytest.fixture(scope="session")
def small_study() -> Study:
    return cached_study(4, "small")


@pytest.fixture(scope="session")
def full_study() -> Study:
    """One protocol-size study (≈ 20 s to make); used only where resolution matters."""
    return cached_study(4, "full")
