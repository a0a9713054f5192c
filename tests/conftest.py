"""Shared fixtures: paths to the reference data of the original MCL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import mcl

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "mcl-v1"
# A copy of the same files, for clones that do not have shared/ beside them.
REFERENCE_COPY = ROOT / "tests" / "data" / "mcl-v1"
SAMPLE_LOGS = ROOT / "sample_logs"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The original MCL files (../shared/reference/mcl-v1), or their copy in tests/data."""
    if (REFERENCE / "dataset").is_dir():
        return REFERENCE
    return REFERENCE_COPY


@pytest.fixture(scope="session")
def sample_logs() -> Path:
    """The sample_logs/ directory of the project."""
    return SAMPLE_LOGS


class UnitTestMessageA(mcl.Message):
    """The message type of the original's dataset/UnitTestMessageA.log (picklable: module level)."""

    mandatory = ("data",)


class UnitTestMessageB(mcl.Message):
    """The message type of the original's dataset/UnitTestMessageB.log."""

    mandatory = ("data",)


@pytest.fixture
def original_types() -> Iterator[tuple[type[mcl.Message], type[mcl.Message]]]:
    """UnitTestMessageA / B are the registered types during the test (other tests may register their own)."""
    from mcl.message import _REGISTRY

    saved = dict(_REGISTRY)
    _REGISTRY.update(UnitTestMessageA=UnitTestMessageA, UnitTestMessageB=UnitTestMessageB)
    try:
        yield UnitTestMessageA, UnitTestMessageB
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)
