"""Convert, filter and merge logs between the formats: native, MCL_LOG 1.0 and MCAP.

Every IN (log directory, log file or split-series prefix, any format,
.mcap files included) is read, merged by absolute time, filtered by
--topics / --start / --end, and written to OUT, a new log (never
overwritten) in --format: native by default, mcap when OUT ends in .mcap
(one MCAP file; JSON messages Foxglove shows, or --mcap-encoding msgpack).
Payload bytes are copied as they are; the time origin is the earliest of
the inputs and the metadata of the inputs is kept (MCL_LOG 1.0 keeps only
the revision, rounds times to 10 µs and cannot hold topics with spaces).

Examples:
  mcl-convert old_dataset/ new_dataset/                  # MCL_LOG 1.0 -> native
  mcl-convert run/ run_mcl1/ --format mcl1               # native -> MCL_LOG 1.0
  mcl-convert a/ b/ merged/ --topics gps,imu --start 10 --end 70
  mcl-convert run/ run.mcap                              # native -> MCAP (Foxglove)
  mcl-convert run/ run.mcap --exclude '^camera/'        # everything but the cameras, to MCAP
  mcl-convert run/ out --format mcap --mcap-encoding msgpack
  mcl-convert recording.mcap run/                        # MCAP -> native
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mcl.cli.args import add_quiet_argument, add_time_arguments, add_topic_arguments, topic_filter
from mcl.cli.common import (
    check_topics,
    make_parser,
    megabytes,
    positive_seconds,
    run_main,
)
from mcl.exceptions import LogError
from mcl.log.convert import convert_log, output_format
from mcl.log.formats import FORMATS
from mcl.log.reader import open_log
from mcl.log.record import TopicFilter, seconds_to_ns
from mcl.mcap_export import source_metadata

__all__ = ["add_arguments", "main", "run", "convert"]

PROG = "mcl-convert"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mcl-convert."""
    parser.add_argument("inputs", nargs="+", metavar="IN", help="log directory, log file or split-series prefix")
    parser.add_argument("output", metavar="OUT", help="new log directory (or a .mcap file)")
    parser.add_argument("--format", choices=sorted(FORMATS), help="format of OUT (default: mcap when OUT ends in .mcap, else native)")
    add_topic_arguments(parser, verb="keep", prefixes=True)
    add_time_arguments(parser, verb="keep")
    add_quiet_argument(parser, "no line saying what was written")
    parser.add_argument("--compress", action="store_true", help="compress native chunks with zstd (MCAP output is always zstd-compressed)")
    parser.add_argument(
        "--mcap-encoding",
        choices=("json", "msgpack"),
        help="message encoding of an MCAP OUT (default json: what Foxglove reads; msgpack: payload bytes as recorded)",
    )
    parser.add_argument(
        "--mcap-metadata",
        action="store_true",
        help="write the absolute paths of the inputs into the MCAP file's metadata (left out by default)",
    )
    parser.add_argument("--split-size", type=megabytes, metavar="MB", help="start a new data file after MB megabytes (10^6 bytes), as mcl-dump")
    parser.add_argument("--split-duration", type=positive_seconds, metavar="S", help="start a new data file every S seconds")


def main(argv: list[str] | None = None) -> int:
    """Run mcl-convert with `argv` (default: sys.argv[1:]); return the exit status."""
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _convert(parser.parse_args(argv)), parser.prog)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def _convert(args: argparse.Namespace) -> int:
    name = output_format(args.output, args.format)
    mcap_only = (("--mcap-encoding", args.mcap_encoding), ("--mcap-metadata", args.mcap_metadata or None))
    if name == "mcap":
        given = (("--split-size", args.split_size), ("--split-duration", args.split_duration), ("--compress", args.compress or None))
        ignored = [flag for flag, value in given if value is not None]
        if ignored:
            verb = "does" if len(ignored) == 1 else "do"
            raise LogError(f"{' and '.join(ignored)} {verb} not apply to an MCAP output ({args.output}; MCAP is always zstd-compressed)")
    else:
        used = [flag for flag, value in mcap_only if value is not None]
        if used:
            raise LogError(f"{' and '.join(used)} applies only to an MCAP output (--format mcap or OUT ending in .mcap, not {args.output})")
        if args.compress and name != "native":
            raise LogError("--compress needs the native format")
    count = convert(
        args.inputs,
        args.output,
        format=name,
        topics=args.topics,
        topic_filter=topic_filter(args),
        start=args.start,
        end=args.end,
        split_size=None if args.split_size is None else round(args.split_size * 1_000_000),
        split_duration=args.split_duration,
        compress=args.compress,
        mcap_encoding=args.mcap_encoding or "json",
        mcap_metadata=args.mcap_metadata,
    )
    if not args.quiet:
        print(f"{PROG}: wrote {count} records to {args.output}")
    return 0


def convert(
    inputs: list[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    format: str | None = None,
    topics: list[str] | None = None,
    topic_filter: TopicFilter | None = None,
    start: float | None = None,
    end: float | None = None,
    split_size: int | None = None,
    split_duration: float | None = None,
    compress: bool = False,
    mcap_encoding: str = "json",
    mcap_metadata: bool = False,
) -> int:
    """Merge `inputs`, filter, write `output` (a new log of `format`, by default by its suffix); return the count.

    `topics` are exact names (each must be in the inputs); `topic_filter`,
    when given, is the whole selection (``make_topic_filter``) instead.
    """
    name = output_format(output, format)
    with open_log(*inputs, topics=topics if topic_filter is None else topic_filter, start=start, end=end) as reader:
        check_topics(reader, topics)
        options: dict[str, Any] = {}
        if name == "mcap":
            options["encoding"] = mcap_encoding
            options["metadata"] = source_metadata(reader, paths=mcap_metadata)
        else:
            options["split_size"] = split_size
            options["split_duration_ns"] = seconds_to_ns(split_duration)
            if compress:
                options["compression"] = "zstd"
        return convert_log(reader, output, name, **options)


if __name__ == "__main__":
    run()
