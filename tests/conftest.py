"""Shared fixtures and helpers: the reference data of the original MCL, waiting on a condition, receiving from a bus, a small disk."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

import mcl

if TYPE_CHECKING:
    from mcl.network import Received, Subscriber

ROOT = Path(__file__).resolve().parent.parent
# The original MCL's files, copied into the project so that every clone has them.
REFERENCE_COPY = ROOT / "tests" / "data" / "mcl-v1"
SAMPLE_LOGS = ROOT / "sample_logs"

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "",
) -> T:
    """Call `predicate` every `interval` s until it returns a true value; return that value.

    Raises AssertionError after `timeout` seconds (a generous bound: the
    machine may be loaded), with `message` (a string, or a callable giving
    one, so it can show the state at the time of the failure).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not true within {timeout:g} s: {text or getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def receive(
    sub: Subscriber,
    count: int | None = None,
    timeout: float = 10.0,
    until: Callable[[list[Received]], object] | None = None,
) -> list[Received]:
    """What `sub` receives until `count` messages came (or `until(received)` is true), or `timeout` s passed.

    Never raises for too few: returns what came, for the test to assert on
    (a count it did not reach is a clearer failure than a timeout).
    """
    got: list[Received] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count is not None and len(got) >= count:
            break
        if until is not None and until(got):
            break
        got.extend(sub.recv_batch(1000 if count is None else count - len(got), timeout=0.2))
    return got


def reach(send: Callable[[], Any], sub: Subscriber, timeout: float = 10.0, topic: str | None = None) -> list[Received]:
    """Call `send()` until what it sends reaches `sub`; return the first batch received (with a message on `topic`).

    A raw socket's first messages are lost until the subscription reached it
    (ZeroMQ's slow joiner): sending again until one arrives is the wait.
    """

    def arrived() -> list[Received]:
        send()
        batch = sub.recv_batch(100, timeout=0.05)
        return batch if batch and (topic is None or any(r.topic == topic for r in batch)) else []

    return wait_until(arrived, timeout, 0, "what was sent never reached the subscriber")


def free_bus() -> str:
    """A loopback bus address whose two ports were free a moment ago (for a bus a test starts itself)."""
    from mcl.testing import make_private_bus

    bus = make_private_bus()
    try:
        return str(bus.address)
    finally:
        bus.close()


def child_env(**extra: str | None) -> dict[str, str]:
    """The environment for a child Python process running this work tree's mcl.

    `extra` sets variables; a value None removes one (``MCL_BUS=None``: the
    child sees no default bus, not even the test's private one).
    """
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=pythonpath)
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def proc_stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (the state first, the parent's pid next); None: no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """True while process `pid` runs (it exists and is not a zombie)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != b"Z"


def numbered_log(
    path: Path, count: int, step_ns: int, *, topics: tuple[str, ...] = ("t",), start_ns: int = 0, format: str = "mcl1"
) -> Path:
    """A log of `count` records `step_ns` apart from `start_ns`, topics in turn; a record's payload is its index (4 bytes)."""
    with mcl.LogWriter(path, format=format) as writer:
        for i in range(count):
            writer.write(topics[i % len(topics)], i.to_bytes(4, "big"), start_ns + i * step_ns)
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The original MCL files (the project's copy in tests/data/mcl-v1)."""
    assert (REFERENCE_COPY / "dataset").is_dir(), f"{REFERENCE_COPY} is missing from the project"
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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A factory of small tmpfs mounts (``small_disk("5m")``): a real full disk, unmounted after the test.

    Skips the test when mounting is not permitted (not root, no tmpfs).
    """
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"disk{len(mounts)}"
        mnt.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(mnt)
        return mnt

    try:
        yield mount
    finally:
        for mnt in mounts:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
