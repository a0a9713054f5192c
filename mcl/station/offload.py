"""Offload: finished data files copied to a destination, verified by reading both back, removed after `keep_local`.

The unit of offload is a native *data file* whose index exists (the writer
closed it: a split file of a recording that goes on, or the last file of a
closed log) and that did not change for `settle`; so a long recording that
splits every 10 minutes is offloaded as it goes. Copying goes through
``NAME.part`` files: an interrupted copy resumes where the ``.part`` file
ends, and a file gets its name only once whole (and fsync'ed).
Verification opens both copies with :func:`mcl.open_log` and compares the
record count and a SHA-256 over every record (time, topic, payload); a
mismatch copies the file again from scratch, once. A verified file gets a
marker ``.NAME.offloaded.json`` next to it and is removed locally
`keep_local` after its verification, if its copy is still there, whole (a
copy gone meanwhile is made again; a destination not reachable then
postpones the removal); a log directory left with no data file is removed too. The destination must exist (a mounted share): a
missing or unwritable destination is retried with back-off and shown in
the status, never created (that would fill the local disk under an
unmounted mount point). MCL_LOG 1.0 logs have no index and are not offloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcl.exceptions import LogError
from mcl.station.config import OffloadOptions, StationError, is_within
from mcl.timeutil import NS_PER_S

__all__ = ["OffloadError", "LogDigest", "Offloader", "find_finished_files", "copy_files", "log_digest", "marker_path"]

PART_SUFFIX = ".part"
DATA_SUFFIX = ".mcln"
INDEX_SUFFIX = ".mcli"
_COPY_CHUNK = 1 << 20  # bytes per read / write while copying
_MAX_DEPTH = 4  # directory levels searched under the source
_MAX_MARKER_BYTES = 1 << 16
_BACKOFF_MAX_NS = 60 * NS_PER_S


class OffloadError(StationError):
    """A copy failed or did not verify."""


@dataclass(frozen=True, slots=True)
class LogDigest:
    """What verification compares."""

    records: int = 0  # records read back
    sha256: str = ""  # over (elapsed_ns, topic, payload) of every record, in order


def log_digest(path: Path) -> LogDigest:
    """Read a log or data file back (strict: damage is an error) and digest its records."""
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


def marker_path(data_file: Path) -> Path:
    """Where the verification of `data_file` is recorded."""
    return data_file.with_name(f".{data_file.name}.offloaded.json")


def _read_marker(data_file: Path) -> dict[str, Any] | None:
    try:
        with open(marker_path(data_file), "rb") as fp:
            value = json.loads(fp.read(_MAX_MARKER_BYTES))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("verified_ns"), int) else None


def _settled(paths: list[Path], now_ns: int, settle_ns: int) -> bool:
    try:
        return all(now_ns - p.stat().st_mtime_ns >= settle_ns for p in paths)
    except OSError:
        return False


def find_finished_files(source: Path, now_ns: int, settle_ns: int) -> list[Path]:
    """Closed native data files (index present, both untouched for `settle_ns`) under `source`, in path order."""
    found: list[Path] = []

    def walk(directory: Path, depth: int) -> None:
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            return
        for p in entries:
            if p.suffix == DATA_SUFFIX and p.is_file():
                index = p.with_suffix(INDEX_SUFFIX)
                if index.is_file() and _settled([p, index], now_ns, settle_ns):
                    found.append(p)
            elif depth < _MAX_DEPTH and p.is_dir() and not p.is_symlink():
                walk(p, depth + 1)

    walk(source, 0)
    return found


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What one copy did."""

    copied_bytes: int = 0  # bytes written to the destination
    resumed_bytes: int = 0  # bytes already at the destination in .part files and kept


def copy_files(files: list[Path], dst: Path) -> CopyResult:
    """Copy `files` into directory `dst`, resuming ``.part`` files; fsync each, then the directory."""
    dst.mkdir(parents=True, exist_ok=True)
    copied = resumed = 0
    for p in files:
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
        self.offloaded = 0  # data files copied and verified
        self.removed = 0  # local data files removed after keep_local
        self.copied_bytes = 0
        self.resumed_bytes = 0
        self.errors = 0
        self.last_error: str | None = None
        self.destination_error: str | None = None  # why the destination cannot be used now
        self.pending = 0  # finished data files not yet offloaded, at the last scan
        self.current: str | None = None  # the data file being copied
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
                wait_ns = min(_BACKOFF_MAX_NS, NS_PER_S << min(self._failures - 1, 6))
                with self._lock:
                    self.errors += 1
                    self.last_error = str(exc)
                self.log.warning("offload: %s (retry in %g s)", exc, wait_ns / NS_PER_S)
            with self._lock:
                self.next_scan_ns = self._now_ns() + wait_ns
            self._wake.wait(wait_ns / NS_PER_S)
            self._wake.clear()

    def _check_destination(self) -> None:
        dest = self.options.destination
        reason = None
        if not dest.is_dir():
            reason = f"destination {dest} is not reachable (no such directory; it is never created)"
        elif is_within(dest, self.options.source):
            reason = f"destination {dest} is inside the source {self.options.source} (a link?): nothing is offloaded"
        elif not os.access(dest, os.W_OK | os.X_OK):
            reason = f"destination {dest} is not writable"
        with self._lock:
            self.destination_error = reason
        if reason is not None:
            raise OffloadError(reason)

    def run_once(self) -> None:
        """One pass: copy and verify every finished data file, remove those past keep_local."""
        opts = self.options
        now = self._now_ns()
        files = find_finished_files(opts.source, now, opts.settle_ns)
        todo = [p for p in files if _read_marker(p) is None]
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
        emptied = set()
        for src in files:
            marker = _read_marker(src)
            if marker is None or now < marker["verified_ns"] + opts.keep_local_ns:
                continue
            if not self._copy_still_there(src, marker):
                continue
            for p in (src, src.with_suffix(INDEX_SUFFIX), marker_path(src)):
                p.unlink(missing_ok=True)
            emptied.add(src.parent)
            with self._lock:
                self.removed += 1
            self.log.info("offload: removed %s (verified copy in %s)", src, marker.get("destination"))
        for directory in emptied:
            self._remove_if_done(directory)

    def _copy_still_there(self, src: Path, marker: dict[str, Any]) -> bool:
        """The verified copy is still at the destination, whole: only then may the local file go.

        `keep_local` can be days: the share may be unmounted then (the removal
        waits) or its copy gone (the file is offloaded again).
        """
        dst = Path(str(marker.get("destination", "")))
        try:
            same = dst.is_file() and dst.stat().st_size == src.stat().st_size
        except OSError:
            same = False
        if same:
            return True
        if self.options.destination.is_dir() and not is_within(self.options.destination, self.options.source):
            marker_path(src).unlink(missing_ok=True)
            reason = f"{src}: its verified copy {dst} is gone or changed: offloading it again"
        else:
            reason = f"{src}: not removed, its copy {dst} cannot be checked (destination not reachable)"
        with self._lock:
            self.errors += 1
            self.last_error = reason
        self.log.warning("offload: %s", reason)
        return False

    def _remove_if_done(self, directory: Path) -> None:
        """Remove a log directory left with no data file (only markers of files rotated away, if any)."""
        try:
            entries = list(directory.iterdir())
        except OSError:
            return
        if directory == self.options.source or any(p.suffix == DATA_SUFFIX for p in entries):
            return
        if any(not (p.name.startswith(".") and p.name.endswith(".offloaded.json")) for p in entries):
            return  # something else lives there: keep it
        for p in entries:
            p.unlink(missing_ok=True)
        try:
            directory.rmdir()
        except OSError:
            pass

    def _offload(self, src: Path) -> None:
        opts = self.options
        dst_dir = opts.destination / src.parent.relative_to(opts.source)
        files = [src, src.with_suffix(INDEX_SUFFIX)]
        dst = dst_dir / src.name
        with self._lock:
            self.current = str(src)
        try:
            expected = log_digest(src)
            for attempt in (1, 2):
                result = copy_files(files, dst_dir)
                with self._lock:
                    self.copied_bytes += result.copied_bytes
                    self.resumed_bytes += result.resumed_bytes
                if result.resumed_bytes:
                    self.log.info("offload: %s: resumed an interrupted copy (%d bytes kept)", src, result.resumed_bytes)
                try:
                    got = log_digest(dst)
                except (LogError, Warning) as exc:
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
                for p in files:  # copy again from scratch
                    (dst_dir / p.name).unlink(missing_ok=True)
            marker = {"destination": str(dst), "records": expected.records, "sha256": expected.sha256, "verified_ns": self._now_ns()}
            path = marker_path(src)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(marker))
            os.replace(tmp, path)
            with self._lock:
                self.offloaded += 1
            self.log.info("offload: %s -> %s verified (%d records)", src, dst, expected.records)
        finally:
            with self._lock:
                self.current = None
