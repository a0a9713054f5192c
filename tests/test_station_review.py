"""mcl-station under attack: schedules (DST, end-only windows), config corner cases, the control endpoint, runners."""

from __future__ import annotations

import datetime as _dt
import io
import logging
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

import mcl
from mcl.cli import station as station_cli
from mcl.station.config import OffloadOptions, parse_duration_ns
from mcl.station.offload import OffloadError, Offloader
from mcl.station.schedule import iter_sessions, next_sessions, parse_schedule

S = 1_000_000_000
TESTS = Path(__file__).resolve().parent


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = station_cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def check_error(tmp_path: Path, text: str) -> str:
    """`mcl-station check` of `text`: exit 1 and exactly one error line naming the file; returns that line."""
    path = tmp_path / "station.toml"
    path.write_text(text)
    code, out, err = run_cli("check", str(path))
    assert code == 1 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), err
    return lines[0]


def _utc(text: str) -> int:
    return int(_dt.datetime.fromisoformat(text).timestamp()) * S


# -- schedules (pure, fixed `now`) -----------------------------------------------------------


def test_every_with_only_an_end_keeps_its_period() -> None:
    """{end, every, for} without a start: sessions stay `every` apart (not back to back as the last one ends)."""
    sched = parse_schedule({"end": "2026-05-01T13:00:00Z", "every": "2m", "for": "30s", "timezone": "UTC"}, parse_duration_ns)
    now = _utc("2026-05-01T12:00:10+00:00")
    first, second = next_sessions(sched, now, 2)
    assert first.start_ns == _utc("2026-05-01T12:02:00+00:00") and first.end_ns == first.start_ns + 30 * S
    # The station asks again when the first session ended: the next one is still on the 2-minute grid.
    (again,) = next_sessions(sched, first.end_ns, 1)
    assert again == second and again.start_ns == first.start_ns + 120 * S
    # Nothing starts at or after the end; the last session is cut there.
    last = list(iter_sessions(sched, now))[-1]
    assert last.start_ns == _utc("2026-05-01T12:58:00+00:00")
    assert list(iter_sessions(sched, _utc("2026-05-01T13:00:00+00:00"))) == []


def test_windows_across_midnight_on_dst_nights() -> None:
    """22:00-06:00 Europe/Paris: 7 h on the spring-forward night, 9 h on the fall-back night, local times kept."""
    sched = parse_schedule({"window": "22:00-06:00", "timezone": "Europe/Paris"}, parse_duration_ns)
    (spring,) = next_sessions(sched, _utc("2026-03-28T12:00:00+00:00"), 1)  # clocks go forward 2026-03-29 02:00
    assert spring.start_ns == _utc("2026-03-28T21:00:00+00:00")  # 22:00 CET
    assert spring.end_ns == _utc("2026-03-29T04:00:00+00:00")  # 06:00 CEST
    (fall,) = next_sessions(sched, _utc("2026-10-24T12:00:00+00:00"), 1)  # clocks go back 2026-10-25 03:00
    assert fall.start_ns == _utc("2026-10-24T20:00:00+00:00")  # 22:00 CEST
    assert fall.end_ns == _utc("2026-10-25T05:00:00+00:00")  # 06:00 CET
    assert (spring.end_ns - spring.start_ns, fall.end_ns - fall.start_ns) == (7 * 3600 * S, 9 * 3600 * S)


def test_sessions_every_hour_through_a_dst_change_stay_in_order() -> None:
    """every 1h for 10m, whole day, Europe/Paris on the fall-back day: increasing, never overlapping, none in the past."""
    sched = parse_schedule({"every": "1h", "for": "10m", "timezone": "Europe/Paris"}, parse_duration_ns)
    now = _utc("2026-10-24T21:30:00+00:00")
    sessions = next_sessions(sched, now, 30)
    assert sessions[0].start_ns >= now
    for a, b in zip(sessions, sessions[1:]):
        assert a.end_ns is not None and a.start_ns < a.end_ns <= b.start_ns


def test_a_station_started_mid_session_skips_it_and_one_started_mid_window_joins() -> None:
    """Times already past are skipped: inside a 30 s session the next one is the following grid point."""
    sched = parse_schedule({"window": "06:00-20:00", "every": "2m", "for": "30s", "timezone": "UTC"}, parse_duration_ns)
    (s,) = next_sessions(sched, _utc("2026-07-01T10:00:10+00:00"), 1)
    assert s.start_ns == _utc("2026-07-01T10:02:00+00:00")
    whole = parse_schedule({"window": "06:00-20:00", "timezone": "UTC"}, parse_duration_ns)
    now = _utc("2026-07-01T10:00:10+00:00")
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
