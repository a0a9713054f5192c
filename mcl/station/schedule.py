"""Capture windows to recording sessions: pure functions of the schedule and `now_ns`.

A schedule is a daily window (``"06:00-20:00"`` in a time zone; the end may
be past midnight, ``"22:00-06:00"``) or an explicit window (ISO ``start``
and/or ``end``), with recording sessions of ``for`` every ``every`` inside
it, counted from the window's start and cut at its end. Without ``every`` the
whole window is one session. Without a window (or with only an ``end``),
sessions of ``for`` every ``every`` are counted from local midnight each day.

Sessions whose start time is already past are skipped (a station started at
10:01 with sessions every 2 minutes records from 10:02), except a window
without ``every``: the station joins it for what remains.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from mcl.timeutil import NS_PER_S

__all__ = ["Schedule", "Session", "parse_schedule", "iter_sessions", "next_sessions", "zone"]

_DAY_S = 86_400
_MAX_DAYS = 800  # days looked ahead for a session before giving up (a window that never comes)
_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_KEYS = {"window", "start", "end", "every", "for", "timezone"}


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a unit runs; see the module docstring."""

    daily: tuple[int, int] | None = None  # daily window: start and end in seconds of the local day (end 86400 = midnight)
    start_ns: int | None = None  # explicit window start, UTC ns since the epoch; None = no lower bound
    end_ns: int | None = None  # explicit window end, UTC ns since the epoch; None = no upper bound
    every_ns: int | None = None  # a session starts this often; None = the window is one session
    for_ns: int | None = None  # length of each session (with every_ns)
    timezone: str = "local"  # IANA zone of the daily window ('local' = this machine's)


@dataclass(frozen=True, slots=True)
class Session:
    """One recording: from start_ns to end_ns (UTC ns since the epoch; end None = never ends)."""

    start_ns: int = 0
    end_ns: int | None = None


@lru_cache(maxsize=64)
def zone(name: str) -> _dt.tzinfo:
    """The tzinfo of an IANA zone name, or of this machine for 'local' (ValueError if unknown)."""
    if name == "local":
        try:
            with open("/etc/localtime", "rb") as fp:
                return ZoneInfo.from_file(fp, key="localtime")
        except (OSError, ValueError):
            return _dt.timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Paris', or 'local')") from None


def _instant(value: Any, tz: _dt.tzinfo, key: str) -> int:
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{key} {value!r} is not an ISO date and time") from None
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime.combine(value, _dt.time())
    if not isinstance(value, _dt.datetime):
        raise ValueError(f"{key} {value!r} is not a date and time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return _to_ns(value)


def _to_ns(when: _dt.datetime) -> int:
    delta = when - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta // _dt.timedelta(microseconds=1)) * 1000


def parse_schedule(table: Any, parse_duration_ns: Callable[[Any], int]) -> Schedule:
    """A ``schedule = {...}`` table to a Schedule (ValueError naming the bad entry)."""
    if not isinstance(table, dict):
        raise ValueError("a schedule is a table such as { window = \"06:00-20:00\", every = \"2m\", for = \"30s\" }")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ValueError(f"unknown schedule key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    tz_name = table.get("timezone", "local")
    if not isinstance(tz_name, str):
        raise ValueError(f"timezone {tz_name!r} is not a zone name")
    tz = zone(tz_name)
    daily = None
    if "window" in table:
        if "start" in table or "end" in table:
            raise ValueError("give a daily 'window' or an explicit 'start' / 'end', not both")
        m = _WINDOW_RE.match(str(table["window"])) if isinstance(table["window"], str) else None
        if m is None:
            raise ValueError(f"window {table['window']!r} is not 'HH:MM-HH:MM'")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise ValueError(f"window {table['window']!r}: not times of day")
        daily = (h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60)
        if daily[0] == daily[1]:
            raise ValueError(f"window {table['window']!r} is empty (use 00:00-24:00 for the whole day)")
    start = None if "start" not in table else _instant(table["start"], tz, "start")
    end = None if "end" not in table else _instant(table["end"], tz, "end")
    if start is not None and end is not None and end <= start:
        raise ValueError("the end is not after the start")
    every = None if "every" not in table else parse_duration_ns(table["every"])
    length = None if "for" not in table else parse_duration_ns(table["for"])
    if (every is None) != (length is None):
        raise ValueError("'every' and 'for' go together")
    if every is not None and length is not None and length > every:
        raise ValueError(f"'for' ({length / NS_PER_S:g} s) is longer than 'every' ({every / NS_PER_S:g} s)")
    if daily is None and start is None and end is None and every is None:
        raise ValueError("a schedule needs a 'window', a 'start' / 'end', or 'every' and 'for'")
    return Schedule(daily=daily, start_ns=start, end_ns=end, every_ns=every, for_ns=length, timezone=tz_name)


def _windows(schedule: Schedule, now_ns: int) -> Iterator[tuple[int, int | None]]:
    """Capture windows (start, end) that end after `now_ns`, in order."""
    daily = schedule.daily
    if daily is None and schedule.every_ns is not None and schedule.start_ns is None:
        # No start to count `every` from: the grid is anchored at local midnight (cut at `end`);
        # counting from `now_ns` would start a new session as soon as the last one ended.
        daily = (0, _DAY_S)
    if daily is None:
        start = schedule.start_ns if schedule.start_ns is not None else now_ns
        if schedule.end_ns is None or schedule.end_ns > now_ns:
            yield start, schedule.end_ns
        return
    cut = schedule.end_ns
    tz = zone(schedule.timezone)
    first, last = daily
    crosses = last <= first
    today = _dt.datetime.fromtimestamp(now_ns / NS_PER_S, tz).date()
    for offset in range(-1, _MAX_DAYS):
        day = today + _dt.timedelta(days=offset)
        end_day = day + _dt.timedelta(days=1) if crosses or last == _DAY_S else day
        ws = _local(day, first, tz)
        we = _local(end_day, last % _DAY_S, tz)
        if cut is not None:
            if ws >= cut:
                return
            we = min(we, cut)
        if we > now_ns:
            yield ws, we


def _local(day: _dt.date, second: int, tz: _dt.tzinfo) -> int:
    when = _dt.datetime.combine(day, _dt.time(second // 3600, second // 60 % 60), tzinfo=tz)
    return _to_ns(when)


def iter_sessions(schedule: Schedule, now_ns: int) -> Iterator[Session]:
    """The coming sessions, in order: starts at or after `now_ns` (a window without `every` is joined)."""
    every = schedule.every_ns
    for ws, we in _windows(schedule, now_ns):
        if every is None:
            yield Session(max(ws, now_ns), we)
            continue
        assert schedule.for_ns is not None
        k = 0 if now_ns <= ws else -(-(now_ns - ws) // every)  # the first start at or after now
        while True:
            s = ws + k * every
            if we is not None and s >= we:
                break
            e = s + schedule.for_ns
            yield Session(s, e if we is None else min(e, we))
            k += 1


def next_sessions(schedule: Schedule, now_ns: int, count: int) -> list[Session]:
    """The next `count` sessions (fewer when the schedule ends)."""
    out = []
    for session in iter_sessions(schedule, now_ns):
        out.append(session)
        if len(out) >= count:
            break
    return out
