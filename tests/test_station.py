"""mcl-station: configuration errors, schedules, back-off, and real stations with real unit processes."""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import mcl
from mcl.station import Station, StationConfigError, StationError, load_config, parse_config
from mcl.station.config import parse_duration_ns, parse_size
from mcl.station.schedule import iter_sessions, next_sessions, parse_schedule
from mcl.station.supervisor import STATES, RestartPolicy

from station_helpers import S, TIMEOUT, process_gone, run_cli, runner, unit, utc, wait_for


@pytest.fixture
def stations() -> Iterator[list[Station]]:
    """Stations started by a test; all stopped after it."""
    started: list[Station] = []
    yield started
    for s in started:
        s.stop()


def start(stations: list[Station], config: Any, **kwargs: Any) -> Station:
    s = Station(config, **kwargs)
    stations.append(s)
    return s.start()


# -- configuration ---------------------------------------------------------------------

GOOD = """
[station]
name = "hive-3"
run_dir = "run"
min_free = "1 GiB"

[units.everything]
kind = "recorder"
out = "logs/all"
topics = ["scale", "audio"]
split_duration = 600
max_files = 200

[units.audio]
kind = "recorder"
out = "logs/audio"
topics = ["audio"]
schedule = { window = "06:00-20:00", every = "2m", for = "30s", timezone = "Europe/Paris" }

[units.offload]
kind = "offload"
source = "logs"
destination = "/mnt/share/hive-3"
keep_local = "2d"

[units.demo]
kind = "replay"
log = "sample_logs/vehicle"
loop = true
auto_start = false
"""


def test_the_example_of_the_issue_parses(tmp_path: Path) -> None:
    """The issue's TOML (less the runner) parses; relative paths are relative to the file; sizes and times converted."""
    path = tmp_path / "station.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.name == "hive-3"
    assert config.run_dir == tmp_path / "run"
    assert config.min_free == 1 << 30
    everything = config.unit("everything")
    assert everything is not None and everything.options.out == tmp_path / "logs/all"  # type: ignore[union-attr]
    assert everything.options.split_duration_ns == 600 * S  # type: ignore[union-attr]
    assert everything.options.min_free == 1 << 30  # type: ignore[union-attr]
    audio = config.unit("audio")
    assert audio is not None and audio.schedule is not None
    assert audio.schedule.every_ns == 120 * S and audio.schedule.for_ns == 30 * S
    offload = config.unit("offload")
    assert offload is not None and offload.options.keep_local_ns == 2 * 86400 * S  # type: ignore[union-attr]
    demo = config.unit("demo")
    assert demo is not None and demo.auto_start is False


BAD = [
    ("[units.a]\nkind = 'sensor'\n", "line 2: unit 'a': key 'kind': unknown unit kind 'sensor'"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\ntpoics = ['a']\n", "line 4: unit 'a': key 'tpoics': unknown key for a recorder unit"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nmax_files = 0\n", "line 4: unit 'a': key 'max_files': 0 is not a whole number >= 1"),
    ("[units.a]\nkind = 'recorder'\n", "unit 'a': key 'out': a recorder unit needs 'out'"),
    ("[units.a]\nkind = 'runner'\nclass = 'nocolon'\n", "line 3: unit 'a': key 'class': 'nocolon' is not 'package.module:ClassName'"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nschedule = { window = '25:00-26:00' }\n", "line 4: unit 'a': key 'schedule': window '25:00-26:00': not times of day"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nschedule = { every = '2m', for = '30s', timezone = 'Mars/Olympus' }\n", "unknown time zone 'Mars/Olympus'"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nschedule = { every = '1m', for = '2m' }\n", "'for' (120 s) is longer than 'every' (60 s)"),
    ("[station]\nmin_free = 'lots'\n", "line 2: key 'min_free': 'lots' is not a size"),
    ("[station]\nnmae = 'x'\n", "line 2: key 'nmae': unknown key in [station]"),
    ("[units.a]\nkind = 'runner'\nclass = 'a:B'\nperiod = 'soon'\n", "line 4: unit 'a': key 'period': 'soon' is not a duration"),
    ("[units.a]\nkind = 'bus'\nbind = 'tcp://127.0.0.1:5000'\n[units.b]\nkind = 'bus'\nbind = 'tcp://127.0.0.1:5000'\n", "unit 'b': key 'bind': unit 'a' already binds"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\n[units.b]\nkind = 'recorder'\nout = 'x'\n", "unit 'b': key 'out':"),
    ("[units.a]\nkind = 'offload'\nsource = 'x'\ndestination = 'y'\nschedule = { every = '2m', for = '1m' }\n", "an offload unit runs continuously"),
    ("[units.a]\nkind = 'recorder'\nout = 'x'\nbus = 'tcp://nowhere'\n", "unit 'a': key 'bus':"),
    ("[units]\na = 3\n", "unit 'a': a unit must be a table"),
    ("[units.a]\nkind = 'recorder'\nout = \n", "line 3, column 7: TOML syntax error: Invalid value"),
    ("[units.a\nkind = 'recorder'\n", "line 1, column 9: TOML syntax error"),
    ("[extra]\n", "unknown table 'extra'"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_configs_give_one_line_each(tmp_path: Path, text: str, expected: str) -> None:
    """mcl-station check: exit 1, one 'error:' line naming the file, the unit, the key (and line / column)."""
    path = tmp_path / "station.toml"
    path.write_text(text)
    code, out, err = run_cli("check", str(path))
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mcl-station: error: {path}: ")
    assert expected in lines[0]
    assert out == ""


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    """A file that does not exist: one line, exit 1 (run and check alike)."""
    for verb in ("check", "run"):
        code, _, err = run_cli(verb, str(tmp_path / "nope.toml"))
        assert code == 1 and err.count("\n") == 1 and "nope.toml: cannot read" in err


def test_check_prints_the_plan(tmp_path: Path) -> None:
    """check lists the units and the next capture windows of a scheduled unit, in UTC."""
    path = tmp_path / "station.toml"
    path.write_text(GOOD)
    code, out, err = run_cli("check", str(path), "--json", "--sessions", "2")
    assert code == 0, err
    plan = json.loads(out)
    assert [u["name"] for u in plan["units"]] == ["everything", "audio", "offload", "demo"]
    sessions = plan["units"][1]["sessions"]
    assert len(sessions) == 2
    a, b = (_dt.datetime.fromisoformat(s["start"].replace("Z", "+00:00")) for s in sessions)
    assert b - a == _dt.timedelta(minutes=2) or b.astimezone(_dt.timezone.utc).hour != a.astimezone(_dt.timezone.utc).hour
    code, out, _ = run_cli("check", str(path))
    assert code == 0 and "audio" in out and "session" in out


def test_durations_and_sizes() -> None:
    """Durations in seconds or with units, sizes SI / IEC; zero and garbage refused."""
    assert parse_duration_ns("1h30m") == 5400 * S
    assert parse_duration_ns("500ms") == S // 2
    assert parse_duration_ns(2.5) == 2_500_000_000
    assert parse_duration_ns("0s", allow_zero=True) == 0
    for bad in ("0", "-1s", "1 fortnight", True, "", None):
        with pytest.raises(ValueError):
            parse_duration_ns(bad)
    assert parse_size("1 GiB") == 1 << 30
    assert parse_size("500 MB") == 500_000_000
    assert parse_size(512, number_unit=1_000_000) == 512_000_000
    for bad in ("a lot", -1, "1 GiBs"):
        with pytest.raises(ValueError):
            parse_size(bad)


# -- schedules (pure, no waiting) -----------------------------------------------------------


def test_daily_window_in_a_time_zone() -> None:
    """06:00-20:00 Europe/Paris, 30 s every 2 min: sessions in Paris time, past ones skipped, cut at the window's end."""
    sched = parse_schedule({"window": "06:00-20:00", "every": "2m", "for": "30s", "timezone": "Europe/Paris"}, parse_duration_ns)
    # 2026-07-01 10:01 Paris (UTC+2) = 08:01 UTC: the next session is 10:02 Paris.
    now = utc("2026-07-01T08:01:00+00:00")
    first, second = next_sessions(sched, now, 2)
    assert first.start_ns == utc("2026-07-01T08:02:00+00:00") and first.end_ns == first.start_ns + 30 * S
    assert second.start_ns == first.start_ns + 120 * S
    # At 19:59:10 Paris the 19:58 session has started (skipped); the next is tomorrow 06:00 Paris.
    late = utc("2026-07-01T17:59:10+00:00")
    assert next_sessions(sched, late, 1)[0].start_ns == utc("2026-07-02T04:00:00+00:00")
    # In winter Paris is UTC+1.
    assert next_sessions(sched, utc("2026-12-01T03:00:00+00:00"), 1)[0].start_ns == utc("2026-12-01T05:00:00+00:00")


def test_window_crossing_midnight_and_whole_window_session() -> None:
    """22:00-06:00 without every is one session per night; a station started inside it joins for the rest."""
    sched = parse_schedule({"window": "22:00-06:00", "timezone": "UTC"}, parse_duration_ns)
    now = utc("2026-03-10T23:30:00+00:00")
    s1, s2 = next_sessions(sched, now, 2)
    assert (s1.start_ns, s1.end_ns) == (now, utc("2026-03-11T06:00:00+00:00"))
    assert (s2.start_ns, s2.end_ns) == (utc("2026-03-11T22:00:00+00:00"), utc("2026-03-12T06:00:00+00:00"))


def test_the_whole_day_window() -> None:
    """00:00-24:00 is the whole day (one session per day, joined at once); HH:MM-same HH:MM is refused."""
    sched = parse_schedule({"window": "00:00-24:00", "timezone": "UTC"}, parse_duration_ns)
    now = utc("2026-03-10T13:00:00+00:00")
    s1, s2 = next_sessions(sched, now, 2)
    assert (s1.start_ns, s1.end_ns) == (now, utc("2026-03-11T00:00:00+00:00"))
    assert (s2.start_ns, s2.end_ns) == (utc("2026-03-11T00:00:00+00:00"), utc("2026-03-12T00:00:00+00:00"))
    with pytest.raises(ValueError, match="is empty"):
        parse_schedule({"window": "06:00-06:00"}, parse_duration_ns)


def test_explicit_window_ends() -> None:
    """start / end in ISO: 1 s sessions every 2 s inside 6 s give 3 sessions, then nothing."""
    start = utc("2026-05-01T12:00:00+00:00")
    sched = parse_schedule({"start": "2026-05-01T12:00:00Z", "end": "2026-05-01T12:00:06Z", "every": 2, "for": 1}, parse_duration_ns)
    sessions = list(iter_sessions(sched, start - 10 * S))
    assert [(s.start_ns - start, (s.end_ns or 0) - start) for s in sessions] == [(0, S), (2 * S, 3 * S), (4 * S, 5 * S)]
    assert list(iter_sessions(sched, start + 6 * S)) == []
    assert [s.start_ns - start for s in iter_sessions(sched, start + 1)] == [2 * S, 4 * S]  # started ones skipped


def test_restart_back_off_doubles_resets_and_fails() -> None:
    """1, 2, 4 ... 60 s; after a minute of health back to 1 s; more than max_restarts in 10 minutes: failed."""
    policy = RestartPolicy(max_restarts=10)
    now = 0
    delays = []
    for _ in range(8):
        delays.append(policy.on_exit(now, now + S) // S)  # type: ignore[operator]
        now += 2 * S
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.on_exit(now, now + 61 * S) == S  # healthy for a minute: back to 1 s
    now += 62 * S
    assert policy.on_exit(now, now + S) == 2 * S
    assert policy.on_exit(now, now + 2 * S) is None  # the 11th restart within 10 minutes
    policy = RestartPolicy(max_restarts=2)
    assert policy.on_exit(0, S) == S and policy.on_exit(0, 2 * S) == 2 * S
    assert policy.on_exit(0, 700 * S) == S  # the earlier ones left the 10-minute window


# -- real stations --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_runner_that_raises_every_third_iteration_keeps_publishing(tmp_path: Path, mcl_bus: str, mcl_capture: Any, stations: list[Station]) -> None:
    """Errors of iterate() are counted and logged; the runner goes on publishing in the same process."""
    s = start(stations, {"station": {"name": "t", "bus": mcl_bus}, "units": {"flaky": runner("Flaky", period=0.05)}}, base_dir=tmp_path)
    got = mcl_capture.wait_for("flaky", count=8, timeout=TIMEOUT)
    numbers = [m.message["n"] for m in got]
    assert numbers[:6] == [1, 2, 4, 5, 7, 8][: len(numbers[:6])] or all(n % 3 for n in numbers)
    assert all(n % 3 for n in numbers)
    st = wait_for(lambda: (u := unit(s, "flaky"))["errors"] >= 2 and u, what="two errors counted")
    assert st["state"] == "running" and st["restarts"] == 0
    assert "iteration" in st["last_error"] and "fails on purpose" in st["last_error"]
    assert "fails on purpose" in (s.run_dir / "station.log").read_text()
    pid = st["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as fp:
        assert fp.read().startswith(b"mcl-station: flaky")


@pytest.mark.slow
def test_a_command_reaches_the_runner_and_its_reply_comes_back(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """Station.send and `mcl-station send` deliver to the @command handler; unknown commands name the known ones."""
    s = start(stations, {"station": {"bus": mcl_bus, "run_dir": "run"}, "units": {"cal": runner("Calibrated", period=0.1)}}, base_dir=tmp_path)
    wait_for(lambda: unit(s, "cal")["pid"] and unit(s, "cal").get("details", {}).get("iterations"), what="the runner iterating")
    reply = s.send("cal", "calibrate", {"offset": 2.5})
    assert reply["offset"] == 2.5 and reply["unit"] == "cal" and reply["iterations"] >= 1
    with pytest.raises(StationError, match=r"unknown command 'nope' .*known: calibrate, fail, status"):
        s.send("cal", "nope")
    with pytest.raises(StationError, match="the handler failed on purpose"):
        s.send("cal", "fail")
    with pytest.raises(StationError, match=r"no unit 'other'.*units: cal"):
        s.send("other", "calibrate")
    code, out, err = run_cli("send", "cal", "calibrate", "--data", '{"offset": 7}', "--run-dir", str(tmp_path / "run"))
    assert code == 0, err
    assert json.loads(out)["offset"] == 7.0
    code, out, err = run_cli("send", "cal", "nope", "--run-dir", str(tmp_path / "run"))
    assert code == 1 and err.startswith("mcl-station: error: ") and "known: calibrate, fail, status" in err and err.count("\n") == 1
    assert unit(s, "cal")["state"] == "running"


@pytest.mark.slow
def test_control_endpoint_is_private_and_answers_everything(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """Run dir 0700, socket 0600; malformed requests get an error reply; status works from the CLI (table and JSON)."""
    s = start(stations, {"station": {"bus": mcl_bus, "name": "ctl"}, "units": {"cal": runner("Calibrated", period=0.2)}}, base_dir=tmp_path)
    run_dir = tmp_path / "run"
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((run_dir / "control.sock").stat().st_mode) == 0o600
    context = zmq.Context()
    try:
        sock = context.socket(zmq.REQ)
        sock.linger = 0
        sock.connect(f"ipc://{run_dir / 'control.sock'}")
        for garbage in (b"\xff\xfe not json", b"[1, 2]", b'{"cmd": "explode"}', b'{"cmd": "send", "unit": "cal"}', b'{"cmd": "stop"}'):
            sock.send(garbage)
            assert sock.poll(20_000), f"no reply to {garbage!r}"
            reply = json.loads(sock.recv())
            assert reply["ok"] is False and reply["error"], garbage
        sock.send(b" " * (2 << 20))
        assert sock.poll(20_000) and "over the limit" in json.loads(sock.recv())["error"]
        sock.send_multipart([b"a", b"b"])
        assert sock.poll(20_000) and json.loads(sock.recv())["ok"] is False
        sock.close(0)
    finally:
        context.term()
    wait_for(lambda: unit(s, "cal")["pid"], what="the unit running")
    code, out, err = run_cli("status", "--run-dir", str(run_dir), "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["name"] == "ctl" and st["units"][0]["name"] == "cal" and st["units"][0]["state"] == "running"
    assert set(st["units"][0]) >= {"kind", "state", "pid", "restarts", "errors", "last_error", "log", "messages", "lost", "next_start"}
    assert set(st) >= {"name", "config", "reload_error", "units"} and all(u["state"] in STATES for u in st["units"])
    code, out, err = run_cli("status", "--run-dir", str(run_dir))
    assert code == 0 and "cal" in out and "running" in out
    s.stop()
    code, out, err = run_cli("status", "--run-dir", str(run_dir))
    assert code == 1 and err == f"mcl-station: error: no station runs in {run_dir}\n"
    code, out, err = run_cli("stop", "x", "--run-dir", str(tmp_path / "nowhere"))
    assert code == 1 and err.count("\n") == 1 and "no station runs in" in err


@pytest.mark.slow
def test_kill_9_of_a_recorder_unit_is_restarted_and_records_a_new_log(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """SIGKILL a recorder unit: restarted after the back-off, a new log records, the old one stays readable (indexed)."""
    config = {
        "station": {"bus": mcl_bus},
        "units": {"tick": runner("Ticker", period=0.02), "rec": {"kind": "recorder", "out": "logs", "topics": ["tick"]}},
    }
    s = start(stations, config, base_dir=tmp_path)
    first = wait_for(lambda: (u := unit(s, "rec"))["messages"] > 20 and u, what="the recorder recording")
    old_log = Path(first["log"])
    os.kill(first["pid"], signal.SIGKILL)
    restarted = wait_for(lambda: (u := unit(s, "rec"))["restarts"] == 1 and u["state"] == "running" and u["log"] and u, what="the recorder restarted")
    # messages count over the unit's processes: the new one adds to what the killed one had reported
    after = wait_for(lambda: (u := unit(s, "rec"))["messages"] > restarted["messages"] + 10 and u, what="the restarted recorder recording")
    assert after["pid"] != first["pid"]
    assert "SIGKILL" in after["last_error"]
    assert Path(after["log"]) != old_log
    with mcl.open_log(old_log) as reader:
        assert sum(1 for _ in reader) > 0  # what the killed recorder wrote reads back
    assert all(p.with_suffix(".mcli").exists() for p in old_log.glob("*.mcln"))  # indexed by the restarted unit
    s.stop()
    with mcl.open_log(after["log"]) as reader:
        assert sum(1 for _ in reader) >= after["messages"] - restarted["messages"]


@pytest.mark.slow
def test_a_unit_without_heartbeat_is_restarted(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """A runner stuck in iterate() stops sending heartbeats: killed and restarted (stuck_timeout)."""
    s = start(stations, {"station": {"bus": mcl_bus}, "units": {"stuck": runner("Stuck", period=0.1, stuck_timeout=2)}}, base_dir=tmp_path)
    st = wait_for(lambda: (u := unit(s, "stuck"))["restarts"] >= 1 and u, what="the stuck unit restarted")
    assert "no heartbeat" in st["last_error"]


@pytest.mark.slow
def test_failed_after_max_restarts(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """A unit that cannot start (bad class) is restarted with back-off, then `failed` beyond max_restarts."""
    s = start(stations, {"station": {"bus": mcl_bus}, "units": {"bad": runner("NoSuchClass", max_restarts=1)}}, base_dir=tmp_path)
    st = wait_for(lambda: (u := unit(s, "bad"))["state"] == "failed" and u, what="the unit failed")
    assert st["restarts"] == 1 and "NoSuchClass" in st["last_error"]
    s.start_unit("bad")  # by hand: the failures are forgotten, it is tried again (and fails again)
    wait_for(lambda: (u := unit(s, "bad"))["restarts"] == 2 and u["state"] == "failed", what="the unit tried again and failed")


def _value(value: Any) -> str:
    """A TOML value (inline tables for dicts)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)


def _toml(units: dict[str, dict[str, Any]], bus: str, extra: str = "") -> str:
    lines = ["[station]", 'name = "reload"', f'bus = "{bus}"', extra, ""]
    for name, table in units.items():
        lines.append(f"[units.{name}]")
        for key, value in table.items():
            lines.append(f"{key} = {_value(value)}")
        lines.append("")
    return "\n".join(lines)


@pytest.mark.slow
def test_reload_adds_removes_and_changes_units(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """reload(): b removed, d added, a changed (restarted with its new config), c untouched (same pid)."""
    path = tmp_path / "station.toml"
    units = {name: runner("Ticker", period=0.2, config={"topic": name}) for name in "abc"}
    path.write_text(_toml(units, mcl_bus))
    s = start(stations, path, watch=False)  # only the reload request reloads
    before = wait_for(lambda: (st := {u["name"]: u for u in s.status()["units"]}) and all(u["pid"] and u["messages"] for u in st.values()) and st, what="a, b, c running")
    units.pop("b")
    units["d"] = runner("Ticker", period=0.2, config={"topic": "d"})
    units["a"] = runner("Ticker", period=0.2, config={"topic": "a", "tag": "new"})
    path.write_text(_toml(units, mcl_bus))
    code, out, err = run_cli("reload", "--config", str(path))  # --config finds the station by its run_dir
    assert code == 0, err
    assert out == "reloaded: added d; removed b; changed a\n"
    after = wait_for(lambda: (st := {u["name"]: u for u in s.status()["units"]}) and set(st) == {"a", "c", "d"} and all(u["pid"] for u in st.values()) and st["a"]["pid"] != before["a"]["pid"] and st, what="a restarted, c and d running")
    assert after["c"]["pid"] == before["c"]["pid"]
    assert s.send("a", "count")["config"] == {"topic": "a", "tag": "new"}
    assert not os.path.exists(f"/proc/{before['b']['pid']}")


@pytest.mark.slow
def test_a_bad_edit_keeps_the_old_set_running(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """The file is watched: a broken edit is refused (reason in status and the station log), a good one applies."""
    path = tmp_path / "station.toml"
    units = {"a": runner("Ticker", period=0.2)}
    path.write_text(_toml(units, mcl_bus))
    s = start(stations, path)
    pid = wait_for(lambda: unit(s, "a")["pid"], what="a running")
    path.write_text(_toml({"a": {**units["a"], "perod": 1}}, mcl_bus))
    error = wait_for(lambda: s.status()["reload_error"], what="the bad edit noticed")
    assert "key 'perod'" in error and str(path) in error
    assert unit(s, "a")["pid"] == pid and unit(s, "a")["state"] == "running"
    assert "reload refused" in (tmp_path / "run" / "station.log").read_text()
    with pytest.raises(StationConfigError):
        s.reload()
    code, out, err = run_cli("reload", "--run-dir", str(tmp_path / "run"))
    assert code == 1 and err.count("\n") == 1 and "key 'perod'" in err
    path.write_text("[units.a\n")  # TOML syntax
    wait_for(lambda: "TOML syntax error" in (s.status()["reload_error"] or ""), what="the syntax error noticed")
    assert unit(s, "a")["pid"] == pid
    path.write_text(_toml({"a": units["a"], "e": runner("Ticker", period=0.2)}, mcl_bus))
    wait_for(lambda: (st := s.status())["reload_error"] is None and len(st["units"]) == 2, what="the good edit applied")
    assert unit(s, "a")["pid"] == pid


@pytest.mark.slow
def test_a_schedule_of_1s_sessions_every_2s_records_the_expected_logs(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """start + 6 s, 1 s every 2 s: three log directories, then the unit is stopped with no session left."""
    begin = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0) + _dt.timedelta(seconds=4)
    end = begin + _dt.timedelta(seconds=6)
    schedule = {"start": begin.isoformat(), "end": end.isoformat(), "every": "2s", "for": "1s"}
    config = {
        "station": {"bus": mcl_bus},
        "units": {"tick": runner("Ticker", period=0.01), "rec": {"kind": "recorder", "out": "logs", "topics": ["tick"], "schedule": schedule}},
    }
    s = start(stations, config, base_dir=tmp_path)
    st = unit(s, "rec")
    assert st["state"] == "waiting" and st["next_start"] == begin.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    wait_for(lambda: unit(s, "rec")["state"] == "stopped", timeout=TIMEOUT + 10, what="the schedule to end")
    logs = sorted(p for p in (tmp_path / "logs").iterdir() if p.is_dir())
    assert len(logs) == 3, logs
    counts = []
    for log in logs:
        with mcl.open_log(log) as reader:
            counts.append(sum(1 for _ in reader))
    assert sum(counts) > 0, counts
    assert unit(s, "rec")["next_start"] is None


@pytest.mark.slow
def test_stop_cancels_the_sessions_and_start_resumes(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """stop NAME ends the current session cleanly (log closed) and cancels the coming ones; start NAME resumes."""
    config = {
        "station": {"bus": mcl_bus},
        "units": {
            "tick": runner("Ticker", period=0.02),
            "rec": {"kind": "recorder", "out": "logs", "topics": ["tick"], "schedule": {"window": "00:00-24:00", "timezone": "UTC"}},
            "later": {"kind": "recorder", "out": "later", "schedule": {"every": "1h", "for": "1m"}},
        },
    }
    s = start(stations, config, base_dir=tmp_path)
    first = wait_for(lambda: (u := unit(s, "rec"))["messages"] > 10 and u, what="the session joined and recording")
    assert first["next_start"] is not None  # tomorrow's window
    stopped = s.stop_unit("rec")
    assert stopped["state"] == "stopped" and stopped["next_start"] is None
    log = Path(first["log"])
    assert all(p.with_suffix(".mcli").exists() for p in log.glob("*.mcln"))  # ended cleanly: indexed
    again = s.start_unit("rec")
    assert again["state"] == "running"  # the window is open: joined again, a new log
    assert wait_for(lambda: unit(s, "rec")["log"], what="a new log") != str(log)
    assert unit(s, "later")["state"] == "waiting" and unit(s, "later")["next_start"]
    assert s.stop_unit("later")["next_start"] is None
    assert s.start_unit("later")["state"] == "waiting"


@pytest.mark.slow
def test_disk_guard_pauses_a_recorder_and_says_why(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """Below min_free the recorder writes nothing and its status says why; a lower min_free (reload) resumes it."""
    path = tmp_path / "station.toml"
    units = {"tick": runner("Ticker", period=0.05), "rec": {"kind": "recorder", "out": "logs", "topics": ["tick"]}}
    path.write_text(_toml(units, mcl_bus, 'min_free = "1000 PiB"'))
    s = start(stations, path)
    st = wait_for(lambda: (u := unit(s, "rec"))["note"] and u, what="the recorder paused")
    assert "below min_free" in st["note"] and st["log"] is None and st["state"] == "running"
    assert not any((tmp_path / "logs").iterdir())
    path.write_text(_toml(units, mcl_bus, 'min_free = "1 KiB"'))
    s.reload()
    wait_for(lambda: (u := unit(s, "rec"))["messages"] > 0 and u["note"] is None, what="the recorder recording")


def _make_log(path: Path, n: int, size: int = 2000) -> None:
    with mcl.LogWriter(path) as writer:
        for i in range(n):
            writer.write("data", bytes([i % 251]) * size, i * 1_000_000)


@pytest.mark.slow
def test_offload_verifies_and_resumes(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """An interrupted copy resumes, a bad partial copy is caught by verification and copied again, local files go after keep_local."""
    source, dest = tmp_path / "logs", tmp_path / "share"
    _make_log(source / "one", 500)
    _make_log(source / "two", 300)
    data_one = source / "one" / "data_0000.mcln"
    data_two = source / "two" / "data_0000.mcln"
    half_one = data_one.stat().st_size // 2
    (dest / "one").mkdir(parents=True)
    (dest / "two").mkdir(parents=True)
    # "one": an interrupted copy (a good prefix); "two": a partial copy whose bytes are wrong.
    (dest / "one" / "data_0000.mcln.part").write_bytes(data_one.read_bytes()[: data_one.stat().st_size // 2])
    (dest / "two" / "data_0000.mcln.part").write_bytes(b"\0" * (data_two.stat().st_size // 2))
    config = {"station": {"bus": mcl_bus}, "units": {"off": {"kind": "offload", "source": "logs", "destination": "share", "keep_local": "0s", "settle": "0s", "scan_interval": "1s"}}}
    s = start(stations, config, base_dir=tmp_path)
    st = wait_for(lambda: (u := unit(s, "off"))["details"].get("removed") == 2 and u, what="both logs offloaded and removed")
    d = st["details"]
    assert d["offloaded"] == 2
    assert d["resumed_bytes"] >= half_one
    assert st["errors"] >= 1 and "does not verify" in st["last_error"]  # "two" failed once, then copied whole
    for name, n in (("one", 500), ("two", 300)):
        with mcl.open_log(dest / name) as reader:
            records = list(reader)
        assert len(records) == n and records[-1].payload == bytes([(n - 1) % 251]) * 2000
        assert not list((dest / name).glob("*.part"))
    assert not (source / "one").exists() and not (source / "two").exists()


@pytest.mark.slow
def test_offload_waits_for_an_unreachable_destination(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """A missing destination is not created; status says so; once it appears the log goes (and is kept locally for keep_local)."""
    source, dest = tmp_path / "logs", tmp_path / "share"
    _make_log(source / "one", 50)
    config = {"station": {"bus": mcl_bus}, "units": {"off": {"kind": "offload", "source": "logs", "destination": "share", "keep_local": "1h", "settle": "0s"}}}
    s = start(stations, config, base_dir=tmp_path)
    st = wait_for(lambda: (u := unit(s, "off"))["note"] and u, what="the destination reported unreachable")
    assert "not reachable" in st["note"] and not dest.exists()
    dest.mkdir()
    s.send("off", "scan")
    wait_for(lambda: unit(s, "off")["details"].get("offloaded") == 1, what="the log offloaded")
    assert (source / "one" / ".data_0000.mcln.offloaded.json").is_file()  # kept locally: keep_local is 1 h
    assert (source / "one" / "data_0000.mcln").is_file()
    with mcl.open_log(dest / "one") as reader:
        assert sum(1 for _ in reader) == 50


@pytest.mark.slow
def test_no_orphans_when_the_station_is_killed(tmp_path: Path, mcl_bus: str) -> None:
    """SIGKILL of `mcl-station run`: every unit process ends (PR_SET_PDEATHSIG), the recorder closing its log."""
    path = tmp_path / "station.toml"
    units = {"tick": runner("Ticker", period=0.02), "rec": {"kind": "recorder", "out": "logs", "topics": ["tick"]}}
    path.write_text(_toml(units, mcl_bus))
    proc = subprocess.Popen([sys.executable, "-m", "mcl.cli.station", "run", str(path), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def running() -> Any:
            code, out, _ = run_cli("status", "--run-dir", str(tmp_path / "run"), "--json")
            if code != 0:
                return None
            st = json.loads(out)
            units = {u["name"]: u for u in st["units"]}
            return units if all(u["pid"] for u in units.values()) and units["rec"]["messages"] > 0 else None

        units_now = wait_for(running, what="the station running")
        proc.kill()
        proc.wait(30)
        for u in units_now.values():
            wait_for(lambda pid=u["pid"]: not os.path.exists(f"/proc/{pid}") or process_gone(pid), what=f"unit {u['name']} gone")
        log = Path(units_now["rec"]["log"])
        assert all(p.with_suffix(".mcli").exists() for p in log.glob("*.mcln"))  # closed cleanly
        code, _, err = run_cli("status", "--run-dir", str(tmp_path / "run"))
        assert code == 1 and "no station runs in" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.slow
def test_run_stops_cleanly_on_sigterm_and_reloads_on_sighup(tmp_path: Path, mcl_bus: str) -> None:
    """`mcl-station run`: SIGHUP reloads (a unit added), SIGTERM stops everything and exits 0."""
    path = tmp_path / "station.toml"
    units = {"a": runner("Ticker", period=0.2)}
    text = _toml({**units, "b": runner("Ticker", period=0.2)}, mcl_bus)
    first = _toml(units, mcl_bus)
    path.write_text(first + "#" * (len(text) - len(first) - 1) + "\n")  # the size of the edit: the watcher cannot tell them apart
    proc = subprocess.Popen([sys.executable, "-m", "mcl.cli.station", "run", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def names() -> set[str]:
            code, out, _ = run_cli("status", "--run-dir", str(tmp_path / "run"), "--json")
            return {u["name"] for u in json.loads(out)["units"] if u["pid"]} if code == 0 else set()

        wait_for(lambda: names() == {"a"}, what="a running")
        os.utime(path, ns=(0, 0))  # same size, same mtime: the watcher sees no change, only SIGHUP reloads
        assert path.stat().st_size == len(text)
        with open(path, "w") as fp:
            fp.write(text)
        os.utime(path, ns=(0, 0))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: names() == {"a", "b"}, what="b added by SIGHUP")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
    assert "Traceback" not in err and "station 'reload' stopped" in err


def test_python_api_rejects_a_bad_dict() -> None:
    """Station(dict) checks at construction: StationConfigError naming the unit and key."""
    with pytest.raises(StationConfigError, match=r"unit 'x': key 'kind': unknown unit kind 'camera'"):
        Station({"units": {"x": {"kind": "camera"}}})
    with pytest.raises(TypeError):
        parse_config(42)  # type: ignore[arg-type]


def test_one_station_per_run_dir(tmp_path: Path, stations: list[Station]) -> None:
    """A second station on the same run directory is refused while the first runs."""
    start(stations, {"units": {}}, base_dir=tmp_path)
    with pytest.raises(StationError, match="a station already runs there"):
        Station({"units": {}}, base_dir=tmp_path).start()


@pytest.mark.slow
def test_replay_unit_and_recorder_split(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """A replay unit plays the sample log onto the bus; `split` closes the recorder's log and goes on in a new one."""
    sample = Path(__file__).resolve().parent.parent / "sample_logs" / "vehicle"
    config = {
        "station": {"bus": mcl_bus},
        "units": {
            "rec": {"kind": "recorder", "out": "logs", "topics": ["gps", "imu"]},
            "demo": {"kind": "replay", "log": str(sample), "loop": True, "speed": 4.0, "auto_start": False},
        },
    }
    s = start(stations, config, base_dir=tmp_path)
    assert unit(s, "demo")["state"] == "stopped"
    wait_for(lambda: unit(s, "rec")["log"], what="the recorder recording")
    s.start_unit("demo")
    first = wait_for(lambda: (u := unit(s, "rec"))["messages"] > 50 and u, what="replayed messages recorded")
    reply = s.send("rec", "split")
    assert reply["log"] != first["log"] and reply["logs"] == 2
    assert s.send("rec", "status")["log"] == reply["log"]
    with mcl.open_log(first["log"]) as reader:
        topics = {r.topic for r in reader}
    assert topics <= {"gps", "imu"} and topics
    wait_for(lambda: (u := unit(s, "rec"))["messages"] > first["messages"] + 50 and u, what="the new log recording")
    assert unit(s, "demo")["messages"] > 0
    assert s.send("demo", "pause")["replay"]["state"] == "paused"
    s.stop_unit("demo")
    assert unit(s, "demo")["state"] == "stopped"


@pytest.mark.slow
def test_a_runner_config_file_is_reread_when_it_changes(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """config_file is merged into self.config and re-read (reconfigure) when its content changes; no restart."""
    extra = tmp_path / "scale.toml"
    extra.write_text('tag = "first"\n')
    s = start(stations, {"station": {"bus": mcl_bus}, "units": {"t": runner("Ticker", period=0.1, config={"topic": "x"}, config_file="scale.toml")}}, base_dir=tmp_path)
    pid = wait_for(lambda: unit(s, "t")["pid"], what="t running")
    wait_for(lambda: s.send("t", "count")["config"] == {"topic": "x", "tag": "first"}, what="the first config")
    extra.write_text('tag = "second"\n')
    wait_for(lambda: s.send("t", "count")["config"] == {"topic": "x", "tag": "second"}, what="the changed config")
    extra.write_text("tag = \n")  # broken: counted as an error, the old config stays
    st = wait_for(lambda: (u := unit(s, "t"))["errors"] and u, what="the broken file reported")
    assert "cannot re-read the config file" in st["last_error"]
    assert s.send("t", "count")["config"]["tag"] == "second" and unit(s, "t")["pid"] == pid


@pytest.mark.slow
def test_the_station_log_is_rotated(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """log_max_bytes: station.log rotates (units keep writing to the new file)."""
    s = start(stations, {"station": {"bus": mcl_bus, "log_max_bytes": 3000, "log_backups": 2}, "units": {"flaky": runner("Flaky", period=0.01)}}, base_dir=tmp_path)
    run_dir = tmp_path / "run"
    wait_for(lambda: (run_dir / "station.log.1").exists(), what="a rotated station log")
    s.stop()
    assert "station" in (run_dir / "station.log").read_text()
    assert not (run_dir / "station.log.3").exists()


@pytest.mark.slow
def test_a_bus_unit_serves_the_other_units(tmp_path: Path, stations: list[Station]) -> None:
    """A `bus` unit is the station's bus: a runner publishes through it to a subscriber of this test; restart NAME works."""
    from mcl.network import Subscriber
    from mcl.network.forwarder import Forwarder

    with Forwarder("tcp://127.0.0.1:0") as probe:  # two free adjacent ports, released for the unit to bind
        address = probe.address
    config = {"units": {"hub": {"kind": "bus", "bind": address}, "t": runner("Ticker", period=0.05, config={"topic": "via-hub"})}}
    s = start(stations, config, base_dir=tmp_path)
    assert s.status()["bus"] == address
    with Subscriber(["via-hub"], address) as sub:
        got = wait_for(lambda: sub.recv(0.5), what="a message through the bus unit")
        assert got.topic == "via-hub"
        hub = wait_for(lambda: (u := unit(s, "hub"))["pid"] and u, what="the bus unit")
        assert hub["details"]["address"] == address
        old = unit(s, "t")["pid"]
        after = s.restart_unit("t")
        assert after["state"] == "running" and after["pid"] != old and after["restarts"] == 0
        wait_for(lambda: sub.recv(0.5), what="messages after the restart")


@pytest.mark.slow
def test_offload_moves_the_closed_files_of_a_recording_that_goes_on(tmp_path: Path, mcl_bus: str, stations: list[Station]) -> None:
    """A recorder splitting every second: its closed files are offloaded and removed while it records into the next."""
    (tmp_path / "share").mkdir()
    config = {
        "station": {"bus": mcl_bus},
        "units": {
            "tick": runner("Ticker", period=0.01),
            "rec": {"kind": "recorder", "out": "logs", "topics": ["tick"], "split_duration": 1},
            "off": {"kind": "offload", "source": "logs", "destination": "share", "keep_local": 0, "settle": 0.5, "scan_interval": 0.5},
        },
    }
    s = start(stations, config, base_dir=tmp_path)
    wait_for(lambda: unit(s, "off")["details"].get("removed", 0) >= 3, what="three closed files offloaded and removed")
    rec = unit(s, "rec")
    assert rec["state"] == "running" and rec["restarts"] == 0
    log_dir = Path(rec["log"])
    copies = sorted((tmp_path / "share" / log_dir.name).glob("*.mcln"))
    assert len(copies) >= 3
    assert not (log_dir / copies[0].name).exists()  # removed locally once verified
    assert Path(rec["details"]["current_file"]).exists()  # the file being written stays
    for copy in copies:
        with mcl.open_log(copy) as reader:
            assert sum(1 for _ in reader) > 0


@pytest.mark.slow
def test_a_curve_bus_unit_refuses_unknown_clients(tmp_path: Path, stations: list[Station], monkeypatch: pytest.MonkeyPatch) -> None:
    """A bus unit with CURVE keys: units (keys from $MCL_CURVE_*) and known clients get through, a client without keys does not."""
    from mcl.network import Subscriber
    from mcl.network.forwarder import Forwarder
    from mcl.network.security import CurveClient, make_keys

    server_public, server_secret = make_keys(tmp_path / "keys", "server")
    clients = tmp_path / "clients"
    client_public, client_secret = make_keys(clients, "client")
    monkeypatch.setenv("MCL_CURVE_SECRET", str(client_secret))  # inherited by the unit processes
    monkeypatch.setenv("MCL_CURVE_SERVER", str(server_public))
    with Forwarder("tcp://127.0.0.1:0") as probe:
        address = probe.address
    config = {
        "units": {
            "hub": {"kind": "bus", "bind": address, "curve_secret": str(server_secret), "curve_clients": str(clients)},
            "t": runner("Ticker", period=0.05, config={"topic": "secure"}),
        }
    }
    start(stations, config, base_dir=tmp_path)
    with Subscriber(["secure"], address, curve=CurveClient(client_secret, server_public)) as sub:
        assert wait_for(lambda: sub.recv(0.5), what="a message over CURVE").topic == "secure"
    monkeypatch.delenv("MCL_CURVE_SECRET")
    monkeypatch.delenv("MCL_CURVE_SERVER")
    with Subscriber(["secure"], address) as plain:
        assert plain.recv(2.0) is None
