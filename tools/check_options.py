#!/usr/bin/env python3
"""Option-value figures of docs/reliability.md ("Option values"): hostile values for every option.

1. Commands: every option of every command (found in its parser) gets hostile
   values: numbers 0, -1, nan, inf, -inf, 1e300, 1e19, a 400-digit integer,
   9223372036.5 (past the longest thread wait), 1e-300 (0 ns), '', 'abc';
   strings and paths '', 5,000 characters, bytes that are not UTF-8, a
   directory, a file, /dev/null, a FIFO; regular expressions (a+)+$, (, [;
   bus / control addresses (port 0, 65535, 65536, -1, [::1]:x, a 200-byte
   ipc path, inproc://, udp://, no port, no host). The positional LOG / OUT
   get the path values. Each case runs ``main(argv)`` in a forked child with
   stdout / stderr as a real terminal's (strict UTF-8 out), bounded by a
   timeout (the long-running commands are expected to be still running:
   "ran"); a traceback or an exit status other than 0, 1, 2 is a defect.
2. The API: the options objects, keyword forms, setters and waits of
   Replay, Recorder, open_log, LogWriter, Publisher, Subscriber with
   hostile values and wrong types (str, bool, None, list); an MclError is
   the expected answer, another exception a defect, a child still running
   after 12 s a hang (recv(timeout=None / inf) and wait_for_subscribers(inf)
   wait forever by definition).
3. The station file: hostile numbers and types for its numeric keys; a
   StationConfigError is expected, anything else is a defect.

Buses are loopback on random ports (never 26000/26001) and no forwarder is
started: the commands that would wait for one are bounded by the timeout.

Usage: python3 tools/check_options.py [--only cat,dump,api,station] [--verbose]
"""

from __future__ import annotations

import argparse
import collections
import importlib
import io
import math
import os
import pickle
import random
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LOG = str(ROOT / "sample_logs" / "vehicle")
COMMANDS = ["bus", "cat", "convert", "dump", "export", "foxglove", "info", "replay"]
RUNNING = {"bus": 2.5, "foxglove": 3.0, "dump": 5.0}  # seconds a command that serves may run (then "ran")
NOT_UTF8 = "<not-utf8>"  # replaced by a path of bytes that are not UTF-8, new for each case
NUMBERS = ["0", "-1", "nan", "inf", "-inf", "1e300", "1e19", "9" * 400, "", "abc", "9223372036.5", "1e-300"]
REGEXES = ["(a+)+$", "(", "[", "", "x" * 5000]
ADDRESSES = [
    "tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "tcp://[::1]:x", "ipc:///tmp/" + "p" * 200, "inproc://x",
    "udp://127.0.0.1:5000", "tcp://127.0.0.1:-1", "tcp://127.0.0.1:65535", "tcp://:5000", "tcp://127.0.0.1", "", "x" * 5000,
]
NUMBER_TYPES = {
    "seconds", "positive_seconds", "non_negative_seconds", "positive_number", "megabytes", "whole_number",
    "positive_int", "_positive_int", "queue_length", "_speed", "_port", "int", "float",
}


def port() -> int:
    return random.randrange(30000, 60000, 2)


def fork_call(call: Callable[[], Any], timeout: float, stdout: Path | None = None, stderr: Path | None = None) -> tuple[Any, float]:
    """Run `call` in a forked child (own process group); its pickled result, or "HANG" after `timeout` s."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        os.setpgid(0, 0)
        for fd, path in ((1, stdout), (2, stderr)):
            target = os.open(path if path else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(target, fd)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="strict", line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True)
        try:
            result: Any = ("ok", call())
        except BaseException as exc:  # noqa: BLE001 - the child reports everything
            from mcl.exceptions import MclError

            kind = "mcl" if isinstance(exc, MclError) else "defect"
            result = (kind, f"{type(exc).__name__}: {str(exc)[:200]}", traceback.format_exc()[-600:])
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        try:
            os.write(write_end, pickle.dumps(result))
        except Exception:  # noqa: BLE001 - an unpicklable result
            os.write(write_end, pickle.dumps(("ok", None)))
        os._exit(0)
    os.close(write_end)
    start = time.monotonic()
    done = False
    while time.monotonic() - start < timeout:
        if os.waitpid(pid, os.WNOHANG)[0]:
            done = True
            break
        time.sleep(0.02)
    if not done:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(150):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.02)
        else:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    if not done:
        return ("HANG",), time.monotonic() - start
    return (pickle.loads(data) if data else ("died",)), time.monotonic() - start


# -- 1. commands ------------------------------------------------------------------------


def command_cases(work: Path) -> Iterator[tuple[str, str, str, list[str]]]:
    from mcl.cli.common import make_parser

    paths = ["", "x" * 5000, NOT_UTF8, str(work / "dir"), str(work / "file"), "/dev/null", str(work / "fifo")]
    n = 0
    for command in COMMANDS:
        module = importlib.import_module(f"mcl.cli.{command}")
        parser = make_parser(f"mcl-{command}", module.__doc__, module.add_arguments)

        def base(option: str) -> list[str]:
            bus = f"tcp://127.0.0.1:{port()}"
            out = str(work / "out" / f"{command}{n}")
            return {
                "bus": ["--bind", bus, "-q"],
                "cat": [LOG],
                "convert": [LOG, out],
                "dump": ["--bus", bus, "--no-record", "--duration", "0.5", "-q", "-o", out],
                "export": [LOG, "--topics", "gps", "--fields", "timestamp,latitude"] + ([] if option in ("--csv", "--npy", "--parquet") else ["--csv", out + ".csv"]),
                "foxglove": ["--bus", bus, "--port", "0", "-q"],
                "info": [LOG],
                "replay": [LOG, "--dry-run", "-q", "--speed", "1000", "--bus", bus],
            }[command]

        if command in ("cat", "convert", "export", "info", "replay"):
            for value in [*paths, "-"]:
                n += 1
                yield command, "LOG", value, [value if arg == LOG else arg for arg in base("")]
        if command == "convert":
            for value in [*paths, "-"]:
                n += 1
                yield command, "OUT", value, [LOG, value]
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.choices or isinstance(action, argparse._SubParsersAction):
                continue
            option = action.option_strings[-1]
            kind = getattr(action.type, "__name__", "str") if action.type else "str"
            if kind in NUMBER_TYPES:
                values = NUMBERS
            elif kind == "regex":
                values = REGEXES
            elif action.dest in ("bus", "bind", "control"):
                values = ADDRESSES + (NUMBERS if action.dest == "control" else [])
            else:
                values = paths + NUMBERS[:3]
            for value in values:
                n += 1
                if action.nargs == 2:
                    extra = [option, value, value]
                else:
                    extra = [f"{option}={value}"] if option.startswith("--") else [option, value]
                argv = ["-q", f"--bind={value}"] if (command, option) == ("bus", "--bind") else base(option) + extra
                yield command, option, value, argv


def run_commands(work: Path, only: set[str], verbose: bool) -> dict[str, collections.Counter[str]]:
    figures: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    out, err = work / "stdout", work / "stderr"
    for case, (command, option, value, argv) in enumerate(command_cases(work)):
        if only and command not in only:
            continue
        unique = os.fsdecode(os.fsencode(work) + b"/\xff\xfe-%d" % case)  # a new path of non-UTF-8 bytes each time
        argv = [arg.replace(NOT_UTF8, unique) for arg in argv]
        module = importlib.import_module(f"mcl.cli.{command}")
        result, seconds = fork_call(lambda: module.main(argv), RUNNING.get(command, 15.0), out, err)
        text = err.read_text(errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        if "Traceback" in text:  # also in a thread of a command that kept running
            outcome = "DEFECT"
        elif result[0] == "HANG":
            outcome = "ran" if command in RUNNING or option in ("--delay", "--csv", "--npy") else "hang"
        elif result[0] != "ok":
            outcome = "DEFECT"
        else:
            status = result[1]
            outcome = {0: "exit 0", 1: "exit 1", 2: "exit 2"}.get(status, "DEFECT")
            if status == 1 and not any(": error: " in line for line in lines):
                outcome = "DEFECT"
        figures[command][outcome] += 1
        if verbose or outcome in ("DEFECT", "hang"):
            print(f"{outcome:7} mcl-{command} {option} {value[:30]!r} ({seconds:.1f} s) {lines[-1][:150] if lines else ''}", flush=True)
    return figures


# -- 2. the API -------------------------------------------------------------------------

HOSTILE: list[Any] = [0, -1, math.nan, math.inf, -math.inf, 1e300, 1e19, 10**400, 2**63, 2**64, "abc", "1", True, None, 0.5, [1]]
WAIT_FOREVER = {("Subscriber.recv(timeout)", None), ("Subscriber.recv(timeout)", math.inf), ("Publisher.wait_for_subscribers(timeout)", math.inf)}


def api_cases(work: Path) -> Iterator[tuple[str, Any, Callable[[], Any]]]:
    import mcl
    from mcl.recorder import RecordOptions
    from mcl.replay import ReplayOptions

    def fresh() -> str:
        return tempfile.mkdtemp(dir=work) + "/log"

    def bus() -> str:
        return f"tcp://127.0.0.1:{port()}"

    replay_fields = [
        "speed", "start_ns", "end_ns", "delay_ns", "read_ahead", "batch_records", "batch_bytes", "spin_ns", "hwm", "send_timeout_s",
        "wait_for_subscribers", "stuck_timeout_ns", "start_timeout_ns", "origin_ns", "topics", "exclude", "remap", "loop", "bus", "publish",
    ]
    for name in replay_fields:
        for v in HOSTILE:
            yield f"ReplayOptions({name})", v, lambda name=name, v=v: ReplayOptions(**{name: v})
    for name in ["speed", "start", "end", "delay", "read_ahead", "wait_for_subscribers", "stuck_timeout", "hwm", "topics", "exclude", "remap", "bus"]:
        for v in HOSTILE:
            yield f"Replay(LOG, {name})", v, lambda name=name, v=v: mcl.Replay(LOG, publish=False, **{name: v}).close()
    for name in ["split_size", "split_duration_ns", "max_files", "flush_interval_ns", "duration_ns", "count", "hwm", "compression", "format", "bus", "topics", "metadata"]:
        for v in HOSTILE:
            yield f"RecordOptions({name})", v, lambda name=name, v=v: RecordOptions(**{name: v})
    for name in ["split_duration", "flush_interval", "duration"]:
        for v in HOSTILE:
            yield f"RecordOptions.from_seconds({name})", v, lambda name=name, v=v: RecordOptions.from_seconds(**{name: v})
    for name in ["split_size", "max_files", "hwm", "count", "duration_ns"]:
        for v in HOSTILE:
            yield f"Recorder({name})", v, lambda name=name, v=v: mcl.Recorder(fresh(), bus=bus(), **{name: v})
    for name in ["start", "end", "topics", "strict"]:
        for v in HOSTILE:
            def read(name: str = name, v: Any = v) -> None:
                with mcl.open_log(LOG, **{name: v}) as reader:
                    sum(1 for _ in reader.iter_records())
            yield f"open_log({name})", v, read
    for name in ["split_size", "split_duration", "origin_ns", "compression", "chunk_size", "compression_level", "metadata", "format"]:
        for v in HOSTILE:
            def write(name: str = name, v: Any = v) -> None:
                options = {name: v}
                fmt = options.pop("format", "native")
                with mcl.LogWriter(fresh(), fmt, **options) as writer:
                    for i in range(50):
                        writer.write("t", b"x" * 100, i * 1000)
            yield f"LogWriter({name})", v, write
    for name in ["hwm", "close_timeout", "startup_wait", "send_timeout", "id"]:
        for v in HOSTILE:
            def publish(name: str = name, v: Any = v) -> None:
                with mcl.Publisher(bus(), provide=True, **{name: v}) as pub:
                    pub.publish("t", b"x")
            yield f"Publisher({name})", v, publish
    for name in ["hwm", "max_message_bytes", "max_topic_bytes", "max_streams", "topics"]:
        for v in HOSTILE:
            def subscribe(name: str = name, v: Any = v) -> None:
                options = {name: v}
                topics = options.pop("topics", None)
                with mcl.Subscriber(topics, bus(), provide=True, **options) as sub:
                    sub.recv(timeout=0.05)
            yield f"Subscriber({name})", v, subscribe
    for v in HOSTILE:
        def receive(v: Any = v) -> None:
            with mcl.Subscriber(None, bus(), provide=True) as sub:
                sub.recv(timeout=v)
        yield "Subscriber.recv(timeout)", v, receive
    for name in ["n", "timeout"]:
        for v in HOSTILE:
            def wait(name: str = name, v: Any = v) -> None:
                with mcl.Publisher(bus(), provide=True) as pub:
                    pub.wait_for_subscribers(**{"n": 1, "timeout": 0.1, name: v})
            yield f"Publisher.wait_for_subscribers({name})", v, wait
    for what in ["seek", "speed"]:
        for v in HOSTILE:
            def control(what: str = what, v: Any = v) -> None:
                replay = mcl.Replay(LOG, publish=False)
                try:
                    if what == "seek":
                        replay.seek(v)
                    else:
                        replay.speed = v
                finally:
                    replay.close()
            yield f"Replay.{what}", v, control


def run_api(work: Path, verbose: bool) -> collections.Counter[str]:
    figures: collections.Counter[str] = collections.Counter()
    for label, value, call in api_cases(work):
        result, seconds = fork_call(call, 12.0)
        if result[0] == "HANG":
            outcome = "waits (by definition)" if (label, value) in WAIT_FOREVER or (label, value) == ("Subscriber.recv(timeout)", None) else "hang"
        else:
            outcome = {"ok": "accepted", "mcl": "MclError"}.get(result[0], "DEFECT")
        figures[outcome] += 1
        if verbose or outcome in ("DEFECT", "hang"):
            print(f"{outcome:9} {label}={value!r:.20} ({seconds:.1f} s) {result[1] if len(result) > 1 else ''}", flush=True)
    return figures


# -- 3. the station file ----------------------------------------------------------------

STATION_VALUES = ["0", "-1", "nan", "inf", "-inf", "1e300", "1e19", "9" * 400, "9223372036854775807", "''", "'abc'", "true", "[1]", "{a=1}", "'1e400s'", "'nan'", "'-5s'", "'99999999999999999999d'", "'1e300 GiB'"]
STATION_KEYS = {
    "[station]\n": ["min_free", "log_max_bytes", "log_backups", "name", "bus"],
    "[units.u]\nkind = 'recorder'\nout = 'logs'\n": ["split_size", "split_duration", "max_files", "flush_interval", "hwm", "max_restarts", "stuck_timeout", "topics", "metadata", "exact"],
    "[units.u]\nkind = 'replay'\nlog = 'x'\n": ["speed", "topics", "exclude", "remap", "loop"],
    "[units.u]\nkind = 'bus'\nbind = 'tcp://127.0.0.1:41000'\n": ["hwm"],
    "[units.u]\nkind = 'runner'\nclass = 'a:B'\n": ["period", "config", "python_path"],
    "[units.u]\nkind = 'offload'\nsource = 'a'\ndestination = '/nonexistent/b'\n": ["keep_local", "scan_interval", "settle"],
}


def run_station(work: Path, verbose: bool) -> collections.Counter[str]:
    from mcl.station.config import StationConfigError, load_config

    figures: collections.Counter[str] = collections.Counter()
    path = work / "station.toml"
    for head, keys in STATION_KEYS.items():
        for key in keys:
            for value in STATION_VALUES:
                path.write_text(f"{head}{key} = {value}\n")
                try:
                    load_config(path)
                    outcome = "accepted"
                except StationConfigError:
                    outcome = "StationConfigError"
                except Exception as exc:  # noqa: BLE001
                    outcome = "DEFECT"
                    print(f"DEFECT {key} = {value[:30]}: {type(exc).__name__}: {exc}", flush=True)
                figures[outcome] += 1
                if verbose and outcome == "accepted":
                    print(f"accepted {key} = {value[:30]}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated: command names, 'api', 'station'")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args()
    only = {part for part in args.only.split(",") if part}
    with tempfile.TemporaryDirectory(prefix="mcl-options-") as tmp:
        work = Path(tmp)
        home = os.getcwd()
        os.chdir(work)  # what a case writes by a relative name (mcl-bus --make-keys nan) lands here, not in the clone
        (work / "dir").mkdir()
        (work / "out").mkdir()
        (work / "file").write_text("not a log\n")
        os.mkfifo(work / "fifo")
        commands = only - {"api", "station"}
        defects = 0
        if not only or commands:
            figures = run_commands(work, commands, args.verbose)
            for command, counts in sorted(figures.items()):
                print(f"mcl-{command}: {sum(counts.values())} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
                defects += counts["DEFECT"] + counts["hang"]
        if not only or "api" in only:
            api = run_api(work, args.verbose)
            print(f"API: {sum(api.values())} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(api.items())))
            defects += api["DEFECT"] + api["hang"]
        if not only or "station" in only:
            station = run_station(work, args.verbose)
            print(f"station file: {sum(station.values())} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(station.items())))
            defects += station["DEFECT"]
        print(f"defects: {defects}")
        os.chdir(home)
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
