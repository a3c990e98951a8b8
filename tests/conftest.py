"""Shared fixtures: small synthetic clip stores rendered once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipstore.generate import write_synthetic_store
from clipstore.synthetic import SyntheticSpec

REPO = Path(__file__).resolve().parents[1]
SMALL_SPEC = SyntheticSpec(clips=8, frames=5, height=32, width=32, seed=3, val_fraction=0.25)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-clip, 5-frame, 32x32 synthetic clip store."""
    return write_synthetic_store(tmp_path_factory.mktemp("data") / "small.zarr", SMALL_SPEC, progress=False)
