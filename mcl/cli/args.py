"""Argument definitions shared by every mcl command: one flag, one meaning.

Each command adds the groups it needs with the ``add_*`` functions and
reads them back with :func:`topic_filter` / :func:`exclude_pattern` /
:func:`bus_subscription`, so that:

- ``--topics NAMES`` are exact topic names; a comma list and repeated
  flags add up (``--topics imu --topics gps`` = ``--topics imu,gps`` =
  ``--topics imu gps``);
- ``--topic-prefix PREFIX`` (repeatable) keeps topics starting with PREFIX,
  in the commands where prefixes make sense; with ``--topics`` a topic is
  kept when it is named or has one of the prefixes;
- ``--exclude REGEX`` (repeatable) drops the topics it matches
  (``re.search``), after ``--topics`` / ``--topic-prefix``;
- ``--start S`` / ``--end S`` are seconds of log time counted from the
  log's time origin (the ``elapsed`` of ``mcl-cat`` and ``mcl-info``; with
  several logs, the earliest origin), both inclusive;
- ``--bus ADDR``, ``-q/--quiet`` and ``--json`` mean the same everywhere;
- a FILE of ``-`` (:data:`STDOUT`) is standard output.

The topic predicate itself is :func:`mcl.log.record.make_topic_filter`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mcl.cli.common import ExtendNames, comma_list, non_negative_seconds

if TYPE_CHECKING:  # mcl.log is imported when a filter is made: mcl-bus starts without it (and numpy)
    from mcl.log.record import TopicFilter

__all__ = [
    "STDOUT",
    "add_topic_arguments",
    "add_time_arguments",
    "add_bus_argument",
    "add_quiet_argument",
    "add_json_argument",
    "topic_filter",
    "exclude_pattern",
    "bus_subscription",
    "replay_selection",
    "describe_topics",
]

STDOUT = "-"  # a file argument of "-" means standard output

_Adder = argparse.ArgumentParser | argparse._ArgumentGroup


def regex(text: str) -> str:
    """argparse type: a valid regular expression (kept as text), refused when it can take exponential time.

    The one check of :func:`mcl.checks.check_pattern`: topics matched come
    from the wire, and a nested repetition such as ``(a+)+$`` would let a
    publisher stall the command with one topic name made for it.
    """
    from mcl.checks import check_pattern
    from mcl.exceptions import ArgumentError

    try:
        check_pattern(text, "regular expression")
    except ArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("bad regular expression pattern", "bad regular expression")) from None
    return text


def add_topic_arguments(
    parser: _Adder,
    *,
    verb: str = "keep",
    prefixes: bool = False,
    short: Sequence[str] = (),
) -> None:
    """``--topics`` (exact names), ``--exclude`` and, with `prefixes`, ``--topic-prefix``.

    `verb` words the help ("record", "print", ...); `short` adds short
    spellings of ``--topics`` (mcl-dump's ``-t``).
    """
    parser.add_argument(
        "--topics",
        *short,
        nargs="+",
        type=comma_list,
        action=ExtendNames,
        metavar="NAMES",
        help=f"{verb} only these topics: exact names, several after one --topics, comma-separated or repeated",
    )
    if prefixes:
        parser.add_argument(
            "--topic-prefix",
            nargs="+",
            type=comma_list,
            action=ExtendNames,
            metavar="PREFIX",
            help=f"{verb} the topics starting with PREFIX (added up like --topics; with --topics: either matches)",
        )
    parser.add_argument(
        "--exclude",
        type=regex,
        action="append",
        metavar="REGEX",
        help="drop the topics REGEX matches anywhere in the name (re.search; repeatable)",
    )


def add_time_arguments(
    parser: _Adder,
    *,
    verb: str = "read",
    end_parser: _Adder | None = None,
    start_aliases: Sequence[str] = (),
    end_aliases: Sequence[str] = (),
    start_dest: str = "start",
    end_dest: str = "end",
) -> None:
    """``--start S`` / ``--end S``: seconds of log time from the log's time origin, inclusive.

    `end_parser` holds ``--end`` when it differs (a mutually exclusive
    group); the aliases are older spellings (mcl-replay's ``--start-offset``
    and ``--until``).
    """
    parser.add_argument(
        "--start",
        *start_aliases,
        dest=start_dest,
        type=non_negative_seconds,
        metavar="S",
        help=f"first second of log time to {verb} (inclusive; counted from the log's time origin)",
    )
    (end_parser or parser).add_argument(
        "--end",
        *end_aliases,
        dest=end_dest,
        type=non_negative_seconds,
        metavar="S",
        help=f"last second of log time to {verb} (inclusive; counted from the log's time origin)",
    )


def add_bus_argument(parser: _Adder) -> None:
    """``--bus ADDR``: the bus to use."""
    parser.add_argument(
        "--bus", metavar="ADDR", help="bus address, e.g. tcp://10.0.0.2:26000 (default: $MCL_BUS or the local default bus)"
    )


def add_quiet_argument(parser: _Adder, what: str = "no progress or summary lines") -> None:
    """``-q/--quiet``: errors only."""
    parser.add_argument("-q", "--quiet", action="store_true", help=f"{what} (errors and warnings only)")


def add_json_argument(parser: _Adder, what: str = "print JSON instead of text") -> None:
    """``--json``: the output as JSON."""
    parser.add_argument("--json", action="store_true", help=what)


def topic_filter(args: argparse.Namespace) -> TopicFilter | None:
    """The predicate of the topic options in `args` (None: every topic)."""
    from mcl.log.record import make_topic_filter

    return make_topic_filter(
        getattr(args, "topics", None),
        prefixes=getattr(args, "topic_prefix", None),
        exclude=getattr(args, "exclude", None),
    )


def exclude_pattern(args: argparse.Namespace) -> str | None:
    """The ``--exclude`` patterns as one regular expression (None when none given)."""
    patterns: list[str] | None = getattr(args, "exclude", None)
    if not patterns:
        return None
    return patterns[0] if len(patterns) == 1 else "|".join(f"(?:{p})" for p in patterns)


def replay_selection(args: argparse.Namespace) -> tuple[list[str] | None, str | None]:
    """The topic options in `args` as Replay's ``(topics, exclude)``: exact names and one regex.

    Replay's options cross into worker processes, so the selection is data,
    not a predicate: with ``--topic-prefix``, "neither named nor prefixed"
    becomes part of the exclude pattern (``^(?!name\\Z|prefix)``).
    """
    names: list[str] | None = getattr(args, "topics", None)
    prefixes: list[str] | None = getattr(args, "topic_prefix", None)
    exclude = exclude_pattern(args)
    if not prefixes:
        return names, exclude
    kept = [re.escape(n) + r"\Z" for n in names or ()] + [re.escape(p) for p in prefixes]
    others = f"^(?!{'|'.join(kept)})"
    return None, others if exclude is None else f"{others}|(?:{exclude})"


def bus_subscription(args: argparse.Namespace) -> tuple[list[str] | None, bool, TopicFilter | None]:
    """What to subscribe to on the bus for the topic options in `args`.

    Returns ``(topics, exact, keep)`` for a Subscriber (``topics`` prefixes,
    or exact names when ``exact``) and the predicate that must still be
    applied to what arrives (None when the subscription alone is the
    selection).
    """
    names: list[str] | None = getattr(args, "topics", None)
    prefixes: list[str] | None = getattr(args, "topic_prefix", None)
    excluded = bool(getattr(args, "exclude", None))
    if names and not prefixes:
        return list(names), True, topic_filter(args) if excluded else None
    if prefixes and not names:
        return list(prefixes), False, topic_filter(args) if excluded else None
    if names and prefixes:
        return list(names) + list(prefixes), False, topic_filter(args)
    return None, False, topic_filter(args)


def describe_topics(args: argparse.Namespace) -> str:
    """The topic selection in words, for status lines."""
    parts: list[str] = []
    names: Any = getattr(args, "topics", None)
    prefixes: Any = getattr(args, "topic_prefix", None)
    if names:
        parts.append("topics " + " ".join(names))
    if prefixes:
        parts.append("topics starting with " + " ".join(prefixes))
    text = " or ".join(parts) or "all topics"
    for pattern in getattr(args, "exclude", None) or ():
        text += f" except /{pattern}/"
    return text
