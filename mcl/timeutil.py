"""The one time unit of mcl: integer nanoseconds, and the conversions to and from seconds and datetimes.

Library signatures take integer ``*_ns`` values; seconds appear only at the
command line and in the convenience keyword forms, which convert with the
functions here. :data:`NS_PER_S` is the one spelling of the constant in the
package (a test checks it).
"""

from __future__ import annotations

import datetime as _dt
from typing import Literal, overload

__all__ = [
    "NS_PER_S",
    "MAX_NS",
    "seconds_to_ns",
    "check_seconds",
    "check_ns",
    "check_timeout",
    "ns_to_seconds",
    "datetime_to_ns",
    "ns_to_datetime",
]

NS_PER_S = 1_000_000_000  # nanoseconds per second
MAX_NS = 2**63 - 1  # log times are int64 ns
_MAX_S = MAX_NS / NS_PER_S

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def seconds_to_ns(seconds: float | None, what: str | None = None) -> int | None:
    """Float seconds (command line, original API) to integer nanoseconds (None stays None).

    Raises :class:`mcl.exceptions.ArgumentError` for a value outside the
    int64 ns range (also NaN, infinities and values that are not numbers):
    no log time can be that far. `what` names the value in the error.
    """
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not -_MAX_S <= seconds <= _MAX_S:
        from mcl.exceptions import ArgumentError

        name = f"{what} " if what else ""
        raise ArgumentError(f"{name}{seconds!r} s is outside the range of log times (a number of seconds within +-{_MAX_S:g})")
    return round(seconds * NS_PER_S)


def check_seconds(seconds: float, what: str) -> int:
    """`seconds` (a number from 0 to the int64 ns range, named `what` in the error) as integer ns.

    Raises :class:`mcl.exceptions.ArgumentError` (a ValueError) naming `what` and the range.
    """
    from mcl.exceptions import ArgumentError

    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= _MAX_S:
        raise ArgumentError(f"{what} must be a number of seconds from 0 to {_MAX_S:g} (the format's range), not {seconds!r}")
    return round(seconds * NS_PER_S)


@overload
def check_ns(value: object, what: str, *, minimum: int = ..., none_ok: Literal[False] = ...) -> int: ...


@overload
def check_ns(value: object, what: str, *, minimum: int = ..., none_ok: bool) -> int | None: ...


def check_ns(value: object, what: str, *, minimum: int = 0, none_ok: bool = False) -> int | None:
    """`value` as whole ns from `minimum` to :data:`MAX_NS` (None too when `none_ok`); ArgumentError naming `what`."""
    from mcl.checks import check_int

    return check_int(value, what, minimum=minimum, maximum=MAX_NS, unit="ns", none_ok=none_ok)


@overload
def check_timeout(value: object, what: str = ..., *, none_ok: Literal[False], infinite_ok: bool = ...) -> float: ...


@overload
def check_timeout(value: object, what: str = ..., *, none_ok: bool = ..., infinite_ok: bool = ...) -> float | None: ...


def check_timeout(value: object, what: str = "timeout", *, none_ok: bool = True, infinite_ok: bool = False) -> float | None:
    """A timeout in seconds: a number from 0 to the longest wait a thread can make (None: no limit when `none_ok`).

    With `infinite_ok`, math.inf (wait forever) is accepted too. Raises
    :class:`mcl.exceptions.ArgumentError` naming `what` and the range
    (``threading``'s waits overflow past ``threading.TIMEOUT_MAX``).
    """
    import threading

    from mcl.checks import check_number

    return check_number(
        value, what, minimum=0, maximum=min(_MAX_S, threading.TIMEOUT_MAX), unit="s", none_ok=none_ok, infinite_ok=infinite_ok
    )


def ns_to_seconds(ns: int) -> float:
    """Integer nanoseconds to float seconds (for people: display, JSON)."""
    return ns / NS_PER_S


def datetime_to_ns(when: _dt.datetime) -> int:
    """A datetime (naive means UTC) to integer nanoseconds since the epoch."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return ((when - _EPOCH) // _dt.timedelta(microseconds=1)) * 1000


def ns_to_datetime(ns: int) -> _dt.datetime:
    """Integer nanoseconds since the epoch to an aware UTC datetime (µs precision)."""
    return _EPOCH + _dt.timedelta(microseconds=ns // 1000)
