"""Helpers shared by the recorder and mcl-dump tests (no tests here)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

from conftest import child_env

import mcl
from mcl.exceptions import LogDamageWarning

FMT = "native"  # the format most tests record in
ROOT = Path(__file__).resolve().parent.parent


def payloads(n: int, topics: tuple[str, ...] = ("a",), size: int | None = None) -> list[tuple[str, bytes]]:
    """`n` distinct (topic, payload) pairs, topics in turn; payloads are msgpack maps."""
    pad = b"" if size is None else b"p" * max(0, size - 16)
    return [(topics[i % len(topics)], mcl.encode({"i": i, "p": pad})) for i in range(n)]


def publish_all(bus: str, sent: list[tuple[str, bytes]], subscribers: int = 1, pace: int = 100) -> None:
    """Publish `sent` in order from a new publisher, once `subscribers` are attached.

    Yields the processor every `pace` messages so that a recorder in the
    same process (sharing the GIL) keeps up.
    """
    with mcl.Publisher(bus) as pub:
        if not pub.wait_for_subscribers(subscribers, 10.0):
            raise AssertionError(f"{subscribers} subscriber(s) did not attach within 10 s")
        for i, (topic, payload) in enumerate(sent):
            pub.publish(topic, payload)
            if i % pace == pace - 1:
                time.sleep(0.001)


def read_back(path: Path, damaged_ok: bool = False) -> list[mcl.Record]:
    """Every record of the log at `path`; damage warnings are errors unless `damaged_ok`."""
    with warnings.catch_warnings():
        if damaged_ok:
            warnings.simplefilter("ignore", LogDamageWarning)
        with mcl.open_log(path) as log:
            return list(log)


def dump_command(*args: str) -> list[str]:
    """The command line running mcl-dump from this work tree."""
    return [sys.executable, "-m", "mcl.cli.dump", *args]


class DumpProcess:
    """mcl-dump in a subprocess; stderr is collected in a thread; killed on exit if still running."""

    def __init__(self, *args: str, stdout: int | None = subprocess.DEVNULL, env: dict[str, str] | None = None, preexec_fn=None) -> None:
        self.proc = subprocess.Popen(
            dump_command(*args),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(**(env or {})),
            cwd=str(ROOT),
            preexec_fn=preexec_fn,
        )
        self.lines: list[str] = []
        self._recording = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(("recording to ", "listening")):
                self._recording.set()

    def wait_recording(self, timeout: float = 15.0) -> Path | None:
        """Wait for the 'recording to PATH' line; return PATH (None when not recording)."""
        if not self._recording.wait(timeout):
            raise AssertionError(f"mcl-dump did not start recording within {timeout} s: {self.stderr}")
        for line in self.lines:
            if line.startswith("recording to "):
                return Path(line[len("recording to ") :].split(" (")[0])
        return None

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the exit status; the stderr lines are complete afterwards."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> DumpProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
