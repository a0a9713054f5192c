"""mcl-station under attack: schedules (DST, end-only windows), config corner cases, the control endpoint, runners."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import pytest
import zmq

import mcl
from mcl.station import Station, StationError
from mcl.station.config import OffloadOptions, parse_duration_ns
from mcl.station.control import MAX_IN_FLIGHT, ControlClient
from mcl.station.offload import OffloadError, Offloader
from mcl.station.schedule import iter_sessions, next_sessions, parse_schedule

from station_helpers import S, TESTS, process_gone, run_cli, runner, unit, utc, wait_for


def check_error(tmp_path: Path, text: str) -> str:
    """`mcl-station check` of `text`: exit 1 and exactly one error line naming the file; returns that line."""
    path = tmp_path / "station.toml"
    path.write_text(text)
    code, out, err = run_cli("check", str(path))
    assert code == 1 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mcl-station: error: {path}: "), err
    return lines[0]


# -- schedules (pure, fixed `now`) -----------------------------------------------------------


def test_every_with_only_an_end_keeps_its_period() -> None:
    """{end, every, for} without a start: sessions stay `every` apart (not back to back as the last one ends)."""
    sched = parse_schedule({"end": "2026-05-01T13:00:00Z", "every": "2m", "for": "30s", "timezone": "UTC"}, parse_duration_ns)
    now = utc("2026-05-01T12:00:10+00:00")
    first, second = next_sessions(sched, now, 2)
    assert first.start_ns == utc("2026-05-01T12:02:00+00:00") and first.end_ns == first.start_ns + 30 * S
    # The station asks again when the first session ended: the next one is still on the 2-minute grid.
    (again,) = next_sessions(sched, first.end_ns, 1)
    assert again == second and again.start_ns == first.start_ns + 120 * S
    # Nothing starts at or after the end; the last session is cut there.
    last = list(iter_sessions(sched, now))[-1]
    assert last.start_ns == utc("2026-05-01T12:58:00+00:00")
    assert list(iter_sessions(sched, utc("2026-05-01T13:00:00+00:00"))) == []


def test_windows_across_midnight_on_dst_nights() -> None:
    """22:00-06:00 Europe/Paris: 7 h on the spring-forward night, 9 h on the fall-back night, local times kept."""
    sched = parse_schedule({"window": "22:00-06:00", "timezone": "Europe/Paris"}, parse_duration_ns)
    (spring,) = next_sessions(sched, utc("2026-03-28T12:00:00+00:00"), 1)  # clocks go forward 2026-03-29 02:00
    assert spring.start_ns == utc("2026-03-28T21:00:00+00:00")  # 22:00 CET
    assert spring.end_ns == utc("2026-03-29T04:00:00+00:00")  # 06:00 CEST
    (fall,) = next_sessions(sched, utc("2026-10-24T12:00:00+00:00"), 1)  # clocks go back 2026-10-25 03:00
    assert fall.start_ns == utc("2026-10-24T20:00:00+00:00")  # 22:00 CEST
    assert fall.end_ns == utc("2026-10-25T05:00:00+00:00")  # 06:00 CET
    assert (spring.end_ns - spring.start_ns, fall.end_ns - fall.start_ns) == (7 * 3600 * S, 9 * 3600 * S)


def test_sessions_every_hour_through_a_dst_change_stay_in_order() -> None:
    """every 1h for 10m, whole day, Europe/Paris on the fall-back day: increasing, never overlapping, none in the past."""
    sched = parse_schedule({"every": "1h", "for": "10m", "timezone": "Europe/Paris"}, parse_duration_ns)
    now = utc("2026-10-24T21:30:00+00:00")
    sessions = next_sessions(sched, now, 30)
    assert sessions[0].start_ns >= now
    for a, b in zip(sessions, sessions[1:]):
        assert a.end_ns is not None and a.start_ns < a.end_ns <= b.start_ns


def test_a_station_started_mid_session_skips_it_and_one_started_mid_window_joins() -> None:
    """Times already past are skipped: inside a 30 s session the next one is the following grid point."""
    sched = parse_schedule({"window": "06:00-20:00", "every": "2m", "for": "30s", "timezone": "UTC"}, parse_duration_ns)
    (s,) = next_sessions(sched, utc("2026-07-01T10:00:10+00:00"), 1)
    assert s.start_ns == utc("2026-07-01T10:02:00+00:00")
    whole = parse_schedule({"window": "06:00-20:00", "timezone": "UTC"}, parse_duration_ns)
    now = utc("2026-07-01T10:00:10+00:00")
    assert next_sessions(whole, now, 1)[0].start_ns == now


# -- config values -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("5min", 300), ("1h30min", 5400), ("2m", 120), ("1d", 86400), ("250ms", 0.25), ("1m30s", 90)])
def test_durations_with_every_listed_unit(text: str, seconds: float) -> None:
    """'min' is a unit like the others (it was read as 'm' then refused)."""
    assert parse_duration_ns(text) == round(seconds * S)


# -- offload ----------------------------------------------------------------------------


@pytest.mark.parametrize("destination", ["logs", "logs/share", "./logs/../logs"])
def test_an_offload_destination_inside_its_source_is_refused(tmp_path: Path, destination: str) -> None:
    """Destination = source would 'verify' a file against itself, then delete the only copy; below it, copy forever."""
    line = check_error(tmp_path, f"[units.off]\nkind = 'offload'\nsource = 'logs'\ndestination = '{destination}'\n")
    assert "unit 'off': key 'destination':" in line and "inside the source" in line


def test_an_offload_destination_that_links_into_the_source_keeps_the_local_log(tmp_path: Path) -> None:
    """A destination that became a link into the source (a mount gone wrong) is refused at run time; nothing is removed."""
    source = tmp_path / "logs"
    with mcl.LogWriter(source / "one") as writer:
        for i in range(20):
            writer.write("data", b"x" * 100, i * 1_000_000)
    share = tmp_path / "share"
    share.symlink_to(source)
    offloader = Offloader(OffloadOptions(source=source, destination=share, keep_local_ns=0, settle_ns=0), logging.getLogger("test.offload"))
    with pytest.raises(OffloadError, match="inside the source"):
        offloader.run_once()
    assert offloader.status()["destination_error"] is not None
    with mcl.open_log(source / "one") as reader:
        assert sum(1 for _ in reader) == 20


# -- runner classes at `check` ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("no_such_module_here:Scale", "cannot import runner class 'no_such_module_here:Scale': ModuleNotFoundError"),
        ("station_runners:NoSuchClass", "cannot import runner class 'station_runners:NoSuchClass': AttributeError"),
        ("builtins:dict", "'builtins:dict' is not a subclass of mcl.station.Runner"),
        ("station_runners:time", "'station_runners:time' is not a subclass of mcl.station.Runner"),
        ("broken_at_import:Scale", "cannot import runner class 'broken_at_import:Scale': ZeroDivisionError"),
    ],
)
def test_check_imports_the_runner_classes(tmp_path: Path, ref: str, expected: str) -> None:
    """check names a runner class that cannot run (missing, not a Runner, failing at import): one line, unit and key."""
    (tmp_path / "broken_at_import.py").write_text("x = 1 / 0\n")
    text = f"[units.scale]\nkind = 'runner'\nclass = '{ref}'\npython_path = ['{TESTS}', '{tmp_path}']\n"
    line = check_error(tmp_path, text)
    assert "unit 'scale': key 'class': " + expected in line


def test_check_imports_a_good_runner_class_and_can_skip_imports(tmp_path: Path) -> None:
    """A good class passes; --no-import skips the import (only the syntax of the reference is checked)."""
    path = tmp_path / "station.toml"
    path.write_text(f"[units.t]\nkind = 'runner'\nclass = 'station_runners:Ticker'\npython_path = ['{TESTS}']\n")
    code, out, err = run_cli("check", str(path))
    assert code == 0 and "station_runners:Ticker" in out, err
    path.write_text("[units.t]\nkind = 'runner'\nclass = 'no_such_module_here:X'\n")
    code, out, err = run_cli("check", str(path), "--no-import")
    assert code == 0 and err == ""


# -- the control endpoint, attacked by a local client (real station, real unit processes) -----------------

@pytest.fixture
def gate_station(tmp_path: Path, mcl_bus: str) -> Iterator[Station]:
    """A station with one 'gate' runner (slow and bad command replies), running."""
    with Station({"station": {"bus": mcl_bus}, "units": {"gate": runner("Gate", period=0.2, stuck_timeout=120)}}, base_dir=tmp_path) as s:
        wait_for(lambda: unit(s, "gate")["pid"], what="the gate unit running")
        yield s


@pytest.fixture
def control_socket(gate_station: Station) -> Iterator[Callable[[int], zmq.Socket[Any]]]:
    """Makes sockets (REQ, DEALER) connected to the station's control endpoint; closes them all after the test."""
    context: zmq.Context[Any] = zmq.Context()
    made: list[zmq.Socket[Any]] = []

    def make(kind: int) -> zmq.Socket[Any]:
        sock = context.socket(kind)
        made.append(sock)
        sock.linger = 0
        sock.connect(f"ipc://{gate_station.run_dir / 'control.sock'}")
        return sock

    yield make
    for sock in made:
        sock.close(0)
    context.term()


@pytest.mark.slow
def test_a_slow_request_does_not_hold_up_status(tmp_path: Path, gate_station: Station, control_socket: Callable[[int], zmq.Socket[Any]]) -> None:
    """While one client waits for a slow command, another gets its status at once; the slow one's reply comes later."""
    flag = tmp_path / "go"
    slow = control_socket(zmq.REQ)
    slow.send(json.dumps({"cmd": "send", "unit": "gate", "command": "wait", "data": {"path": str(flag)}, "timeout": 60}).encode())
    wait_for((tmp_path / "go.waiting").exists, what="the slow request reaching the unit's handler")
    with ControlClient(gate_station.run_dir, timeout=30.0) as client:
        status = client.request("status")  # before: queued behind the slow request until its 60 s ran out
    assert status["units"][0]["name"] == "gate"
    assert not slow.poll(0)  # the slow request is still under way (its handler waits for the flag)
    flag.touch()
    assert slow.poll(30_000), "no reply to the slow request"
    reply = json.loads(slow.recv())
    assert reply == {"ok": True, "result": {"waited_for": str(flag), "there": True}}


@pytest.mark.slow
def test_too_many_requests_at_once_get_busy_and_the_station_lives_on(tmp_path: Path, gate_station: Station, control_socket: Callable[[int], zmq.Socket[Any]]) -> None:
    """A DEALER floods slow requests without reading: beyond MAX_IN_FLIGHT they are refused at once; status still works."""
    flag = tmp_path / "go"
    flood = control_socket(zmq.DEALER)
    request = json.dumps({"cmd": "send", "unit": "gate", "command": "wait", "data": {"path": str(flag)}, "timeout": 60}).encode()
    for _ in range(MAX_IN_FLIGHT + 3):
        flood.send_multipart([b"", request])
    busy = []
    for _ in range(3):
        assert flood.poll(30_000), "no busy reply"
        busy.append(json.loads(flood.recv_multipart()[-1]))
    assert all(r["ok"] is False and r["error"].startswith("busy:") for r in busy)
    with ControlClient(gate_station.run_dir, timeout=30.0) as client:  # status has threads of its own
        assert client.request("status")["units"][0]["state"] == "running"
    flag.touch()  # the slow ones end; their replies queue for a client that reads them later (or never)
    for _ in range(MAX_IN_FLIGHT):
        assert flood.poll(30_000), "a slow request got no reply"
        assert json.loads(flood.recv_multipart()[-1])["ok"] is True


@pytest.mark.slow
def test_hostile_clients_get_error_replies(gate_station: Station, control_socket: Callable[[int], zmq.Socket[Any]]) -> None:
    """Garbage on the raw socket, frames without a delimiter, wrong types, bad replies of a unit: error replies, station alive."""
    address = str(gate_station.run_dir / "control.sock")
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # not ZeroMQ at all, and never reads
    try:
        raw.connect(address)
        raw.sendall(b"\xff" * 10_000)
        dealer = control_socket(zmq.DEALER)
        dealer.send(b'{"cmd": "status"}')  # no empty delimiter frame: answered the same way
        assert dealer.poll(30_000) and json.loads(dealer.recv_multipart()[-1])["ok"] is True
        dealer.send_multipart([b"", b'{"cmd": "status"}', b"more"])
        assert dealer.poll(30_000) and "one frame" in json.loads(dealer.recv_multipart()[-1])["error"]
        for request in (
            {"cmd": 3},
            {"cmd": "stop", "unit": ["gate"]},
            {"cmd": "send", "unit": "gate", "command": "wait", "timeout": "soon"},
            {"cmd": "send", "unit": "gate", "command": "wait", "timeout": 1e309},
            {"cmd": "send", "unit": "nobody", "command": "x"},
            {"cmd": "send", "unit": "gate", "command": "__stop__"},
        ):
            dealer.send_multipart([b"", json.dumps(request).encode()])
            assert dealer.poll(30_000), request
            reply = json.loads(dealer.recv_multipart()[-1])
            assert reply["ok"] is False and reply["error"] and "\n" not in reply["error"], (request, reply)
        with ControlClient(gate_station.run_dir, timeout=30.0) as client:
            for command, expected in (("nan", "not JSON"), ("object", "not JSON"), ("nope", "known: exit, nan, object, status, wait")):
                with pytest.raises(StationError, match=expected):
                    client.request("send", unit="gate", command=command, timeout=30)
        assert unit(gate_station, "gate")["restarts"] == 0
    finally:
        raw.close()


@pytest.mark.slow
def test_a_handler_raising_systemexit_restarts_only_its_unit(gate_station: Station) -> None:
    """A command handler that exits its process: the sender gets an error, the unit is restarted, the station goes on."""
    pid = unit(gate_station, "gate")["pid"]
    with pytest.raises(StationError, match="stopped before answering|not running"):
        gate_station.send("gate", "exit", timeout=30)
    st = wait_for(lambda: (u := unit(gate_station, "gate"))["restarts"] == 1 and u["pid"] not in (None, pid) and u, what="the unit restarted")
    assert "code 3" in st["last_error"]


# -- reload -------------------------------------------------------------------------------


def _toml(units: dict[str, str], bus: str) -> str:
    return f'[station]\nname = "review"\nbus = "{bus}"\n\n' + "".join(f"[units.{name}]\n{body}\n" for name, body in units.items())


@pytest.mark.slow
def test_a_unit_removed_then_put_back_while_it_stops_runs_again(tmp_path: Path, mcl_bus: str) -> None:
    """Reload removes 'a' (slow to stop); a second reload puts it back before it stopped: it starts again, not dropped."""
    flag = tmp_path / "go"
    body = f"kind = 'runner'\nclass = 'station_runners:SlowStop'\npython_path = ['{TESTS}']\nperiod = 0.2\nconfig = {{ flag = '{flag}' }}\n"
    keep = f"kind = 'runner'\nclass = 'station_runners:Ticker'\npython_path = ['{TESTS}']\nperiod = 0.2\n"
    path = tmp_path / "station.toml"
    path.write_text(_toml({"a": body, "keep": keep}, mcl_bus))
    with Station(path, watch=False) as s:
        pid = wait_for(lambda: unit(s, "a")["pid"], what="a running")
        path.write_text(_toml({"keep": keep}, mcl_bus))
        assert s.reload() == {"added": [], "removed": ["a"], "changed": []}
        wait_for((tmp_path / "go.stopping").exists, what="a stopping (in its teardown)")
        path.write_text(_toml({"a": body, "keep": keep}, mcl_bus))
        assert s.reload() == {"added": ["a"], "removed": [], "changed": []}
        flag.touch()  # a's old process ends now
        st = wait_for(lambda: (u := {x["name"]: x for x in s.status()["units"]}.get("a")) and u["pid"] not in (None, pid) and u, what="a started again")
        assert st["state"] == "running"
        assert s.reload() == {"added": [], "removed": [], "changed": []}  # and it is a member like the others


# -- no orphans ----------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    """The child processes of `pid` (from /proc; empty once it is gone)."""
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.update(int(c) for c in (task / "children").read_text().split())
    except OSError:
        pass
    return found


@pytest.mark.slow
def test_no_orphans_after_sigkill_with_a_stuck_runner_and_a_replay(tmp_path: Path, mcl_bus: str) -> None:
    """SIGKILL of `mcl-station run`: a runner blocked in iterate() and a replay's worker processes end too."""
    import subprocess
    import sys

    flag = tmp_path / "hanging"
    sample = TESTS.parent / "sample_logs" / "vehicle"
    path = tmp_path / "station.toml"
    path.write_text(
        _toml(
            {
                "hang": f"kind = 'runner'\nclass = 'station_runners:Hang'\npython_path = ['{TESTS}']\nstuck_timeout = 300\nconfig = {{ flag = '{flag}' }}\n",
                "demo": f"kind = 'replay'\nlog = '{sample}'\nloop = true\n",
            },
            mcl_bus,
        )
    )
    proc = subprocess.Popen([sys.executable, "-m", "mcl.cli.station", "run", str(path), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids: set[int] = set()
    try:
        wait_for((tmp_path / "run" / "control.sock").exists, what="the station up")
        with ControlClient(tmp_path / "run", timeout=30.0) as client:
            units = wait_for(lambda: (st := {u["name"]: u for u in client.request("status")["units"]}) and all(u["pid"] for u in st.values()) and st, what="both units running")
        wait_for(flag.exists, what="the runner blocked in iterate()")
        workers = wait_for(lambda: _children(units["demo"]["pid"]), what="the replay's workers")
        pids = {units["hang"]["pid"], units["demo"]["pid"], *workers}
        proc.kill()
        proc.wait(30)
        for pid in sorted(pids):
            wait_for(lambda pid=pid: process_gone(pid), what=f"process {pid} gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in pids:  # what this test started and left behind (the defect): ended by its pid
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)


# -- hostile runners -------------------------------------------------------------------------


@pytest.mark.slow
def test_runners_that_publish_garbage_or_fail_setup_never_kill_the_station(tmp_path: Path, mcl_bus: str) -> None:
    """An unencodable publish is an iterate() error (counted, same process); a failing setup() restarts, then `failed`."""
    config = {
        "station": {"bus": mcl_bus},
        "units": {"bad": runner("Unencodable", period=0.1), "setup": runner("BadSetup", max_restarts=1), "ok": runner("Ticker", period=0.2)},
    }
    with Station(config, base_dir=tmp_path) as s:
        bad = wait_for(lambda: (u := unit(s, "bad"))["errors"] >= 2 and u, what="the publish errors counted")
        assert bad["state"] == "running" and bad["restarts"] == 0 and "iterate() raised" in bad["last_error"]
        setup = wait_for(lambda: (u := unit(s, "setup"))["state"] == "failed" and u, what="the bad setup failed")
        assert setup["restarts"] == 1 and "no such device /dev/ttyUSB9" in setup["last_error"] and setup["pid"] is None
        assert setup["next_start"] is None
        ok = unit(s, "ok")
        assert ok["state"] == "running" and ok["restarts"] == 0 and ok["errors"] == 0


@pytest.mark.slow
def test_a_session_that_began_while_the_last_one_closed_is_joined(tmp_path: Path, mcl_bus: str) -> None:
    """8 s every 10 s: the first session's unit takes until 10.5 s to stop; the second session is joined, not skipped."""
    flag, starts = tmp_path / "go", tmp_path / "starts"
    begin = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0) + _dt.timedelta(seconds=3)
    schedule = {"start": begin.isoformat(), "end": (begin + _dt.timedelta(seconds=30)).isoformat(), "every": "10s", "for": "8s"}
    config = {"station": {"bus": mcl_bus}, "units": {"slow": runner("SlowSession", period=0.2, schedule=schedule, config={"flag": str(flag), "starts": str(starts)})}}
    begin_ns = int(begin.timestamp()) * S
    with Station(config, base_dir=tmp_path) as s:
        wait_for((tmp_path / "go.stopping").exists, what="the first session over (the unit in its slow teardown)")
        wait_for(lambda: time.time_ns() > begin_ns + 10 * S + S // 2, what="the second session begun")  # time must pass: that is the case
        flag.touch()  # the first session's process ends now, inside the second session
        wait_for(lambda: starts.is_file() and len(starts.read_text().split()) >= 2, what="a process for the second session")
        started = [int(t) for t in starts.read_text().split()]
        assert begin_ns <= started[0] < begin_ns + 8 * S
        assert begin_ns + 10 * S <= started[1] < begin_ns + 18 * S  # joined (before: skipped to the third, at 20 s)
        s.stop_unit("slow")


@pytest.mark.parametrize("value", ["0", "1", "512 B", 0])
def test_a_station_log_smaller_than_1_kib_is_refused(tmp_path: Path, value: Any) -> None:
    """log_max_bytes = 0 was taken as 1 byte (a rotation per line, backups overwritten at once)."""
    line = check_error(tmp_path, f"[station]\nlog_max_bytes = {json.dumps(value)}\n")
    assert "line 2: key 'log_max_bytes':" in line and "minimum of 1024 bytes" in line


def test_a_station_never_started_holds_no_file_descriptor(tmp_path: Path) -> None:
    """Station(config) only parses: nothing to close when it is not started (it made a pipe before)."""
    before = len(list(Path("/proc/self/fd").iterdir()))
    stations = [Station({"units": {}}, base_dir=tmp_path) for _ in range(20)]
    assert len(list(Path("/proc/self/fd").iterdir())) - before < 5
    for s in stations:
        s.stop()  # idempotent, also never started


def test_a_local_log_is_not_removed_when_its_verified_copy_is_gone(tmp_path: Path) -> None:
    """keep_local later, the copy was deleted from the share: the local file stays and is offloaded again, then removed."""
    source, share = tmp_path / "logs", tmp_path / "share"
    share.mkdir()
    with mcl.LogWriter(source / "one") as writer:
        for i in range(30):
            writer.write("data", bytes([i]) * 100, i * 1_000_000)
    now = [time.time_ns() + 60 * S]  # a clock of our own: keep_local passes without waiting
    offloader = Offloader(OffloadOptions(source=source, destination=share, keep_local_ns=3600 * S, settle_ns=0), logging.getLogger("test.offload"), now_ns=lambda: now[0])
    offloader.run_once()
    copy = share / "one" / "data_0000.mcln"
    assert offloader.status()["offloaded"] == 1 and copy.is_file()
    copy.unlink()  # the share lost it within keep_local
    now[0] += 2 * 3600 * S
    offloader.run_once()  # before: the local file was removed here, and neither copy existed
    assert (source / "one" / "data_0000.mcln").is_file() and "offloading it again" in offloader.status()["last_error"]
    offloader.run_once()  # copied and verified again
    assert offloader.status()["offloaded"] == 2 and copy.is_file()
    now[0] += 2 * 3600 * S
    offloader.run_once()
    assert offloader.status()["removed"] == 1 and not (source / "one").exists()
    with mcl.open_log(share / "one") as reader:
        assert sum(1 for _ in reader) == 30


def test_the_removal_waits_while_the_destination_is_not_reachable(tmp_path: Path) -> None:
    """keep_local later, the share is not mounted: the local file stays, its marker too; once back, it goes."""
    source, share = tmp_path / "logs", tmp_path / "share"
    share.mkdir()
    with mcl.LogWriter(source / "one") as writer:
        writer.write("data", b"x", 0)
    now = [time.time_ns() + 60 * S]
    offloader = Offloader(OffloadOptions(source=source, destination=share, keep_local_ns=3600 * S, settle_ns=0), logging.getLogger("test.offload"), now_ns=lambda: now[0])
    offloader.run_once()
    share.rename(tmp_path / "unmounted")
    now[0] += 2 * 3600 * S
    offloader.run_once()
    assert (source / "one" / "data_0000.mcln").is_file() and (source / "one" / ".data_0000.mcln.offloaded.json").is_file()
    assert "cannot be checked" in offloader.status()["last_error"]
    (tmp_path / "unmounted").rename(share)
    offloader.run_once()
    assert offloader.status()["removed"] == 1 and offloader.status()["offloaded"] == 1
