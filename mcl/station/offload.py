"""Offload: finished logs copied to a destination, verified by reading both back, removed after `keep_local`.

A log is *finished* when it is a native log directory whose every data file
has its index (the writer closed it) and nothing in it changed for `settle`.
Copying goes through ``NAME.part`` files: an interrupted copy resumes where
the ``.part`` file ends, and a file is renamed to its name only once whole
(and fsync'ed). Verification opens both copies with :func:`mcl.open_log`
and compares the record count and a SHA-256 over every record (time, topic,
payload); a mismatch copies the log again from scratch, once. A verified
log gets a marker file ``.mcl-offloaded.json`` and is removed locally
`keep_local` after its verification. The destination must exist (a mounted
share): a missing or unwritable destination is retried with back-off and
shown in the status, never created (that would fill the local disk under
an unmounted mount point).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcl.exceptions import LogError
from mcl.station.config import OffloadOptions, StationError

__all__ = ["MARKER", "OffloadError", "LogDigest", "Offloader", "find_finished_logs", "copy_log", "log_digest"]

MARKER = ".mcl-offloaded.json"  # written in a local log once its copy is verified
PART_SUFFIX = ".part"
_COPY_CHUNK = 1 << 20  # bytes per read / write while copying
_MAX_DEPTH = 4  # directory levels searched under the source
_NS = 1_000_000_000
_BACKOFF_MAX_NS = 60 * _NS


class OffloadError(StationError):
    """A copy failed or did not verify."""


@dataclass(frozen=True, slots=True)
class LogDigest:
    """What verification compares."""

    records: int = 0  # records read back
    sha256: str = ""  # over (elapsed_ns, topic, payload) of every record, in order


def log_digest(path: Path) -> LogDigest:
    """Read a log back (strict: damage is an error) and digest its records."""
    from mcl.log.reader import open_log

    h = hashlib.sha256()
    count = 0
    pack = struct.Struct("<qII").pack
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_log(path, strict=True) as reader:
            for record in reader:
                topic = record.topic.encode()
                h.update(pack(record.elapsed_ns, len(topic), len(record.payload)))
                h.update(topic)
                h.update(record.payload)
                count += 1
    return LogDigest(count, h.hexdigest())


def _is_finished(directory: Path, now_ns: int, settle_ns: int) -> bool:
    data = [p for p in directory.iterdir() if p.suffix == ".mcln" and p.is_file()]
    if not data:
        return False
    newest = 0
    for p in directory.iterdir():
        if p.is_file() and not p.name.startswith(MARKER):
            newest = max(newest, p.stat().st_mtime_ns)
    if now_ns - newest < settle_ns:
        return False
    return all(p.with_suffix(".mcli").is_file() for p in data)


def find_finished_logs(source: Path, now_ns: int, settle_ns: int) -> list[Path]:
    """Finished native log directories under `source` (itself included), oldest name first."""
    found: list[Path] = []

    def walk(directory: Path, depth: int) -> None:
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            return
        if any(p.suffix == ".mcln" for p in entries):
            try:
                if _is_finished(directory, now_ns, settle_ns):
                    found.append(directory)
            except OSError:
                pass
            return
        if depth < _MAX_DEPTH:
            for p in entries:
                if p.is_dir() and not p.is_symlink():
                    walk(p, depth + 1)

    walk(source, 0)
    return found


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What one copy of a log did."""

    copied_bytes: int = 0  # bytes written to the destination
    resumed_bytes: int = 0  # bytes already at the destination in .part files and kept


def copy_log(src: Path, dst: Path) -> CopyResult:
    """Copy the files of log directory `src` into `dst`, resuming ``.part`` files; fsync each."""
    dst.mkdir(parents=True, exist_ok=True)
    copied = resumed = 0
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name == MARKER:
            continue
        size = p.stat().st_size
        target = dst / p.name
        if target.is_file() and target.stat().st_size == size:
            continue  # copied whole before (verification reads it back)
        part = dst / (p.name + PART_SUFFIX)
        offset = part.stat().st_size if part.is_file() else 0
        if offset > size:
            offset = 0
        with open(p, "rb") as fin, open(part, "r+b" if offset else "wb") as fout:
            fin.seek(offset)
            fout.seek(offset)
            fout.truncate()
            resumed += offset
            while True:
                block = fin.read(_COPY_CHUNK)
                if not block:
                    break
                fout.write(block)
                copied += len(block)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(part, target)
    _fsync_dir(dst)
    return CopyResult(copied, resumed)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        with open(directory / MARKER, "rb") as fp:
            value = json.loads(fp.read(1 << 16))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("verified_ns"), int) else None


class Offloader:
    """Runs the offload of one unit in a background thread; :meth:`status` is safe from any thread."""

    def __init__(self, options: OffloadOptions, log: Any, now_ns: Any = time.time_ns) -> None:
        self.options = options
        self.log = log
        self._now_ns = now_ns
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.offloaded = 0  # logs copied and verified
        self.removed = 0  # local logs removed after keep_local
        self.copied_bytes = 0
        self.resumed_bytes = 0
        self.errors = 0
        self.last_error: str | None = None
        self.destination_error: str | None = None  # why the destination cannot be used now
        self.pending = 0  # finished logs not yet offloaded, at the last scan
        self.current: str | None = None  # the log being copied
        self.next_scan_ns = 0
        self._failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mcl-station: offload", daemon=True)
        self._thread.start()

    def scan_now(self) -> None:
        """Ask for a pass at once."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30.0)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "offloaded": self.offloaded,
                "removed": self.removed,
                "copied_bytes": self.copied_bytes,
                "resumed_bytes": self.resumed_bytes,
                "pending": self.pending,
                "current": self.current,
                "destination_error": self.destination_error,
                "errors": self.errors,
                "last_error": self.last_error,
                "next_scan_ns": self.next_scan_ns,
            }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                self._failures = 0
                wait_ns = self.options.scan_interval_ns
            except (OSError, OffloadError, LogError, Warning) as exc:
                self._failures += 1
                wait_ns = min(_BACKOFF_MAX_NS, _NS << min(self._failures - 1, 6))
                with self._lock:
                    self.errors += 1
                    self.last_error = str(exc)
                self.log.warning("offload: %s (retry in %g s)", exc, wait_ns / _NS)
            with self._lock:
                self.next_scan_ns = self._now_ns() + wait_ns
            self._wake.wait(wait_ns / _NS)
            self._wake.clear()

    def _check_destination(self) -> None:
        dest = self.options.destination
        reason = None
        if not dest.is_dir():
            reason = f"destination {dest} is not reachable (no such directory; it is never created)"
        elif not os.access(dest, os.W_OK | os.X_OK):
            reason = f"destination {dest} is not writable"
        with self._lock:
            self.destination_error = reason
        if reason is not None:
            raise OffloadError(reason)

    def run_once(self) -> None:
        """One pass: copy and verify every finished log, remove those past keep_local."""
        opts = self.options
        now = self._now_ns()
        logs = find_finished_logs(opts.source, now, opts.settle_ns)
        todo = [p for p in logs if _read_marker(p) is None]
        with self._lock:
            self.pending = len(todo)
        if todo:
            self._check_destination()
        for src in todo:
            if self._stop.is_set():
                return
            self._offload(src)
            with self._lock:
                self.pending -= 1
        now = self._now_ns()
        for src in logs:
            marker = _read_marker(src)
            if marker is None or now < marker["verified_ns"] + opts.keep_local_ns:
                continue
            shutil.rmtree(src)
            with self._lock:
                self.removed += 1
            self.log.info("offload: removed %s (verified copy at %s)", src, marker.get("destination"))

    def _offload(self, src: Path) -> None:
        opts = self.options
        dst = opts.destination / src.relative_to(opts.source) if src != opts.source else opts.destination / src.name
        with self._lock:
            self.current = str(src)
        try:
            expected = log_digest(src)
            for attempt in (1, 2):
                result = copy_log(src, dst)
                with self._lock:
                    self.copied_bytes += result.copied_bytes
                    self.resumed_bytes += result.resumed_bytes
                if result.resumed_bytes:
                    self.log.info("offload: %s: resumed an interrupted copy (%d bytes kept)", src, result.resumed_bytes)
                try:
                    got = log_digest(dst)
                except (LogError, UserWarning) as exc:
                    got = LogDigest(-1, f"unreadable: {exc}")
                if got == expected:
                    break
                message = f"{dst}: the copy does not verify ({got.records} records, sha256 {got.sha256[:16]}; expected {expected.records}, {expected.sha256[:16]})"
                with self._lock:
                    self.errors += 1
                    self.last_error = message
                self.log.warning("offload: %s", message)
                if attempt == 2:
                    raise OffloadError(message)
                shutil.rmtree(dst)  # copy again from scratch
            marker = {"destination": str(dst), "records": expected.records, "sha256": expected.sha256, "verified_ns": self._now_ns()}
            tmp = src / (MARKER + ".tmp")
            tmp.write_text(json.dumps(marker))
            os.replace(tmp, src / MARKER)
            with self._lock:
                self.offloaded += 1
            self.log.info("offload: %s -> %s verified (%d records)", src, dst, expected.records)
        finally:
            with self._lock:
                self.current = None
