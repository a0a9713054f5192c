"""Shared fixtures: paths to the reference data of the original MCL."""

from __future__ import annotations

from pathlib import Path

import pytest

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
