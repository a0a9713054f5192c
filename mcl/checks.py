"""The one validation of option values, one function per kind of value.

Every option of the API (options objects, keyword forms, setters) is checked
here before it is trusted: a value of the wrong type or outside its range
raises :class:`~mcl.exceptions.ArgumentError` (an MclError and a ValueError)
naming the option, the allowed range and the value given, at construction
time, never an OverflowError or TypeError from deep inside (a C socket
option, ``round(inf)``, a comparison of a str with an int).

Times are checked in :mod:`mcl.timeutil` (:func:`~mcl.timeutil.check_ns`,
:func:`~mcl.timeutil.check_seconds`, :func:`~mcl.timeutil.check_timeout`),
with the same rules.
"""

from __future__ import annotations

import importlib
import math
import operator
import re
from collections.abc import Iterable
from typing import Any, Literal, overload

from mcl.exceptions import ArgumentError

__all__ = ["MAX_INT64", "MAX_C_INT", "check_int", "check_number", "check_names", "check_pattern", "nested_repetition", "check_text", "check_flag"]

MAX_INT64 = 2**63 - 1  # counts and sizes: what a log's int64 fields and C sizes hold
MAX_C_INT = 2**31 - 1  # ZeroMQ socket options (high-water marks) and semaphore counts are C ints


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@overload
def check_int(
    value: Any, what: str, *, minimum: int = ..., maximum: int = ..., unit: str = ..., none_ok: Literal[False] = ...
) -> int: ...


@overload
def check_int(value: Any, what: str, *, minimum: int = ..., maximum: int = ..., unit: str = ..., none_ok: bool) -> int | None: ...


def check_int(
    value: Any, what: str, *, minimum: int = 0, maximum: int = MAX_INT64, unit: str = "", none_ok: bool = False
) -> int | None:
    """`value` as an int from `minimum` to `maximum` (None too when `none_ok`), else ArgumentError naming `what`.

    bool is not a number here; integral numpy scalars are (``operator.index``).
    """
    if value is None and none_ok:
        return None
    number: int | None = None
    if not isinstance(value, bool):
        try:
            number = operator.index(value)
        except TypeError:
            number = None
    if number is None or not minimum <= number <= maximum:
        units = f" {unit}" if unit else ""
        alternative = " or None" if none_ok else ""
        raise ArgumentError(f"{what} must be a whole number from {minimum} to {maximum}{units}{alternative}, not {_shown(value)}")
    return number


@overload
def check_number(
    value: Any, what: str, *, minimum: float = ..., maximum: float = ..., above: bool = ..., infinite_ok: bool = ...,
    unit: str = ..., none_ok: Literal[False] = ...,
) -> float: ...


@overload
def check_number(
    value: Any, what: str, *, minimum: float = ..., maximum: float = ..., above: bool = ..., infinite_ok: bool = ...,
    unit: str = ..., none_ok: bool,
) -> float | None: ...


def check_number(
    value: Any,
    what: str,
    *,
    minimum: float = -math.inf,
    maximum: float = math.inf,
    above: bool = False,
    infinite_ok: bool = False,
    unit: str = "",
    none_ok: bool = False,
) -> float | None:
    """`value` (int or float, finite unless `infinite_ok`) in range as a float, else ArgumentError naming `what`.

    `above`: the minimum itself is excluded (a positive number).
    """
    if value is None and none_ok:
        return None
    number: float | None = None
    if not isinstance(value, bool) and isinstance(value, (int, float)) or _is_numpy_real(value):
        try:
            number = float(value)
        except OverflowError:  # an int past the float range: surely out of range
            number = None
    ok = number is not None and (
        (infinite_ok and number == math.inf)
        or (math.isfinite(number) and (number > minimum if above else number >= minimum) and number <= maximum)
    )
    if not ok:
        low = f"above {minimum:g}" if above else f"from {minimum:g}"
        high = f" to {maximum:g}" if math.isfinite(maximum) else ""
        units = f" {unit}" if unit else ""
        extra = (" (or math.inf)" if infinite_ok else "") + (" or None" if none_ok else "")
        raise ArgumentError(f"{what} must be a number {low}{high}{units}{extra}, not {_shown(value)}")
    return number


def _is_numpy_real(value: Any) -> bool:
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return kind in ("i", "u", "f") and getattr(value, "shape", None) == ()


@overload
def check_text(value: Any, what: str, *, none_ok: Literal[False] = ..., empty_ok: bool = ...) -> str: ...


@overload
def check_text(value: Any, what: str, *, none_ok: bool, empty_ok: bool = ...) -> str | None: ...


def check_text(value: Any, what: str, *, none_ok: bool = False, empty_ok: bool = True) -> str | None:
    """`value` as a str (None too when `none_ok`; '' only when `empty_ok`), else ArgumentError naming `what`."""
    if value is None and none_ok:
        return None
    if not isinstance(value, str) or (not value and not empty_ok):
        kind = "a non-empty string" if not empty_ok else "a string"
        raise ArgumentError(f"{what} must be {kind}{' or None' if none_ok else ''}, not {_shown(value)}")
    return value


def check_flag(value: Any, what: str) -> bool:
    """`value` must be True or False (not 0, 1 or 'yes'), else ArgumentError naming `what`."""
    if not isinstance(value, bool):
        raise ArgumentError(f"{what} must be True or False, not {_shown(value)}")
    return value


def check_names(value: Any, what: str, *, none_ok: bool = True) -> tuple[str, ...] | None:
    """One name (a str) or an iterable of str as a tuple (None stays None when `none_ok`), else ArgumentError."""
    if value is None and none_ok:
        return None
    if isinstance(value, str):
        value = (value,)
    elif isinstance(value, (bytes, bytearray, dict)) or not isinstance(value, Iterable):
        raise ArgumentError(f"{what} must be a name or a list of names (strings), not {_shown(value)}")
    names = tuple(value)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise ArgumentError(f"{what} must be names (strings), not {_shown(bad[0])} in {_shown(names)}")
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (os.fsdecode of bytes that are not UTF-8)
            raise ArgumentError(f"{what}: {_shown(name)} is not UTF-8 text (names are UTF-8 on the wire and on disk)") from None
    return names


def check_pattern(value: Any, what: str, *, none_ok: bool = True) -> str | None:
    """A regular expression given as text (None stays None when `none_ok`), compiled once to check it.

    The pattern is matched against topic names that come from the wire, so a
    pattern that can take exponential time is refused: an unbounded
    repetition inside another (``(a+)+$``, ``(\\w*)*x``) backtracks 2^n
    times on a topic of n characters built for it (30 characters: minutes),
    which would stall a recorder. :func:`nested_repetition` says where.
    """
    if value is None and none_ok:
        return None
    if not isinstance(value, str):
        raise ArgumentError(f"{what} must be a regular expression (a string), not {_shown(value)}")
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:  # deeply nested groups overflow the compiler
        raise ArgumentError(f"bad {what} pattern {_shown(value)}: {exc}") from None
    nested = nested_repetition(value)
    if nested is not None:
        raise ArgumentError(
            f"bad {what} pattern {_shown(value)}: a repetition inside a repetition ({nested}) can take "
            "exponential time on a topic made for it; write it without the outer repeat (or with a possessive one, *+ / ++)"
        )
    return value


def nested_repetition(pattern: str) -> str | None:
    """The first unbounded repetition nested in another one in `pattern` (a short description), or None.

    Possessive repetitions (``a++``, ``(?>...)``) never backtrack and are
    allowed; bounded ones (``{0,3}``) too. `pattern` must compile.
    """
    parser: Any = importlib.import_module("re._parser")  # the stdlib parser (sre_parse is deprecated)
    constants: Any = importlib.import_module("re._constants")
    greedy = {constants.MAX_REPEAT, constants.MIN_REPEAT}
    unbounded_max = constants.MAXREPEAT

    def walk(items: Any, outer: bool) -> str | None:
        for op, arg in items:
            if op in greedy:
                low, high, body = arg
                unbounded = high == unbounded_max
                if unbounded and outer:
                    return f"{'+' if low else '*'} inside + or *"
                found = walk(body, outer or unbounded)
            elif op is constants.SUBPATTERN:
                found = walk(arg[3], outer)
            elif op is constants.BRANCH:
                found = next((f for f in (walk(branch, outer) for branch in arg[1]) if f), None)
            elif op in (constants.ASSERT, constants.ASSERT_NOT):
                found = walk(arg[1], outer)
            else:
                found = None
            if found:
                return found
        return None

    try:
        return walk(parser.parse(pattern), False)
    except (re.error, RecursionError):
        return None
