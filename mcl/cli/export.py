"""Export fields of the messages of a log to CSV or to a numpy .npy file.

Every exported message must be of one message type (choose it with --topics
when a log holds several); raw-typed records are skipped. CSV: one row per
message, one column per field, no header row, CRLF line ends (the original
MCL dump_to_csv). NPY: a 2-D float64 array, one row per message; a field
holding a numpy array or a list of numbers fills one column per element
(flattened), None becomes NaN.

Example:  mcl-export sample_logs/mcl-v1-dataset/UnitTestMessageA.log --fields name,data,timestamp --csv a.csv
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mcl.cli.common import (
    check_topics,
    comma_list,
    make_parser,
    non_negative_seconds,
    run_main,
)
from mcl.export import dump_to_array, dump_to_csv
from mcl.log.reader import open_log

__all__ = ["add_arguments", "main", "run"]

PROG = "mcl-export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mcl-export."""
    parser.add_argument("log", metavar="LOG", help="log directory, log file or split-series prefix")
    parser.add_argument(
        "--fields", required=True, type=comma_list, metavar="a,b,c", help="message fields to export, comma-separated"
    )
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", metavar="FILE", help="write a CSV file (replaced if it exists)")
    out.add_argument("--npy", metavar="FILE", help="write a numpy .npy file (replaced if it exists)")
    parser.add_argument("--topics", nargs="+", action="extend", metavar="T", help="export only these topics")
    parser.add_argument("--start", type=non_negative_seconds, metavar="S", help="first elapsed second (inclusive)")
    parser.add_argument("--end", type=non_negative_seconds, metavar="S", help="last elapsed second (inclusive)")


def main(argv: list[str] | None = None) -> int:
    """Run mcl-export with `argv` (default: sys.argv[1:]); return the exit status."""
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _export(parser.parse_args(argv)))


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def _export(args: argparse.Namespace) -> int:
    if args.topics:
        with open_log(args.log) as reader:
            check_topics(reader, args.topics)
    if args.csv is not None:
        rows = dump_to_csv(args.log, args.csv, args.fields, args.start, args.end, topics=args.topics)
        print(f"{rows} rows of {len(args.fields)} fields written to {args.csv}")
        return 0
    array = dump_to_array(args.log, args.fields, args.start, args.end, topics=args.topics)
    # Through a file object: np.save(path) would append '.npy' to the name.
    with open(args.npy, "wb") as fp:
        np.save(fp, array)
    print(f"{array.shape[0]} rows x {array.shape[1]} columns written to {args.npy}")
    return 0


if __name__ == "__main__":
    run()
