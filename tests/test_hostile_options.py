"""Hostile option values: every command and every API option gets one clear error naming the option, never a traceback.

Table-driven: each row is (what is called, the hostile value, the error expected,
a fragment of its message). The commands are called in process (``main(argv)``);
the API rows construct the options object or call the method. The values are the
ones that used to escape as OverflowError / TypeError / ZMQError tracebacks, hang,
or pass the check and fail later inside a worker (docs/reliability.md, "Option values").
"""

from __future__ import annotations

import importlib
import io
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mcl
from mcl.checks import MAX_C_INT, check_int, check_names, check_number
from mcl.exceptions import ArgumentError, MclError
from mcl.log.record import make_topic_filter
from mcl.recorder import RecordOptions
from mcl.replay import ReplayOptions
from mcl.station.config import StationConfigError, load_config
from mcl.timeutil import MAX_NS, check_timeout

ROOT = Path(__file__).resolve().parent.parent
LOG = str(ROOT / "sample_logs" / "vehicle")
HUGE = "9" * 400  # a 400-digit integer
NOT_UTF8 = os.fsdecode(b"caf\xe9")  # a command-line word that is not UTF-8 (surrogates)


def _main(command: str, argv: list[str]) -> int:
    module = importlib.import_module(f"mcl.cli.{command}")
    return int(module.main(argv))


# (command, argv, exit status, fragment of the last stderr line). Exit 2: argparse usage
# errors (bounded argument types in mcl/cli/common.py); exit 1: one `mcl-NAME: error:` line.
CLI_CASES: list[tuple[str, list[str], int, str]] = [
    ("replay", [LOG, "--dry-run", "--read-ahead", HUGE], 2, "argument --read-ahead: "),
    ("replay", [LOG, "--dry-run", "--read-ahead", "10000001"], 2, "must be at most 10000000"),
    ("replay", [LOG, "--dry-run", "--hwm", str(2**31)], 2, "must be at most 2147483647"),
    ("replay", [LOG, "--dry-run", "--hwm", "1e300"], 2, "is not a whole number"),
    ("replay", [LOG, "--dry-run", "--wait-for-subscribers", "1" + "0" * 30], 2, "must be at most"),
    ("replay", [LOG, "--dry-run", "--speed", HUGE], 2, "argument --speed: "),
    ("replay", [LOG, "--dry-run", "--speed=-inf"], 2, "positive number"),
    ("replay", [LOG, "--dry-run", "--delay", "1e19"], 2, "too long"),
    ("replay", [LOG, "--dry-run", "--control", "tcp://127.0.0.1:65536"], 1, "a port 0..65535"),
    ("replay", [LOG, "--dry-run", "--control", "tcp://[::1]:x"], 1, "not a control address"),
    ("replay", [LOG, "--dry-run", "--control", "ipc:///tmp/" + "p" * 200], 1, "an ipc path is 1 to 107 bytes"),
    ("replay", [LOG, "--dry-run", "--control", "udp://127.0.0.1:5000"], 1, "not a control address"),
    ("replay", [LOG, "--dry-run", "--bus", "udp://127.0.0.1:5000"], 1, "bad bus address"),
    ("replay", [LOG, "--dry-run", "--bus", "tcp://127.0.0.1:65536"], 1, "port must be 1..65534"),
    ("replay", [LOG, "--dry-run", "--topics", NOT_UTF8], 2, "is not UTF-8 text"),
    ("dump", ["--hwm", HUGE], 2, "argument --hwm: "),
    ("dump", ["--hwm", str(2**31)], 2, "must be at most 2147483647"),
    ("dump", ["--count", "1" + "0" * 19], 2, "must be at most 9223372036854775807"),
    ("dump", ["--split-size", "1e300"], 2, "positive number"),
    ("dump", ["--split-size", "1e-300"], 2, "less than one byte"),
    ("dump", ["--duration", "1e-300"], 2, "at least 1 ns"),
    ("dump", ["--status-interval", "9223372036.5"], 2, "too long"),
    ("dump", ["--flush-interval", "nan"], 2, "not a finite number"),
    ("dump", ["-t", NOT_UTF8], 2, "is not UTF-8 text"),
    ("dump", ["--topic-prefix", NOT_UTF8], 2, "is not UTF-8 text"),
    ("bus", ["--hwm", HUGE], 2, "argument --hwm: "),
    ("bus", ["--hwm", "0"], 2, "must be at least 1"),
    ("foxglove", ["--queue", "1" + "0" * 30], 2, "must be at most 2147483647"),
    ("foxglove", ["--backlog", str(2**31)], 2, "must be at most 2147483647"),
    ("foxglove", ["--topics", NOT_UTF8], 2, "is not UTF-8 text"),
    ("convert", [LOG, "OUT", "--split-duration", "0"], 2, "must be a positive number of seconds"),
    ("convert", [LOG, "OUT", "--split-size", "1e-300"], 2, "less than one byte"),
    ("convert", [LOG, "OUT", "--split-size", HUGE], 2, "positive number"),
    ("cat", [LOG, "--topics", NOT_UTF8], 2, "is not UTF-8 text"),
    ("cat", [LOG, "--exclude", "(a+)+$"], 2, "a repetition inside a repetition"),
    ("dump", ["--exclude", r"(\w+\s?)+$"], 2, "a repetition inside a repetition"),
    ("replay", [LOG, "--dry-run", "--exclude", "(a*)*x"], 2, "a repetition inside a repetition"),
    ("replay", [LOG, "--dry-run", "--exclude", "[a-"], 2, "bad regular expression"),
    ("cat", [LOG, "--end", "9223372036.9"], 2, "too long"),
    ("export", [LOG, "--topics", "gps", "--fields", "latitude", "--csv", "-", "--start=-1e-300"], 2, "negative"),
    ("info", [LOG, "--start", HUGE], 2, "not a finite number"),
    ("info", [LOG, "--end", "1" + "0" * 30], 2, "too long"),
    ("station", ["check", "--sessions", "-1", "STATION"], 2, "must be at least 1"),
    ("station", ["check", "--sessions", HUGE, "STATION"], 2, "must be at most 1000"),
    ("station", ["status", "--run-dir", "RUN", "--timeout", "1e-300"], 2, "at least 1 ns"),
    ("station", ["status", "--run-dir", "RUN", "--timeout", "1e300"], 2, "too long"),
    ("station", ["check", "FIFO"], 1, "not a regular file"),
]


@pytest.mark.parametrize(("command", "argv", "status", "fragment"), CLI_CASES, ids=lambda v: str(v)[:40])
def test_hostile_option_values_are_one_error(
    command: str, argv: list[str], status: int, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hostile value of an option: its exit status and one line naming it; no traceback, nothing written."""
    (tmp_path / "station.toml").write_text("[units.a]\nkind = 'recorder'\nout = 'logs'\n")
    os.mkfifo(tmp_path / "fifo")
    places = {"OUT": str(tmp_path / "out"), "STATION": str(tmp_path / "station.toml"), "RUN": str(tmp_path), "FIFO": str(tmp_path / "fifo")}
    argv = [places.get(arg, arg) for arg in argv]
    assert _main(command, argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and lines[-1].startswith(f"mcl-{command}") and ": error: " in lines[-1], err  # subcommands: mcl-station check: error:
    assert fragment in lines[-1], err
    if status == 1:
        assert len(lines) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_path_that_is_not_utf8_is_written_and_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mcl-export --csv to a file name of bytes that are not UTF-8: the file is written and its name printed as those bytes (was a UnicodeEncodeError after writing)."""
    target = os.fsdecode(os.fsencode(tmp_path) + b"/gps-\xe9.csv")
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")  # a real stdout's handler
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert _main("export", [LOG, "--topics", "gps", "--fields", "latitude", "--csv", target]) == 0
    assert "Traceback" not in err.getvalue() and err.getvalue() == ""
    assert Path(target).is_file() and Path(target).read_text().count("\n") == 100
    out.flush()
    printed = out.buffer.getvalue()  # type: ignore[attr-defined]
    assert b"100 rows" in printed and b"/gps-\xe9.csv" in printed
    assert out.errors == "strict"  # the command's own handler is put back


# -- the API -------------------------------------------------------------------------------

WRONG_TYPES: list[Any] = ["1", "abc", True, None, [1], 0.5]
NOT_FINITE: list[Any] = [math.nan, math.inf, -math.inf]
HUGE_INTS: list[Any] = [2**63, 10**400]


def _publisher(**options: Any) -> None:
    mcl.Publisher("tcp://127.0.0.1:1", provide=False, **options).close()


def _subscriber(**options: Any) -> None:
    mcl.Subscriber(None, "tcp://127.0.0.1:1", provide=False, **options).close()


def _writer(tmp: Path, **options: Any) -> None:
    with mcl.LogWriter(tmp / "log", **options) as writer:
        writer.write("t", b"x", 0)


# (label, a call taking the hostile value, the values, the name the error must give)
API_TABLE: list[tuple[str, Callable[[Any], Any], list[Any], str]] = [
    ("ReplayOptions.speed", lambda v: ReplayOptions(speed=v), [0, -1, math.nan, -math.inf, 1e300, 1e19, 10**400, "1"], "speed"),
    ("ReplayOptions.start_ns", lambda v: ReplayOptions(start_ns=v), [-1, *NOT_FINITE, 1e300, *HUGE_INTS, "abc", True, 0.5], "start_ns"),
    ("ReplayOptions.end_ns", lambda v: ReplayOptions(end_ns=v), [-1, math.nan, 2**63, "1", [1]], "end_ns"),
    ("ReplayOptions.delay_ns", lambda v: ReplayOptions(delay_ns=v), [-1, math.inf, 2**63, None, "1"], "delay_ns"),
    ("ReplayOptions.read_ahead", lambda v: ReplayOptions(read_ahead=v), [0, -1, math.nan, 10**400, "1", None, True], "read_ahead"),
    ("ReplayOptions.batch_bytes", lambda v: ReplayOptions(batch_bytes=v), [0, 2**31, math.inf], "batch_bytes"),
    ("ReplayOptions.spin_ns", lambda v: ReplayOptions(spin_ns=v), [-1, "abc", 2**63], "spin_ns"),
    ("ReplayOptions.hwm", lambda v: ReplayOptions(hwm=v), [-1, 2**31, math.inf, "1", 1e19], "hwm"),
    ("ReplayOptions.send_timeout_s", lambda v: ReplayOptions(send_timeout_s=v), [-1, math.nan, math.inf, 1e300, "1", None], "send_timeout_s"),
    ("ReplayOptions.wait_for_subscribers", lambda v: ReplayOptions(wait_for_subscribers=v), [-1, math.inf, 10**400, "1", None], "wait_for_subscribers"),
    ("ReplayOptions.stuck_timeout_ns", lambda v: ReplayOptions(stuck_timeout_ns=v), [0, -1, math.inf, "abc"], "stuck_timeout_ns"),
    ("ReplayOptions.start_timeout_ns", lambda v: ReplayOptions(start_timeout_ns=v), [0, 2**63, None], "start_timeout_ns"),
    ("ReplayOptions.origin_ns", lambda v: ReplayOptions(origin_ns=v), [math.nan, 2**63, "abc"], "origin_ns"),
    ("ReplayOptions.topics", lambda v: ReplayOptions(topics=v), [0, 1e300, [1], b"gps", (NOT_UTF8,)], "topics"),
    ("ReplayOptions.exclude", lambda v: ReplayOptions(exclude=v), [0, ["a"], "(", "[", "(" * 1000 + ")" * 1000], "exclude"),
    ("ReplayOptions.remap", lambda v: ReplayOptions(remap=v), [0, "a:=b", [("", "x")], [(1, 2)], [("a",)]], "remap"),
    ("ReplayOptions.loop", lambda v: ReplayOptions(loop=v), [1, "yes", None], "loop"),
    ("ReplayOptions.publish", lambda v: ReplayOptions(publish=v), [0, "no"], "publish"),
    ("ReplayOptions.bus", lambda v: ReplayOptions(bus=v), [0, b"tcp://x:1", "abc", "udp://127.0.0.1:1", "tcp://127.0.0.1:65536"], "bus"),
    ("RecordOptions.bus", lambda v: RecordOptions(bus=v), [0, "abc", "tcp://127.0.0.1:0"], "bus"),
    ("open_log(strict=)", lambda v: mcl.open_log(LOG, strict=v), [1, "yes", None], "strict"),
    ("Replay(start=)", lambda v: mcl.Replay(LOG, publish=False, start=v), [-1, math.nan, 1e300, "1", [1]], "start"),
    ("Replay(read_ahead=)", lambda v: mcl.Replay(LOG, publish=False, read_ahead=v), [0, 10**400, "1"], "read_ahead"),
    ("Replay(topics=)", lambda v: mcl.Replay(LOG, publish=False, topics=v), [0, math.nan, [1]], "topics"),
    ("Replay(remap=)", lambda v: mcl.Replay(LOG, publish=False, remap=v), [0, [1], "nocolon"], "remap"),
    ("Replay(hwm=)", lambda v: mcl.Replay(LOG, publish=False, hwm=v), [-1, 2**31, "1"], "hwm"),
    ("RecordOptions.hwm", lambda v: RecordOptions(hwm=v), [0, 2**31, math.inf, "1", None], "hwm"),
    ("RecordOptions.count", lambda v: RecordOptions(count=v), [0, 2**63, 1e19, "1"], "count"),
    ("RecordOptions.split_size", lambda v: RecordOptions(split_size=v), [0, 10**400, math.nan], "split_size"),
    ("RecordOptions.topics", lambda v: RecordOptions(topics=v), [0, math.inf, True, (1,)], "topics"),
    ("RecordOptions.metadata", lambda v: RecordOptions(metadata=v), [0, "ab", None, [1], (("k", 1),)], "metadata"),
    ("RecordOptions.format", lambda v: RecordOptions(format=v), [[1], 0], "format"),
    ("RecordOptions.from_seconds", lambda v: RecordOptions.from_seconds(duration=v), [0, -1, math.nan, 1e300, "1"], "duration"),
    ("open_log(start=)", lambda v: mcl.open_log(LOG, start=v), [math.nan, 1e300, "abc", [1], True], "start"),
    ("open_log(end=)", lambda v: mcl.open_log(LOG, end=v), [math.inf, "1"], "end"),
    ("open_log(topics=)", lambda v: mcl.open_log(LOG, topics=v), [0, math.nan, True, [1], (NOT_UTF8,)], "topics"),
    ("Publisher(hwm=)", lambda v: _publisher(hwm=v), [-1, math.nan, 1e300, 2**63, "abc", None, 0.5], "hwm"),
    ("Publisher(send_timeout=)", lambda v: _publisher(send_timeout=v), [-1, math.inf, 1e19, "1", None], "send_timeout"),
    ("Publisher(close_timeout=)", lambda v: _publisher(close_timeout=v), [math.nan, 10**400, "abc", None], "close_timeout"),
    ("Publisher(startup_wait=)", lambda v: _publisher(startup_wait=v), [math.nan, 10**400, "1"], "startup_wait"),
    ("Publisher(id=)", lambda v: _publisher(id=v), [0, math.inf, [1]], "id"),
    ("Subscriber(hwm=)", lambda v: _subscriber(hwm=v), [-1, math.inf, 2**63, "1", None], "hwm"),
    ("Subscriber(max_message_bytes=)", lambda v: _subscriber(max_message_bytes=v), [math.inf, 2**63, "1", None], "max_message_bytes"),
    ("Subscriber(max_topic_bytes=)", lambda v: _subscriber(max_topic_bytes=v), [0, "1"], "max_topic_bytes"),
    ("Subscriber(topics)", lambda v: mcl.Subscriber(v, "tcp://127.0.0.1:1", provide=False), [0, math.nan, True, [1], NOT_UTF8], "topics"),
    ("Forwarder(hwm=)", lambda v: mcl.network.Forwarder("tcp://127.0.0.1:1", hwm=v), [-1, 2**31, "1"], "hwm"),
    ("check_timeout", lambda v: check_timeout(v), [-1, math.nan, math.inf, 1e19, "1", True], "timeout"),
]


def _api_cases() -> list[Any]:
    return [pytest.param(call, value, name, id=f"{label}={value!r:.20}") for label, call, values, name in API_TABLE for value in values]


@pytest.mark.parametrize(("call", "value", "name"), _api_cases())
def test_hostile_api_values_raise_argument_errors(call: Callable[[Any], Any], value: Any, name: str) -> None:
    """Each hostile value: an MclError (ArgumentError, also a ValueError, or another MclError) naming the option; nothing deeper."""
    with pytest.raises(MclError) as raised:
        result = call(value)
        close = getattr(result, "close", None)
        if close is not None:
            close()
    assert name in str(raised.value), str(raised.value)
    assert isinstance(raised.value, ValueError) or not isinstance(raised.value, ArgumentError)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"origin_ns": math.inf}, "origin_ns"),
        ({"origin_ns": 10**400}, "origin_ns"),
        ({"origin_ns": "abc"}, "origin_ns"),
        ({"split_size": "1"}, "split_size"),
        ({"split_size": 0}, "split_size"),
        ({"split_duration": "1"}, "split_duration"),
        ({"split_duration": 1e300}, "split_duration"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"metadata": "k=v"}, "metadata"),
        ({"chunk_size": "1"}, "chunk_size"),
        ({"chunk_size": 2**32}, "chunk_size"),
        ({"compression_level": 10**400}, "compression_level"),
        ({"flush_interval_ns": -1}, "flush_interval_ns"),
        ({"compression": ["zstd"]}, "compression"),
        ({"format": ["native"]}, "format"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_writer_options_are_checked_before_anything_is_created(options: dict[str, Any], name: str, tmp_path: Path) -> None:
    """LogWriter with a hostile option: an MclError naming it, and no log directory left behind (checked before it is made)."""
    fmt = options.pop("format", "native")
    with pytest.raises(MclError, match=name):
        with mcl.LogWriter(tmp_path / "log", fmt, **options) as writer:
            writer.write("t", b"x", 0)
    assert not (tmp_path / "log").exists()


def test_a_catastrophic_exclude_is_refused_and_linear_ones_kept() -> None:
    """(a+)+$ on 'aaaa...!' backtracks 2^n times (a 30-character topic from the wire: minutes): refused; ordinary patterns are not."""
    for bad in ("(a+)+$", "(a*)*x", r"(\w+\s?)+$", "(a|b+)*", "x(?=(a+)+)"):
        with pytest.raises(ArgumentError, match="repetition inside a repetition"):
            make_topic_filter(None, exclude=bad)
        with pytest.raises(ArgumentError, match="repetition inside a repetition"):
            ReplayOptions(exclude=bad)
    for good in ("^camera/", "(?:front|rear)$", "a+b+", "(a++)+$", "(?>a+)+$", "(a{0,3})x", "imu|gps"):
        keep = make_topic_filter(None, exclude=good)
        assert keep is not None and keep("lidar") is True


def test_the_mcl1_writer_checks_the_shared_options(tmp_path: Path) -> None:
    """MCL_LOG 1.0 took any split_size (-1, 'abc') and failed at the first write; now the factory's one check refuses it."""
    for bad in (-1, "abc", 10**400):
        with pytest.raises(ArgumentError, match="split_size"):
            mcl.LogWriter(tmp_path / "log", "mcl1", split_size=bad)
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda r: r.seek(math.nan), "position"),
        (lambda r: r.seek(1e300), "position"),
        (lambda r: r.seek("1"), "position"),
        (lambda r: setattr(r, "speed", 10**400), "speed"),
        (lambda r: setattr(r, "speed", 1e300), "speed"),
        (lambda r: setattr(r, "speed", "fast"), "speed"),
        (lambda r: r.wait(math.nan), "timeout"),
        (lambda r: r.wait(-1), "timeout"),
    ],
)
def test_replay_methods_check_their_values(call: Callable[[Any], Any], name: str) -> None:
    """Replay.seek, the speed setter and wait: an MclError naming the value, the replay still usable (no worker started for it)."""
    replay = mcl.Replay(LOG, publish=False)
    try:
        with pytest.raises(MclError, match=name):
            call(replay)
        assert replay.speed == 1.0
    finally:
        replay.close()


def test_subscriber_and_publisher_waits_check_their_values() -> None:
    """recv / recv_batch / wait_for_subscribers / wait_joined: hostile timeouts and counts are ArgumentErrors, not hangs or OverflowErrors."""
    with mcl.Subscriber(None, "tcp://127.0.0.1:1", provide=False) as sub:
        for bad in (math.nan, -1, 1e19, 10**400, "1"):
            with pytest.raises(ArgumentError, match="timeout"):
                sub.recv(timeout=bad)
        with pytest.raises(ArgumentError, match="max_count"):
            sub.recv_batch(max_count=0, timeout=0)
        with pytest.raises(ArgumentError, match="timeout"):
            sub.wait_joined(math.inf)
        assert sub.recv(timeout=0) is None  # still usable
    with mcl.Publisher("tcp://127.0.0.1:1", provide=False, startup_wait=0) as pub:
        for bad in (math.nan, 1e300, 10**400, "1", None):
            with pytest.raises(ArgumentError, match="timeout"):
                pub.wait_for_subscribers(1, timeout=bad)
        for bad in ("1", None, -1, 2**31):
            with pytest.raises(ArgumentError, match="n must"):
                pub.wait_for_subscribers(bad, timeout=0)
        assert pub.wait_for_subscribers(0, timeout=0) is True


@pytest.mark.parametrize(
    "call",
    [
        lambda: ReplayOptions(speed=math.inf, start_ns=0, end_ns=MAX_NS, hwm=0, read_ahead=1, wait_for_subscribers=MAX_C_INT),
        lambda: ReplayOptions(topics="gps", remap=[["a", "b"]], exclude="(a++)+$"),
        lambda: RecordOptions(hwm=MAX_C_INT, count=2**63 - 1, split_size=1, topics=["a", "b"]),
        lambda: check_timeout(math.inf, infinite_ok=True),
        lambda: check_int(__import__("numpy").int64(5), "n"),
        lambda: check_number(__import__("numpy").float32(0.5), "x"),
        lambda: check_names(iter(["a", "b"]), "topics"),
    ],
)
def test_the_limits_themselves_are_accepted(call: Callable[[], Any]) -> None:
    """The checks do not refuse what is valid: the range ends, math.inf where it means 'no limit', numpy scalars, iterables."""
    call()


# -- the station file ----------------------------------------------------------------------

STATION_CASES = [
    ("[station]\nmin_free = " + HUGE + "\n", "line 2: key 'min_free': "),
    ("[station]\nlog_backups = " + HUGE + "\n", "line 2: key 'log_backups': "),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nsplit_size = " + HUGE + "\n", "line 4: unit 'a': key 'split_size': "),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nsplit_size = 0\n", "key 'split_size': 0 is less than one byte"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nsplit_duration = " + HUGE + "\n", "key 'split_duration': "),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nflush_interval = nan\n", "key 'flush_interval': "),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nflush_interval = 'inf'\n", "key 'flush_interval': "),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nhwm = 2147483648\n", "key 'hwm': 2147483648 is over the limit of 2147483647"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nmax_files = " + "9" * 30 + "\n", "key 'max_files': "),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nmax_restarts = " + "9" * 30 + "\n", "key 'max_restarts': "),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nstuck_timeout = " + HUGE + "\n", "key 'stuck_timeout': "),
    ("[units.a]\nkind = 'replay'\nlog = 'x'\nspeed = 1e300\n", "key 'speed': 1e+300 is not a replay speed (0.001 to 1e+06)"),
    ("[units.a]\nkind = 'replay'\nlog = 'x'\nspeed = " + HUGE + "\n", "key 'speed': "),
    ("[units.a]\nkind = 'replay'\nlog = 'x'\nspeed = nan\n", "key 'speed': "),
    ("[units.a]\nkind = 'bus'\nbind = 'tcp://127.0.0.1:5000'\nhwm = 10000000000\n", "key 'hwm': "),
    ("[units.a]\nkind = 'runner'\nclass = 'a:B'\nperiod = " + HUGE + "\n", "key 'period': "),
    ("[units.a]\nkind = 'offload'\nsource = 'a'\ndestination = '/nonexistent/b'\nsettle = -inf\n", "key 'settle': "),
    ("[station]\nmin_free = " + "9" * 5000 + "\n", "TOML value out of range"),
    ("[units.a]\nkind = 'replay'\nlog = 'x'\nexclude = '(a+)+$'\n", "key 'exclude': bad regular expression '(a+)+$': a repetition inside"),
]


@pytest.mark.parametrize(("text", "fragment"), STATION_CASES, ids=lambda v: str(v)[-40:])
def test_hostile_station_values_are_one_config_error(text: str, fragment: str, tmp_path: Path) -> None:
    """A hostile number in the station file: one StationConfigError naming the file, the line and the key (no OverflowError)."""
    path = tmp_path / "station.toml"
    path.write_text(text)
    with pytest.raises(StationConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path.resolve() if 'value out of range' not in fragment else path}: ") or message.startswith(f"{path}: ")
    assert fragment in message and "\n" not in message
