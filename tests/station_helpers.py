"""Helpers shared by the station tests (tests/test_station*.py): waits, unit lookups, the CLI in-process."""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from conftest import alive, wait_until

from mcl.cli import station as station_cli
from mcl.station import Station

TESTS = Path(__file__).resolve().parent
S = 1_000_000_000
TIMEOUT = 60.0  # generous: the machine is shared


def wait_for(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "the condition") -> Any:
    """conftest's wait_until with the station tests' bounds (60 s, every 0.1 s); the failure names `what` and the last value."""
    last: list[Any] = [None]

    def probe() -> Any:
        last[0] = predicate()
        return last[0]

    return wait_until(probe, timeout, 0.1, lambda: f"{what} (last value {last[0]!r})")


def unit(station: Station, name: str) -> dict[str, Any]:
    """The status of unit `name` of `station`."""
    for u in station.status()["units"]:
        if u["name"] == name:
            return u
    raise KeyError(name)


def runner(cls: str, **more: Any) -> dict[str, Any]:
    """A runner unit of a class of tests/station_runners.py."""
    return {"kind": "runner", "class": f"station_runners:{cls}", "python_path": [str(TESTS)], **more}


def run_cli(*argv: str) -> tuple[int, str, str]:
    """mcl-station in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = station_cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def utc(text: str) -> int:
    """An ISO time to UTC ns."""
    return int(_dt.datetime.fromisoformat(text).timestamp()) * S


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (no such process, or a zombie)."""
    return not alive(pid)
