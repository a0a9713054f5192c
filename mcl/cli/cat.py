"""Print every record of one or more logs as JSON lines, in time order.

Each line is one JSON object: {"time": elapsed seconds, "topic": ...,
"payload": decoded payload}. Messages are maps holding name, timestamp and
their fields; bytes (values and map keys) are written as base64 strings,
numpy arrays as lists, NaN and infinity as null (the rules of
mcl.jsonform, the same as mcl-info --json and the MCAP export). Raw-typed records (payloads that are not named messages) are printed
too. Several logs are merged by absolute time; "time" counts from the
earliest time origin. A payload that is not valid msgpack (or nested too
deep) is printed as {"time", "topic", "payload_base64", "error"} with a
one-line warning on stderr.

Examples:
  mcl-cat sample_logs/vehicle --topics gps --start 1 --end 2 | head
  mcl-cat sample_logs/vehicle --topic-prefix camera --exclude front
  mcl-cat run1/ run2/ --topics imu,gps > merged.jsonl
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable

from mcl.cli.args import add_time_arguments, add_topic_arguments, topic_filter
from mcl.cli.common import (
    check_topics,
    make_parser,
    print_warning,
    run_main,
)
from mcl.exceptions import MessageError
from mcl.jsonform import to_plain_json
from mcl.log.reader import open_log
from mcl.message import unpack
from mcl.timeutil import NS_PER_S

__all__ = ["add_arguments", "main", "run", "json_line"]

PROG = "mcl-cat"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mcl-cat."""
    parser.add_argument("logs", nargs="+", metavar="LOG", help="log directory, log file or split-series prefix")
    add_topic_arguments(parser, verb="print", prefixes=True)
    add_time_arguments(parser, verb="print")


def main(argv: list[str] | None = None) -> int:
    """Run mcl-cat with `argv` (default: sys.argv[1:]); return the exit status."""
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _cat(parser.parse_args(argv)), parser.prog)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def _cat(args: argparse.Namespace) -> int:
    write = sys.stdout.write
    dumps = json.dumps
    seen: set[str] = set()
    with open_log(*args.logs, topics=topic_filter(args), start=args.start, end=args.end) as reader:
        for elapsed_ns, topic, payload in reader:
            seen.add(topic)
            write(json_line(elapsed_ns, topic, payload, dumps))
            write("\n")
        check_topics(reader, args.topics, seen)
    return 0


def json_line(elapsed_ns: int, topic: str, payload: bytes, dumps: Callable[..., str] = json.dumps) -> str:
    """One record as the JSON line of mcl-cat (and of mcl-dump --echo --json), without the newline.

    Values follow :func:`mcl.jsonform.to_plain_json`. A payload that is
    not valid msgpack, or that cannot be written as JSON (nested deeper
    than Python recurses), gives {"time", "topic", "payload_base64",
    "error"} and a one-line warning on stderr.
    """
    time_s = elapsed_ns / NS_PER_S
    try:
        value = to_plain_json(unpack(payload))
        return dumps({"time": time_s, "topic": topic, "payload": value}, ensure_ascii=False, allow_nan=False)
    except (MessageError, RecursionError, ValueError) as exc:
        error = str(exc) if isinstance(exc, MessageError) else f"payload of {len(payload)} bytes cannot be written as JSON: {type(exc).__name__}"
        print_warning(f"record at {time_s:.6f} s on topic {topic!r}: {error}")
        return dumps(
            {
                "time": time_s,
                "topic": topic,
                "payload_base64": base64.b64encode(payload).decode("ascii"),
                "error": error,
            },
            ensure_ascii=False,
        )


if __name__ == "__main__":
    run()
