"""Helpers shared by the station tests (tests/test_station*.py): waits, unit lookups, the CLI in-process."""

from __future__ import annotations

import datetime as _dt
import io
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from mcl.cli import station as station_cli
from mcl.station import Station

TESTS = Path(__file__).resolve().parent
S = 1_000_000_000
TIMEOUT = 60.0  # generous: the machine is shared


def wait_for(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "the condition") -> Any:
    """Poll `predicate` (every 0.1 s) until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value {value!r})")
        time.sleep(0.1)


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
    try:
        with open(f"/proc/{pid}/stat") as fp:
            return fp.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
