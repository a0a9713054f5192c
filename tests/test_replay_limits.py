"""Replay limits: speed bounds, a loop over an empty selection, a control endpoint that survives any request."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
from conftest import numbered_log, proc_stat, wait_until
from hypothesis import HealthCheck, given, settings
from strategies import control_requests

import mcl
from mcl.cli import replay as replay_cli
from mcl.replay.clock import MAX_SPEED, MIN_SPEED, ReplayClock, check_speed
from mcl.replay.control import MAX_REQUEST_BYTES, ControlServer, is_loopback

MS = 1_000_000
ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes `pids` (seconds)."""
    ticks = 0
    for pid in pids:
        fields = proc_stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# -- speed --------------------------------------------------------------------------------


def test_speed_bounds_are_checked_once_in_the_clock() -> None:
    """The documented range (MIN_SPEED..MAX_SPEED, or math.inf) is accepted; anything else is a ValueError."""
    for good in (MIN_SPEED, 0.5, 1, 128.0, MAX_SPEED, math.inf):
        check_speed(good)
        ReplayClock(good).set_speed(good)
    for bad in (0, -1, MIN_SPEED / 2, MAX_SPEED * 2, 1e300, 1e-300, math.nan, -math.inf, True, "2", None):
        with pytest.raises(ValueError, match="speed must be between"):
            check_speed(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ReplayClock(1.0).set_speed(1e300)


def test_clock_stays_finite_at_the_speed_bounds() -> None:
    """At both ends of the range, a day of log or wall time still maps to integer ns (no overflow)."""
    day_ns = 86_400 * 10**9
    for speed in (MIN_SPEED, MAX_SPEED):
        now = [0]
        clock = ReplayClock(speed, paused=False, now=lambda: now[0])
        clock.anchor(0)
        assert isinstance(clock.due_ns(day_ns * 365), int)
        now[0] = day_ns * 365
        assert isinstance(clock.position_ns, int)


@pytest.mark.parametrize("speed", ["1e300", "1e-300", "0.0001", "2000000"])
def test_mcl_replay_refuses_a_speed_out_of_range(speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--speed outside the range is a usage error (exit 2) naming the range, before anything starts."""
    assert replay_cli.main([str(ROOT / "sample_logs" / "vehicle"), "--speed", speed]) == 2
    err = capsys.readouterr().err
    assert "speed must be between 0.001 and 1e+06" in err and "Traceback" not in err


@pytest.mark.slow
def test_speed_out_of_range_leaves_the_replay_running(tmp_path: Path) -> None:
    """replay.speed = 1e300 raises ValueError; the broadcast worker lives and the replay plays on."""
    seen: list[int] = []
    log = numbered_log(tmp_path / "log", 400, 5 * MS, format="native")
    with mcl.Replay(log, hooks=[lambda r: seen.append(r.elapsed_ns)]) as replay:
        replay.start()
        for bad in (1e300, 1e-300, 0.0):
            with pytest.raises(ValueError, match="speed must be between"):
                replay.speed = bad
        with pytest.raises(ValueError):
            replay.seek(1e300)
        assert replay.wait(60), replay.status()
        assert replay.status().state == "finished" and len(seen) == 400


# -- an empty selection --------------------------------------------------------------------


@pytest.mark.slow
def test_loop_over_an_empty_selection_finishes_and_idles(tmp_path: Path) -> None:
    """--loop over nothing: the pass ends (no spin); the workers use almost no CPU over a 2 s window."""
    log = numbered_log(tmp_path / "log", 2000, 1 * MS, format="native")
    with mcl.Replay(log, hooks=[lambda r: None], loop=True, exclude=".*") as replay:
        replay.start()
        assert replay.wait(30), replay.status()
        status = replay.status()
        assert status.state == "finished" and status.sent == 0 and status.passes == 0
        pids = list(replay.worker_pids.values())
        before, began = cpu_seconds(pids), time.monotonic()
        time.sleep(2.0)
        used, window = cpu_seconds(pids) - before, time.monotonic() - began
    assert used < 0.25 * window, f"the workers used {used:.2f} s of CPU in {window:.2f} s"


@pytest.mark.slow
def test_loop_still_loops_after_a_seek_past_the_end(tmp_path: Path) -> None:
    """A pass emptied by a seek is not an empty selection: the loop goes on from the start."""
    log = numbered_log(tmp_path / "log", 20, 10 * MS, format="native")
    seen: list[int] = []
    with mcl.Replay(log, hooks=[lambda r: seen.append(r.elapsed_ns)], loop=True) as replay:
        replay.pause()
        replay.seek(10.0)  # past the last record
        replay.start()
        wait_until(lambda: replay.status().passes >= 2, 30, message=lambda: str(replay.status()))
        assert replay.status().state == "playing"
    assert seen[:20] == [i * 10 * MS for i in range(20)]


@pytest.mark.slow
def test_mcl_replay_loop_over_nothing_is_an_error(tmp_path: Path) -> None:
    """mcl-replay --loop with a selection that holds no record: one error line, exit 1, within seconds."""
    log = numbered_log(tmp_path / "log", 50, 10 * MS, format="native")
    done = subprocess.run(
        [sys.executable, "-m", "mcl.cli.replay", str(log), "--loop", "--dry-run", "--exclude", "^t$"],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT), stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "mcl-replay: error: nothing to replay: no record of the log is in the selection (--topics, --exclude, --start-offset, --until)"
    ]


# -- the control endpoint -------------------------------------------------------------------


def test_is_loopback() -> None:
    """Loopback, ipc and inproc endpoints are local; any other address or interface is not."""
    for local in ("tcp://127.0.0.1:5", "tcp://127.3.4.5:5", "tcp://[::1]:5", "tcp://localhost:5", "ipc:///tmp/x", "inproc://x"):
        assert is_loopback(local), local
    for exposed in ("tcp://0.0.0.0:5", "tcp://*:5", "tcp://10.0.0.2:5", "tcp://[::]:5", "tcp://eth0:5", "pgm://x"):
        assert not is_loopback(exposed), exposed


def _ask(address: str, frames: list[bytes], timeout_s: float = 20.0) -> dict | None:
    """Send one request (its frames) on a fresh REQ socket; the reply as a dict, None if none came."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(address)
        sock.send_multipart(frames)
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            return None
        reply = json.loads(sock.recv())
        assert isinstance(reply, dict)
        return reply
    finally:
        sock.close(0)


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory):
    """A real replay (looping, hooks only) with its control endpoint on a free loopback port."""
    log = numbered_log(tmp_path_factory.mktemp("control") / "log", 100, 5 * MS, format="native")
    with mcl.Replay(log, hooks=[lambda r: None], loop=True) as replay:
        quits: list[int] = []
        with ControlServer(replay, "tcp://127.0.0.1:0", on_quit=lambda: quits.append(1)) as server:
            yield server


@pytest.mark.slow
@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b'{"cmd": "seek", "time": 1e300}'], "position must be"),
        ([b'{"cmd": "seek", "time": ' + b"9" * 400 + b"}"], "out of range"),
        ([b'{"cmd": "speed", "speed": ' + b"9" * 400 + b"}"], "out of range"),
        ([b'{"cmd": "speed", "speed": 1e300}'], "speed must be between"),
        ([b'{"cmd": "speed", "speed": NaN}'], "NaN"),
        ([b'{"cmd": "seek", "time": true}'], "must be a number"),
        ([b'{"cmd": "seek", "time": "3"}'], "must be a number"),
        ([b'{"cmd": "seek"}'], 'missing field "time"'),
        ([b'{"cmd": "status"}', b"second frame"], "one frame, not 2"),
        ([b"\xff\xfe"], "not a JSON request"),
        ([b"[" * 100_00 + b"]" * 100_00], "nested too deeply"),
        ([b'{"cmd": 7}'], '"cmd" string'),
        ([b'{"cmd": "dance"}'], "unknown cmd"),
    ],
)
def test_control_refuses_bad_requests_and_lives_on(control: ControlServer, frames: list[bytes], reason: str) -> None:
    """Each crafted request gets ok: false with the reason; a status request still answers after it."""
    reply = _ask(control.address, frames)
    assert reply is not None and reply["ok"] is False and reason in reply["error"], reply
    status = _ask(control.address, [b'{"cmd": "status"}'])
    assert status is not None and status["ok"] is True, status


@pytest.mark.slow
def test_control_drops_an_oversized_request_and_lives_on(control: ControlServer) -> None:
    """A request over MAX_REQUEST_BYTES is dropped by ZeroMQ (no reply); the next client is served."""
    assert _ask(control.address, [b" " * (MAX_REQUEST_BYTES + 1)], timeout_s=1.0) is None
    status = _ask(control.address, [b'{"cmd": "status"}'])
    assert status is not None and status["ok"] is True


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(frames=control_requests())
def test_control_answers_every_request(control: ControlServer, frames: list[bytes]) -> None:
    """Fuzz: any request gets one JSON reply (ok, or ok: false with a reason); the endpoint stays up."""
    reply = _ask(control.address, frames)
    assert reply is not None, f"no reply to {frames!r}"
    assert isinstance(reply["ok"], bool)
    if not reply["ok"]:
        assert isinstance(reply["error"], str) and reply["error"] and "internal error" not in reply["error"], reply
    assert control._thread.is_alive()
    status = _ask(control.address, [b'{"cmd": "status"}'])
    assert status is not None and status["ok"] is True, status


@pytest.mark.slow
def test_mcl_replay_warns_about_a_non_loopback_control_bind(tmp_path: Path) -> None:
    """--control on every interface: a warning line says who can reach it; the replay runs as usual."""
    log = numbered_log(tmp_path / "log", 20, 10 * MS, format="native")
    done = subprocess.run(
        [sys.executable, "-m", "mcl.cli.replay", str(log), "--dry-run", "--control", "tcp://0.0.0.0:0"],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT), stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("mcl-replay: warning: ")]
    assert len(warnings) == 1 and "not on loopback" in warnings[0] and "anyone who can connect" in warnings[0]
    local = subprocess.run(
        [sys.executable, "-m", "mcl.cli.replay", str(log), "--dry-run", "--control", "0"],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT), stdin=subprocess.DEVNULL,
    )
    assert local.returncode == 0 and "warning" not in local.stderr, local.stderr
