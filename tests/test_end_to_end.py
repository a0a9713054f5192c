"""Whole product: replay the sample vehicle log at speed 4 while mcl-dump records it, inspect and export, compare.

Every step is a real process started from the console scripts (mcl-bus,
mcl-dump, mcl-replay, mcl-info, mcl-export, mcl-cat), on a private bus on
free loopback ports, in a clean environment (no MCL_* variables, a fresh HOME
and working directory).
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VEHICLE = ROOT / "sample_logs" / "vehicle"
SPEED = 4.0

_MODULES = {name: f"mcl.cli.{name[4:]}" for name in ("mcl-bus", "mcl-dump", "mcl-replay", "mcl-info", "mcl-export", "mcl-cat")}


def missing_pieces() -> list[str]:
    """What the end-to-end run needs and does not find (module or sample log)."""
    missing = [module for module in _MODULES.values() if importlib.util.find_spec(module) is None]
    if not VEHICLE.is_dir():
        missing.append(str(VEHICLE.relative_to(ROOT)) + " (tools/make_sample_logs.py)")
    return missing


def command(name: str) -> list[str]:
    """The console script `name`, or the same entry point through this Python when it is not installed."""
    path = shutil.which(name)
    if path is not None:
        return [path]
    return [sys.executable, "-c", f"import sys; from {_MODULES[name]} import main; sys.exit(main())"]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a fresh shell: no MCL_* variables, a new HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCL_")}
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def background(args: list[str], cwd: Path, env: dict[str, str], **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    """A process we started; terminated (then killed) on the way out if still running."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, text=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first line the process prints on stdout, within `timeout` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"{proc.args[0]} printed nothing within {timeout} s")
    return proc.stdout.readline()


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; fail with its stderr when it fails."""
    result = subprocess.run(args, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stderr}"
    return result


@pytest.mark.slow
def test_record_replayed_sample_log_then_inspect_and_export(tmp_path: Path) -> None:
    """Recording the vehicle log replayed at speed 4 gives the same messages, counts and CSV rows as the original."""
    missing = missing_pieces()
    if missing:
        pytest.skip("not built yet: " + ", ".join(missing))
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    work = tmp_path / "work"
    work.mkdir()

    with background(command("mcl-bus") + ["--bind", "tcp://127.0.0.1:0"], work, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as bus:
        line = read_line(bus, timeout=20)
        assert "serving bus tcp://127.0.0.1:" in line, line
        address = line.split("serving bus ", 1)[1].split(":", 2)
        bus_addr = ":".join(address[:2]) + ":" + address[2].split(":")[0]
        assert bus_addr.startswith("tcp://127.0.0.1:")

        dump_err = work / "dump.stderr"
        with open(dump_err, "w") as err, background(
            command("mcl-dump") + ["--bus", bus_addr, "-o", str(work / "rec"), "--status-interval", "60"],
            work,
            env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        ) as dump:
            started = time.monotonic()
            replay = run(
                command("mcl-replay") + [str(VEHICLE), "--speed", str(SPEED), "--bus", bus_addr, "--wait-for-subscribers", "1"],
                work,
                env,
                timeout=120,
            )
            replay_s = time.monotonic() - started
            assert dump.poll() is None, "mcl-dump died: " + dump_err.read_text()
            dump.send_signal(signal.SIGINT)
            assert dump.wait(timeout=30) == 0, dump_err.read_text()
        summary = dump_err.read_text()
    # 10 s of log at speed 4: 2.5 s of replay (generous bounds: a shared machine)
    assert 2.0 < replay_s < 60, (replay_s, replay.stdout, replay.stderr)

    recordings = [p for p in (work / "rec").iterdir() if p.is_dir()]
    assert len(recordings) == 1, recordings
    recorded = recordings[0]

    # mcl-info: same messages per topic and types; duration about 10 s / 4
    info_new = json.loads(run(command("mcl-info") + ["--json", str(recorded)], work, env).stdout)
    info_old = json.loads(run(command("mcl-info") + ["--json", str(VEHICLE)], work, env).stdout)
    assert info_new["format"] == "native"
    assert info_new["messages"] == info_old["messages"] == 1400
    assert {t: v["messages"] for t, v in info_new["topics"].items()} == {t: v["messages"] for t, v in info_old["topics"].items()}
    assert {t: v["types"] for t, v in info_new["topics"].items()} == {t: v["types"] for t, v in info_old["topics"].items()}
    assert info_new["damage"] == []
    assert 1.5 < info_new["duration"] < 5.0, info_new["duration"]
    assert "1,400 messages" in summary and ", lost 0" in summary, summary

    # mcl-export: the same CSV rows from the recording as from the original
    for topic, fields, rows in (
        ("imu", "name,timestamp,temperature", 1000),
        ("gps", "timestamp,latitude,longitude,altitude,speed,heading,satellites,fix", 100),
        ("camera/front", "timestamp,frame_id,width,height,encoding,exposure_us,gain_db", 300),
    ):
        name = topic.replace("/", "_")
        old_csv, new_csv = work / f"{name}_old.csv", work / f"{name}_new.csv"
        run(command("mcl-export") + [str(VEHICLE), "--fields", fields, "--topics", topic, "--csv", str(old_csv)], work, env)
        run(command("mcl-export") + [str(recorded), "--fields", fields, "--topics", topic, "--csv", str(new_csv)], work, env)
        old_rows = old_csv.read_text().splitlines()
        assert len(old_rows) == rows
        assert new_csv.read_text().splitlines() == old_rows

    # mcl-cat: every payload identical, in the same order (times differ: recorded at speed 4)
    def payloads(path: Path) -> list[tuple[str, object]]:
        lines = run(command("mcl-cat") + [str(path)], work, env).stdout.splitlines()
        return [(row["topic"], row["payload"]) for row in map(json.loads, lines)]

    assert payloads(recorded) == payloads(VEHICLE)
