"""The station's TOML file: parsed with tomllib, checked, turned into frozen dataclasses.

Every error is a :class:`StationConfigError` naming the file, the unit and
the key (with the line, and for TOML syntax errors the column, where known).
Relative paths are relative to the TOML file (to the working directory for
a dict). Times are stored as integer ns, sizes as bytes.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcl.checks import MAX_C_INT, MAX_INT64
from mcl.exceptions import MclError
from mcl.station.schedule import Schedule, parse_schedule
from mcl.timeutil import NS_PER_S

__all__ = [
    "StationError",
    "StationConfigError",
    "StationConfig",
    "UnitConfig",
    "RunnerOptions",
    "RecorderOptions",
    "ReplayUnitOptions",
    "BusOptions",
    "OffloadOptions",
    "KINDS",
    "load_config",
    "parse_config",
    "parse_duration_ns",
    "parse_size",
]

MAX_CONFIG_BYTES = 1 << 20  # a station file larger than this is refused before parsing
MAX_UNITS = 256  # units in one station
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StationError(MclError):
    """A station cannot do what was asked (no station runs there, unknown unit, refused command)."""


class StationConfigError(StationError):
    """A station file is invalid; says which file, unit, key, line and column."""

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        unit: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.unit = unit
        self.key = key
        self.line = line
        self.column = column
        parts = [self.path or "<config>"]
        if line is not None:
            parts.append(f"line {line}" + (f", column {column}" if column is not None else ""))
        if unit is not None:
            parts.append(f"unit {unit!r}")
        if key is not None:
            parts.append(f"key {key!r}")
        super().__init__(": ".join(parts + [reason]))


# -- value parsers (each raises ValueError with the reason) ---------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(min|ms|s|m|h|d)")  # "min" before "m" and "ms" before "s"
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]i?B|[kKMGTP]B?|B)?\s*$")
_SIZE_UNITS = {"": 1, "B": 1}
for _i, _p in enumerate("KMGTP", 1):
    _SIZE_UNITS[f"{_p}B"] = _SIZE_UNITS[_p] = 1000**_i
    _SIZE_UNITS[f"{_p}iB"] = 1024**_i
_SIZE_UNITS["kB"] = _SIZE_UNITS["k"] = 1000


def _as_float(value: int | float | str) -> float:
    """`value` as a float; an int past the float range (TOML integers have no limit here) is infinity."""
    try:
        return float(value)
    except OverflowError:  # only an int overflows float()
        return math.inf if int(value) > 0 else -math.inf


def parse_duration_ns(value: Any, *, allow_zero: bool = False) -> int:
    """A number of seconds or a text such as ``"30s"``, ``"2m"``, ``"1h30m"``, ``"2d"``, ``"500ms"`` to ns."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = _as_float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos = 0
        seconds = 0.0
        for m in _DURATION_RE.finditer(text):
            if m.start() != pos:
                break
            seconds += _as_float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"{value!r} is not a duration (seconds, or e.g. '30s', '2m', '1h30m', '2d')")
    else:
        raise ValueError(f"{value!r} is not a duration")
    if not (seconds > 0 or (allow_zero and seconds == 0)) or seconds > 100 * 365 * 86400:
        raise ValueError(f"{value!r} must be {'>= 0' if allow_zero else 'above 0'} and at most 100 years")
    return round(seconds * NS_PER_S)


def parse_size(value: Any, *, number_unit: int = 1) -> int:
    """A size to bytes: ``"1 GiB"``, ``"500 MB"``, ``"10k"``; a bare number counts `number_unit` bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, (int, float)):
        size = _as_float(value) * number_unit
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m is None:
            raise ValueError(f"{value!r} is not a size (e.g. '1 GiB', '500 MB', '4096')")
        size = _as_float(m.group(1)) * _SIZE_UNITS[m.group(2) or ""]
    else:
        raise ValueError(f"{value!r} is not a size")
    if not 0 <= size < 2**63:  # also NaN
        raise ValueError(f"{value!r} is out of range")
    return int(size)


def _split_size(value: Any) -> int:
    """A recorder's split size: a size (a bare number is MB, as mcl-dump --split-size) of at least one byte."""
    size = parse_size(value, number_unit=1_000_000)
    if size < 1:
        raise ValueError(f"{value!r} is less than one byte")
    return size


MIN_LOG_BYTES = 1024  # a station log rotated more often than this is refused


def _log_size(value: Any) -> int:
    size = parse_size(value)
    if size < MIN_LOG_BYTES:
        raise ValueError(f"{value!r} is below the minimum of {MIN_LOG_BYTES} bytes")
    return size


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _positive_int(value: Any, maximum: int = MAX_INT64) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} is not a whole number >= 1")
    if value > maximum:
        raise ValueError(f"{value!r} is over the limit of {maximum}")
    return value


def _queue_length(value: Any) -> int:
    """A high-water mark: ZeroMQ's are C ints."""
    return _positive_int(value, MAX_C_INT)


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a whole number >= 0")
    if value > MAX_INT64:
        raise ValueError(f"{value!r} is over the limit of {MAX_INT64}")
    return value


def _speed(value: Any) -> float:
    """A replay speed, in the range the replay clock takes (mcl.replay.clock)."""
    from mcl.replay.clock import MAX_SPEED, MIN_SPEED

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_SPEED <= value <= MAX_SPEED:
        raise ValueError(f"{value!r} is not a replay speed ({MIN_SPEED:g} to {MAX_SPEED:g})")
    return float(value)


def _topics(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value) or len(value) > 10_000:
        raise ValueError(f"{value!r} is not a list of topic names")
    return tuple(value)


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a table")
    return dict(value)


def _str_table(value: Any) -> tuple[tuple[str, str], ...]:
    table = _table(value)
    if not all(isinstance(v, str) for v in table.values()):
        raise ValueError("every value must be a string")
    return tuple(sorted(table.items()))


def _format(value: Any) -> str:
    if value not in ("native", "mcl1"):
        raise ValueError(f"{value!r} is not a log format (native, mcl1)")
    return str(value)


def _class_ref(value: Any) -> str:
    text = _str(value)
    module, sep, attr = text.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{value!r} is not 'package.module:ClassName'")
    return text


# -- the dataclasses -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """A user runner: a subclass of :class:`mcl.station.Runner` called every `period`."""

    cls: str = ""  # 'package.module:ClassName' (key "class")
    period_ns: int = NS_PER_S  # between two iterate() calls
    config: dict[str, Any] = field(default_factory=dict)  # the runner's self.config
    config_file: Path | None = None  # a TOML file merged into self.config, re-read when it changes
    python_path: tuple[Path, ...] = ()  # directories put first on sys.path of the unit (to import `class`)
    bus: str | None = None  # where self.publish() sends; None = the station's bus


@dataclass(frozen=True, slots=True)
class RecorderOptions:
    """A recorder (the options of mcl-dump)."""

    out: Path = Path(".")  # where the <UTC timestamp>_<host>/ log directories go
    topics: tuple[str, ...] | None = None  # prefixes (exact names with `exact`); None = all topics
    exact: bool = False  # topics are exact names
    format: str = "native"  # native or mcl1
    split_size: int | None = None  # bytes per data file (a number in the TOML is MB, as mcl-dump)
    split_duration_ns: int | None = None  # ns per data file
    max_files: int | None = None  # rotation: keep only the newest N data files
    compress: bool = False  # zstd chunks (native)
    flush_interval_ns: int = 100_000_000  # a SIGKILL loses at most this much
    hwm: int = 100_000  # messages queued for the recorder before ZeroMQ drops (counted)
    metadata: tuple[tuple[str, str], ...] = ()  # free key/values kept with each log
    bus: str | None = None  # None = the station's bus
    min_free: int | None = None  # bytes; below, the recorder pauses (from [station] min_free)


@dataclass(frozen=True, slots=True)
class ReplayUnitOptions:
    """A replay of a log onto the bus (mcl.Replay)."""

    log: Path = Path(".")  # the log played
    loop: bool = False  # play again from the start at the end
    speed: float = 1.0  # log seconds per wall second
    topics: tuple[str, ...] | None = None  # exact topic names played; None = all
    exclude: str | None = None  # regex of topics dropped
    remap: tuple[tuple[str, str], ...] = ()  # topic renames
    bus: str | None = None  # None = the station's bus


@dataclass(frozen=True, slots=True)
class BusOptions:
    """A bus forwarder (mcl-bus)."""

    bind: str = ""  # tcp://HOST:PORT served (PORT and PORT + 1)
    hwm: int = 1000  # messages queued per peer before ZeroMQ drops
    curve_secret: Path | None = None  # the forwarder's CURVE secret certificate
    curve_clients: Path | None = None  # directory of accepted client public keys


@dataclass(frozen=True, slots=True)
class OffloadOptions:
    """Moves finished native logs from `source` to `destination`, verified."""

    source: Path = Path(".")  # searched (recursively, 4 levels) for finished log directories
    destination: Path = Path(".")  # must exist (a mounted share); never created by the station
    keep_local_ns: int = 0  # a verified log is removed locally this long after its copy
    scan_interval_ns: int = 10 * NS_PER_S  # between two scans of `source`
    settle_ns: int = 5 * NS_PER_S  # a finished log must be untouched this long before it is copied


UnitOptions = RunnerOptions | RecorderOptions | ReplayUnitOptions | BusOptions | OffloadOptions


@dataclass(frozen=True, slots=True)
class UnitConfig:
    """One unit of a station (a child process)."""

    name: str = ""  # the key under [units]
    kind: str = ""  # runner, recorder, replay, bus, offload
    options: UnitOptions = field(default_factory=RunnerOptions)  # the kind's options
    auto_start: bool = True  # started with the station (else by `mcl-station start NAME`)
    schedule: Schedule | None = None  # capture windows; None = runs continuously
    max_restarts: int = 10  # restarts in 10 minutes beyond which the unit is `failed`
    stuck_timeout_ns: int = 30 * NS_PER_S  # a unit silent (no heartbeat) this long is restarted


@dataclass(frozen=True, slots=True)
class StationConfig:
    """A whole station."""

    name: str = "station"  # shown in status and in the process titles
    path: Path | None = None  # the TOML file (None: built from a dict)
    digest: str = ""  # sha256 of the file's bytes (live reload compares it)
    run_dir: Path = Path("run")  # control socket, pid file, station log
    min_free: int | None = None  # bytes of free disk below which recorders pause
    bus: str | None = None  # bus of the units; None = the first bus unit's, else the default bus
    log_max_bytes: int = 10 << 20  # the station log is rotated at this size
    log_backups: int = 5  # rotated station logs kept
    units: tuple[UnitConfig, ...] = ()  # in file order

    def unit(self, name: str) -> UnitConfig | None:
        for u in self.units:
            if u.name == name:
                return u
        return None


# -- parsing ---------------------------------------------------------------------------

Parser = Callable[[Any], Any]

_COMMON_KEYS = {"kind", "auto_start", "schedule", "max_restarts", "stuck_timeout"}

_KIND_KEYS: dict[str, dict[str, tuple[str, Parser]]] = {
    "runner": {
        "class": ("cls", _class_ref),
        "period": ("period_ns", parse_duration_ns),
        "config": ("config", _table),
        "config_file": ("config_file", _str),
        "python_path": ("python_path", lambda v: tuple(_topics(v))),
        "bus": ("bus", _str),
    },
    "recorder": {
        "out": ("out", _str),
        "topics": ("topics", _topics),
        "exact": ("exact", _bool),
        "format": ("format", _format),
        "split_size": ("split_size", _split_size),
        "split_duration": ("split_duration_ns", parse_duration_ns),
        "max_files": ("max_files", _positive_int),
        "compress": ("compress", _bool),
        "flush_interval": ("flush_interval_ns", parse_duration_ns),
        "hwm": ("hwm", _queue_length),
        "metadata": ("metadata", _str_table),
        "bus": ("bus", _str),
    },
    "replay": {
        "log": ("log", _str),
        "loop": ("loop", _bool),
        "speed": ("speed", _speed),
        "topics": ("topics", _topics),
        "exclude": ("exclude", _str),
        "remap": ("remap", _str_table),
        "bus": ("bus", _str),
    },
    "bus": {
        "bind": ("bind", _str),
        "hwm": ("hwm", _queue_length),
        "curve_secret": ("curve_secret", _str),
        "curve_clients": ("curve_clients", _str),
    },
    "offload": {
        "source": ("source", _str),
        "destination": ("destination", _str),
        "keep_local": ("keep_local_ns", lambda v: parse_duration_ns(v, allow_zero=True)),
        "scan_interval": ("scan_interval_ns", parse_duration_ns),
        "settle": ("settle_ns", lambda v: parse_duration_ns(v, allow_zero=True)),
    },
}
_REQUIRED = {"runner": ("class",), "recorder": ("out",), "replay": ("log",), "bus": ("bind",), "offload": ("source", "destination")}
_PATH_FIELDS = {"config_file", "out", "log", "curve_secret", "curve_clients", "source", "destination"}
_OPTIONS_CLASS: dict[str, type] = {
    "runner": RunnerOptions,
    "recorder": RecorderOptions,
    "replay": ReplayUnitOptions,
    "bus": BusOptions,
    "offload": OffloadOptions,
}
KINDS = tuple(_KIND_KEYS)
_STATION_KEYS = {"name", "run_dir", "min_free", "bus", "log_max_bytes", "log_backups"}


class _Locator:
    """Finds the line of a table or key in the TOML text (for error messages; best effort)."""

    def __init__(self, text: str | None) -> None:
        self.lines = [] if text is None else text.splitlines()

    def _header(self, table: str) -> int | None:
        pattern = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(re.escape(p) for p in table.split(".")) + r"\s*\]")
        for i, line in enumerate(self.lines):
            if pattern.match(line) or pattern.match(line.replace('"', "")):
                return i
        return None

    def line(self, table: str, key: str | None = None) -> int | None:
        start = self._header(table)
        if start is None:
            return None
        if key is None:
            return start + 1
        key_re = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start + 1, len(self.lines)):
            if re.match(r"^\s*\[", self.lines[i]):
                break
            if key_re.match(self.lines[i]):
                return i + 1
        return start + 1


def load_config(path: str | os.PathLike[str]) -> StationConfig:
    """Read and check a station TOML file (StationConfigError naming file, unit, key, line)."""
    p = Path(path)
    try:
        # O_NONBLOCK and fstat first: a FIFO or a device given as the file is refused, never waited on.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fp:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StationConfigError("not a regular file (a station file is a TOML text file)", path=p)
            os.set_blocking(fd, True)
            data = fp.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise StationConfigError(f"cannot read: {exc.strerror}", path=p) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise StationConfigError(f"larger than the limit of {MAX_CONFIG_BYTES} bytes", path=p)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StationConfigError(f"not UTF-8 text (byte {exc.start})", path=p) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        line = column = None
        if m is not None:
            line, column = int(m.group(1)), int(m.group(2))
            message = message[: m.start()]
        elif "end of document" in message:
            line = text.count("\n") + 1
        raise StationConfigError(f"TOML syntax error: {message}", path=p, line=line, column=column) from None
    except ValueError as exc:  # an integer of more than 4300 digits (Python's limit of int(str))
        raise StationConfigError(f"TOML value out of range: {exc}".split(";")[0], path=p) from None
    return _build(table, path=p.resolve(), base=p.resolve().parent, text=text, digest=hashlib.sha256(data).hexdigest())


def parse_config(config: Mapping[str, Any] | str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None) -> StationConfig:
    """A station from a TOML path or from a dict shaped like the TOML (paths relative to `base_dir`, default: cwd)."""
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"a station is a TOML path or a dict, not {type(config).__name__}")
    base = Path(base_dir if base_dir is not None else os.getcwd()).resolve()
    return _build(dict(config), path=None, base=base, text=None, digest="")


def _build(table: dict[str, Any], *, path: Path | None, base: Path, text: str | None, digest: str) -> StationConfig:
    where = _Locator(text)

    def fail(reason: str, unit: str | None = None, key: str | None = None, table_name: str | None = None) -> StationConfigError:
        line = None
        if table_name is not None:
            line = where.line(table_name, key)
        return StationConfigError(reason, path=path, unit=unit, key=key, line=line)

    def resolve(value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else base / p

    unknown = sorted(set(table) - {"station", "units"})
    if unknown:
        raise StationConfigError(f"unknown table {unknown[0]!r} (known: station, units)", path=path)
    station = table.get("station", {})
    if not isinstance(station, dict):
        raise StationConfigError("[station] must be a table", path=path)
    extra = sorted(set(station) - _STATION_KEYS)
    if extra:
        raise fail(f"unknown key in [station] (known: {', '.join(sorted(_STATION_KEYS))})", key=extra[0], table_name="station")
    values: dict[str, Any] = {}
    station_parsers: dict[str, tuple[str, Parser]] = {
        "name": ("name", _str),
        "run_dir": ("run_dir", lambda v: resolve(_str(v))),
        "min_free": ("min_free", parse_size),
        "bus": ("bus", _str),
        "log_max_bytes": ("log_max_bytes", _log_size),
        "log_backups": ("log_backups", _non_negative_int),
    }
    for key, value in station.items():
        attr, parse = station_parsers[key]
        try:
            values[attr] = parse(value)
        except ValueError as exc:
            raise fail(str(exc), key=key, table_name="station") from None
    values.setdefault("run_dir", base / "run")
    if "bus" in values:
        values["bus"] = _check_bus(values["bus"], lambda r: fail(r, key="bus", table_name="station"))
    units_table = table.get("units", {})
    if not isinstance(units_table, dict):
        raise StationConfigError("[units] must be a table of units", path=path)
    if len(units_table) > MAX_UNITS:
        raise StationConfigError(f"{len(units_table)} units, over the limit of {MAX_UNITS}", path=path)
    units = []
    for name, unit_table in units_table.items():
        tname = f"units.{name}"
        if not _NAME_RE.match(name):
            raise fail("a unit name is 1 to 64 letters, digits, '_', '.', '-' (starting with a letter or digit)", unit=name, table_name=tname)
        if not isinstance(unit_table, dict):
            raise fail("a unit must be a table", unit=name)
        units.append(_build_unit(name, unit_table, values.get("min_free"), resolve, lambda r, k=None, n=name, t=tname: fail(r, unit=n, key=k, table_name=t)))
    _check_together(units, path, where)
    if "bus" not in values:
        for u in units:
            if isinstance(u.options, BusOptions):
                values["bus"] = _client_address(u.options.bind)
                break
    return StationConfig(path=path, digest=digest, units=tuple(units), **values)


def _check_bus(text: str, fail: Callable[[str], StationConfigError]) -> str:
    from mcl.exceptions import BusError
    from mcl.network.address import parse_bus

    try:
        parse_bus(text, allow_any_port=False)
    except BusError as exc:
        raise fail(str(exc)) from None
    return text


def _client_address(bind: str) -> str:
    """The address clients on this machine use for a forwarder bound at `bind` (0.0.0.0 / * -> loopback)."""
    from mcl.network.address import parse_bus

    address = parse_bus(bind)
    host = {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    return f"tcp://[{host}]:{address.port}" if ":" in host else f"tcp://{host}:{address.port}"


def _build_unit(
    name: str,
    table: dict[str, Any],
    min_free: int | None,
    resolve: Callable[[str], Path],
    fail: Callable[..., StationConfigError],
) -> UnitConfig:
    kind = table.get("kind")
    if kind is None:
        raise fail(f"no 'kind' (one of: {', '.join(KINDS)})")
    if kind not in _KIND_KEYS:
        raise fail(f"unknown unit kind {kind!r} (known: {', '.join(KINDS)})", "kind")
    keys = _KIND_KEYS[kind]
    for key in table:
        if key not in keys and key not in _COMMON_KEYS:
            raise fail(f"unknown key for a {kind} unit (known: {', '.join(sorted(set(keys) | _COMMON_KEYS))})", key)
    for key in _REQUIRED[kind]:
        if key not in table:
            raise fail(f"a {kind} unit needs {key!r}", key)
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key in _COMMON_KEYS:
            continue
        attr, parse = keys[key]
        try:
            parsed = parse(value)
        except ValueError as exc:
            raise fail(str(exc), key) from None
        if key in _PATH_FIELDS:
            parsed = resolve(parsed)
        elif key == "python_path":
            parsed = tuple(resolve(p) for p in parsed)
        elif key == "bus":
            parsed = _check_bus(parsed, lambda r: fail(r, "bus"))
        options[attr] = parsed
    if kind == "recorder":
        options["min_free"] = min_free
        if options.get("format") == "mcl1" and (options.get("compress") or options.get("max_files")):
            raise fail("compress and max_files need the native format", "format")
    if kind == "bus":
        from mcl.exceptions import BusError
        from mcl.network.address import parse_bus

        try:
            parse_bus(options["bind"])
        except BusError as exc:
            raise fail(str(exc), "bind") from None
        if ("curve_secret" in options) != ("curve_clients" in options):
            raise fail("curve_secret and curve_clients go together", "curve_secret")
    if kind == "replay" and options.get("exclude") is not None:
        from mcl.checks import check_pattern
        from mcl.exceptions import ArgumentError

        try:
            check_pattern(options["exclude"], "exclude")
        except ArgumentError as exc:
            raise fail(str(exc).replace("bad exclude pattern", "bad regular expression"), "exclude") from None
    if kind == "offload" and is_within(options["destination"], options["source"]):
        # The copy would be the source itself (then removed after keep_local) or be copied again and again.
        raise fail(f"{options['destination']} is inside the source {options['source']}: give a destination outside it", "destination")
    if kind == "runner" and "config_file" in options and not options["config_file"].is_file():
        raise fail(f"{options['config_file']}: no such file", "config_file")
    common: dict[str, Any] = {}
    for key, attr, parse in (
        ("auto_start", "auto_start", _bool),
        ("max_restarts", "max_restarts", _non_negative_int),
        ("stuck_timeout", "stuck_timeout_ns", parse_duration_ns),
    ):
        if key in table:
            try:
                common[attr] = parse(table[key])
            except ValueError as exc:
                raise fail(str(exc), key) from None
    if "schedule" in table:
        if kind in ("bus", "offload"):
            raise fail(f"{'an' if kind == 'offload' else 'a'} {kind} unit runs continuously; it takes no schedule", "schedule")
        try:
            common["schedule"] = parse_schedule(table["schedule"], parse_duration_ns)
        except ValueError as exc:
            raise fail(str(exc), "schedule") from None
    return UnitConfig(name=name, kind=kind, options=_OPTIONS_CLASS[kind](**options), **common)


def is_within(path: Path, directory: Path) -> bool:
    """`path` is `directory` or below it (symbolic links resolved as far as they exist)."""
    path, directory = path.resolve(), directory.resolve()
    return path == directory or directory in path.parents


def _check_together(units: list[UnitConfig], path: Path | None, where: _Locator) -> None:
    """Checks across units: two recorders never share an output directory, binds are unique."""
    outs: dict[Path, str] = {}
    binds: dict[str, str] = {}
    for u in units:
        line = where.line(f"units.{u.name}")
        if isinstance(u.options, RecorderOptions):
            other = outs.setdefault(u.options.out, u.name)
            if other != u.name:
                raise StationConfigError(f"'out' {u.options.out} is also the output of unit {other!r} (each recorder owns its directory)", path=path, unit=u.name, key="out", line=line)
        if isinstance(u.options, BusOptions):
            other = binds.setdefault(u.options.bind, u.name)
            if other != u.name:
                raise StationConfigError(f"unit {other!r} already binds {u.options.bind}", path=path, unit=u.name, key="bind", line=line)

