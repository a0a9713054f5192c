"""Convert, filter and merge logs: native <-> MCL_LOG 1.0, or to MCAP.

Every IN (log directory, log file or split-series prefix, any format) is
read, merged by absolute time, filtered by --topics / --start / --end, and
written to OUT, a new log directory (never overwritten) in --format
(default: native). If OUT ends with .mcap, an MCAP file is written instead.
Payload bytes are copied as they are; the time origin is the earliest of
the inputs and the metadata of the inputs is kept (MCL_LOG 1.0 keeps only
the revision, rounds times to 10 µs and cannot hold topics with spaces).

Examples:
  mcl-convert old_dataset/ new_dataset/                  # MCL_LOG 1.0 -> native
  mcl-convert run/ run_mcl1/ --format mcl1               # native -> MCL_LOG 1.0
  mcl-convert a/ b/ merged/ --topics gps,imu --start 10 --end 70
  mcl-convert run/ run.mcap --exclude '^camera/'        # everything but the cameras, to MCAP
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from mcl.cli.args import add_quiet_argument, add_time_arguments, add_topic_arguments, topic_filter
from mcl.cli.common import (
    check_topics,
    make_parser,
    non_negative_seconds,
    positive_number,
    run_main,
)
from mcl.exceptions import LogError, MclError
from mcl.log.formats import FORMATS
from mcl.log.reader import LogReader, LogWriter, open_log
from mcl.log.record import LogSource, TopicFilter

__all__ = ["add_arguments", "main", "run", "convert"]

PROG = "mcl-convert"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mcl-convert."""
    parser.add_argument("inputs", nargs="+", metavar="IN", help="log directory, log file or split-series prefix")
    parser.add_argument("output", metavar="OUT", help="new log directory (or a .mcap file)")
    parser.add_argument("--format", choices=sorted(FORMATS), help="format of OUT (default: native)")
    add_topic_arguments(parser, verb="keep", prefixes=True)
    add_time_arguments(parser, verb="keep")
    add_quiet_argument(parser, "no line saying what was written")
    parser.add_argument("--compress", action="store_true", help="compress native chunks with zstd (MCAP output is always zstd-compressed)")
    parser.add_argument(
        "--mcap-encoding",
        choices=("json", "msgpack"),
        help="message encoding of a .mcap OUT (default json: what Foxglove reads; msgpack: payload bytes as recorded)",
    )
    parser.add_argument("--split-size", type=positive_number, metavar="MB", help="start a new data file after MB megabytes (10^6 bytes), as mcl-dump")
    parser.add_argument("--split-duration", type=non_negative_seconds, metavar="S", help="start a new data file every S seconds")


def main(argv: list[str] | None = None) -> int:
    """Run mcl-convert with `argv` (default: sys.argv[1:]); return the exit status."""
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _convert(parser.parse_args(argv)))


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def _convert(args: argparse.Namespace) -> int:
    options: dict[str, object] = {}
    if Path(args.output).suffix == ".mcap":
        given = (("--format", args.format), ("--split-size", args.split_size), ("--split-duration", args.split_duration))
        ignored = [name for name, value in given if value is not None]
        if ignored:
            verb = "does" if len(ignored) == 1 else "do"
            raise LogError(f"{' and '.join(ignored)} {verb} not apply to an MCAP output ({args.output})")
        options["mcap_encoding"] = args.mcap_encoding or "json"
    else:
        if args.mcap_encoding is not None:
            raise LogError(f"--mcap-encoding applies only to an MCAP output (OUT ending in .mcap, not {args.output})")
        if args.compress:
            if args.format not in (None, "native"):
                raise LogError("--compress needs the native format")
            options["compression"] = "zstd"
    count = convert(
        args.inputs,
        args.output,
        format=args.format or "native",
        topics=args.topics,
        topic_filter=topic_filter(args),
        start=args.start,
        end=args.end,
        split_size=None if args.split_size is None else round(args.split_size * 1_000_000),
        split_duration=args.split_duration,
        **options,
    )
    if not args.quiet:
        print(f"{PROG}: wrote {count} records to {args.output}")
    return 0


def convert(
    inputs: list[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    format: str = "native",
    topics: list[str] | None = None,
    topic_filter: TopicFilter | None = None,
    start: float | None = None,
    end: float | None = None,
    split_size: int | None = None,
    split_duration: float | None = None,
    **options: object,
) -> int:
    """Merge `inputs`, filter, write `output` (a new log, or an MCAP file); return the record count.

    `topics` are exact names (each must be in the inputs); `topic_filter`,
    when given, is the whole selection (``make_topic_filter``) instead.
    """
    out = Path(output)
    with open_log(*inputs, topics=topics if topic_filter is None else topic_filter, start=start, end=end) as reader:
        check_topics(reader, topics)
        if out.suffix == ".mcap":
            encoding = str(options.pop("mcap_encoding", "json"))
            return _write_mcap(reader, out, encoding)
        origin = reader.origin_ns if reader.origin_ns is not None else 0
        count = 0
        existed = out.exists()
        writer = LogWriter(
            out,
            format,
            origin_ns=origin,
            metadata=_merged_metadata(reader.sources),
            split_size=split_size,
            split_duration=split_duration,
            **options,
        )
        try:
            write = writer.write_record
            for record in reader:
                write(record)
                count += 1
        except BaseException:
            # A half-written log is of no use and would block a second try: remove it
            # (LogWriter made sure the directory was new or empty).
            try:
                writer.close()
            except (MclError, OSError):
                pass
            _remove_log(out, existed)
            raise
        writer.close()
    return count


def _remove_log(path: Path, existed: bool) -> None:
    """Delete the files of the log just written at `path`, and the directory if we made it."""
    try:
        for p in path.iterdir():
            p.unlink(missing_ok=True)
        if not existed:
            path.rmdir()
    except OSError:
        pass  # the original error matters more


def _write_mcap(reader: LogReader, out: Path, encoding: str = "json") -> int:
    try:
        module = importlib.import_module("mcl.mcap_export")
    except ModuleNotFoundError as exc:
        if exc.name not in ("mcl.mcap_export", "mcap"):
            raise
        raise LogError("MCAP export needs the mcl.mcap_export module and the 'mcap' package (pip install mcl[mcap])") from None
    counts = module.write_mcap(reader, out, encoding=encoding)  # topic -> messages written
    return sum(counts.values())


def _merged_metadata(sources: list[LogSource]) -> dict[str, str]:
    """Metadata of the inputs; a key with different values keeps them all, comma-separated."""
    merged: dict[str, list[str]] = {}
    for source in sources:
        for key, value in _metadata_of(source).items():
            values = merged.setdefault(key, [])
            if value not in values:
                values.append(value)
    return {key: ", ".join(values) for key, values in merged.items()}


def _metadata_of(source: LogSource) -> dict[str, str]:
    metadata = getattr(source, "metadata", None)
    if isinstance(metadata, dict):
        return {str(k): str(v) for k, v in metadata.items()}
    if source.format == "mcl1":
        # The revision is in the header of each series' first file; read only the headers.
        from mcl.log.mcl1 import read_header

        revisions: list[str] = []
        for path in getattr(source, "files", []):
            with open(path, encoding="latin-1", newline="") as fp:
                header = read_header(fp, Path(path))
            if header is not None and header.revision and header.revision not in revisions:
                revisions.append(header.revision)
        return {"revision": ", ".join(revisions)} if revisions else {}
    return {}


if __name__ == "__main__":
    run()
