"""Shared fixtures: paths to the reference data of the original MCL."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "mcl-v1"
SAMPLE_LOGS = ROOT / "sample_logs"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The original MCL files (../shared/reference/mcl-v1), or the copy in sample_logs."""
    if (REFERENCE / "dataset").is_dir():
        return REFERENCE
    pytest.skip("the reference data of the original MCL is not beside the project")


@pytest.fixture(scope="session")
def sample_logs() -> Path:
    """The sample_logs/ directory of the project."""
    return SAMPLE_LOGS
