"""Export the messages of logs to CSV, to a numpy .npy file or to a Parquet dataset.

CSV and NPY export fields of one message type (choose it with --topics when
a log holds several); raw-typed records are skipped. CSV: one row per
message, one column per field, CRLF line ends, no header row unless
--header (the original MCL dump_to_csv). NPY: a 2-D float64 array, one row
per message; a field holding a numpy array or a list of numbers fills one
column per element (flattened), None becomes NaN.

Parquet (--parquet OUTDIR, needs mcl[tables]): every message type, one
hive-style directory per type (OUTDIR/type=NAME/) with the decoded fields
and topic, time, elapsed (and log, with several logs); records that are not
named messages go to OUTDIR/raw/type=raw/ with their payload bytes. OUTDIR
must not exist (or be empty); a failed export leaves nothing there. Read it
with DuckDB: SELECT ... FROM read_parquet('OUTDIR/**/*.parquet', hive_partitioning = true).

Examples:
  mcl-export sample_logs/mcl-v1-dataset/UnitTestMessageA.log --fields name,data,timestamp --csv a.csv
  mcl-export sample_logs/vehicle --topics gps --fields timestamp,latitude,longitude --csv - | head
  mcl-export sample_logs/vehicle --parquet vehicle.parquet
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

import numpy as np

from mcl.cli.args import STDOUT, add_quiet_argument, add_time_arguments, add_topic_arguments, topic_filter
from mcl.cli.common import (
    StopSignals,
    check_topics,
    comma_list,
    make_parser,
    run_main,
)
from mcl.export import dump_to_array, dump_to_csv
from mcl.log.reader import open_log

__all__ = ["add_arguments", "main", "run"]

PROG = "mcl-export"
PROGRESS_MIN_RECORDS = 200_000  # a progress bar (on a terminal) for exports of at least this many records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mcl-export."""
    parser.add_argument("log", metavar="LOG", nargs="+", help="log directories, log files or split-series prefixes")
    parser.add_argument(
        "--fields", type=comma_list, metavar="a,b,c", help="message fields to export, comma-separated (--csv, --npy)"
    )
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", metavar="FILE", help="write a CSV file (replaced if it exists; - writes to standard output)")
    out.add_argument("--npy", metavar="FILE", help="write a numpy .npy file (replaced if it exists)")
    out.add_argument("--parquet", metavar="OUTDIR", help="write a Parquet dataset, one directory per message type")
    parser.add_argument("--header", action="store_true", help="CSV: a first row with the field names")
    add_topic_arguments(parser, verb="export", prefixes=True)
    add_time_arguments(parser, verb="export")
    add_quiet_argument(parser, "no line saying what was written")


def main(argv: list[str] | None = None) -> int:
    """Run mcl-export with `argv` (default: sys.argv[1:]); return the exit status."""
    parser = make_parser(PROG, __doc__, add_arguments)

    def body() -> int:
        args = parser.parse_args(argv)
        if args.parquet is None and not args.fields:
            parser.error("--fields is required with --csv and --npy")
        if args.parquet is not None and args.fields:
            parser.error("--fields does not apply to --parquet (every field of every type is exported)")
        if args.header and args.csv is None:
            parser.error("--header applies to --csv only")
        return _export(args)

    return run_main(body, parser.prog)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def _export(args: argparse.Namespace) -> int:
    logs = args.log if len(args.log) > 1 else args.log[0]
    if args.topics:
        with open_log(*args.log) as reader:
            check_topics(reader, args.topics)
    if args.parquet is not None:
        return _export_parquet(args)
    topics = topic_filter(args)
    if args.csv is not None:
        target = sys.stdout if args.csv == STDOUT else args.csv
        rows = dump_to_csv(logs, target, args.fields, args.start, args.end, topics=topics, header=args.header)
        if not args.quiet:
            where = "standard output" if args.csv == STDOUT else args.csv
            print(f"{rows} rows of {len(args.fields)} fields written to {where}", file=sys.stderr if args.csv == STDOUT else sys.stdout)
        return 0
    array = dump_to_array(logs, args.fields, args.start, args.end, topics=topics)
    # Through a file object: np.save(path) would append '.npy' to the name.
    with open(args.npy, "wb") as fp:
        np.save(fp, array)
    if not args.quiet:
        print(f"{array.shape[0]} rows x {array.shape[1]} columns written to {args.npy}")
    return 0


def _export_parquet(args: argparse.Namespace) -> int:
    from mcl.tables.parquet import RAW_DIR, export_parquet

    total = _known_total(args.log)
    with StopSignals(raise_exit=True), _progress(total) as advance:
        result = export_parquet(
            args.log, args.parquet, topics=topic_filter(args), start=args.start, end=args.end, progress=advance
        )
    if args.quiet:
        return 0
    for name, rows in sorted(result.rows.items()):
        print(f"{rows} rows of {name} written to {result.path}/type={quote(name, safe='')}/")
    if result.raw_rows:
        print(f"{result.raw_rows} raw records (not named messages) written to {result.path}/{RAW_DIR}/")
    print(f"{sum(result.rows.values()) + result.raw_rows} rows in {len(result.files)} files written to {result.path}")
    return 0


def _known_total(logs: list[str]) -> int | None:
    """Records in the logs when their indexes tell it for free (native), else None."""
    with open_log(*logs) as reader:
        if any(source.format != "native" for source in reader.sources):
            return None
        return sum(summary.messages for summary in reader.summaries())


class _progress:  # noqa: N801 - used as a context manager like a function
    """A rich progress bar on stderr for large exports on a terminal (a pulsing one with a count
    when the total is unknown: MCL_LOG 1.0 has no index); otherwise a no-op."""

    def __init__(self, total: int | None) -> None:
        self.bar: Any = None
        if (total is None or total >= PROGRESS_MIN_RECORDS) and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TextColumn("records"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            self.task = self.bar.add_task("export", total=total)

    def __enter__(self) -> Any:
        if self.bar is None:
            return None
        self.bar.start()
        return lambda n: self.bar.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


if __name__ == "__main__":
    run()
