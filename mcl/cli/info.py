"""Show what a log holds: format, time origin, duration, size, topics, types, rates and damage.

Each LOG is a log directory, a log file or a split-series prefix, in any
format mcl reads (native, MCL_LOG 1.0 or MCAP: its channels' message
encodings are listed, those mcl does not decode are replayed as raw bytes);
several logs are shown one after the other. --plot PNG also draws their
timeline (several logs merged in one picture). With --json, one log gives
one JSON object and several logs give a JSON list of objects (in the order
given). Keys: path, format, files,
size_bytes, origin (UTC ISO 8601), origin_ns, start and end (elapsed s),
duration (s), messages, topics (topic -> {messages, types, bytes, rate_hz,
first, last}), damage (list of {path, line, offset, reason, lost_bytes}),
metadata, indexed, verified, accounting (what the recorder stored about its
losses: the accounting file of docs/log-format.md, null for a log without
one), window ({start, end} in log seconds as given, null without --start /
--end).

With --start / --end (seconds of log time from the log's time origin,
inclusive, as in mcl-cat) the messages, topics, types, rates and times are
those of the window, counted record by record (damage met doing so is
reported with the rest); files, size and the accounting are the whole log's.

Damage (a truncated tail, a damaged line or block, a data file that cannot
be read at all) is reported, not an error: the exit status is 0. A path
that is not a log exits 1. A native log's summary comes from its index or
its chunk headers, which say nothing of damaged chunk bodies: --check reads
every chunk and verifies every CRC ("verified" in the JSON); without it the
text says "not verified". MCL_LOG 1.0 logs are always read whole.

Examples:
  mcl-info sample_logs/vehicle
  mcl-info sample_logs/vehicle --check
  mcl-info run.mcap --json
  mcl-info sample_logs/vehicle --plot timeline.png
  mcl-info sample_logs/vehicle --start 2 --end 5   the messages of seconds 2 to 5
  mcl-info run1/ run2/ --json | jq '.[].duration'
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mcl.cli.args import add_json_argument, add_time_arguments
from mcl.cli.common import (
    format_seconds,
    format_size,
    format_utc,
    make_parser,
    run_main,
)
from mcl.jsonform import dumps as dumps_json
from mcl.log.formats import open_source
from mcl.exceptions import MclError
from mcl.log.record import LogSummary, TopicStats, window_summary
from mcl.timeutil import seconds_to_ns

__all__ = ["add_arguments", "main", "run", "summarize", "summary_to_dict"]

PROG = "mcl-info"
from mcl.timeutil import NS_PER_S as _NS  # noqa: E402

_FORMAT_NAMES = {"mcl1": "MCL_LOG 1.0 (original MCL text logs)", "native": "mcl native", "mcap": "MCAP"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mcl-info (other features add theirs here)."""
    parser.add_argument("logs", nargs="+", metavar="LOG", help="log directory, log file or split-series prefix")
    add_json_argument(parser, "print JSON instead of text (see below)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="read every record and verify every CRC (without it, a native log's damage is what its index and"
        " chunk headers say; chunk bodies are not verified)",
    )
    parser.add_argument(
        "--reindex",
        action="store_true",
        help="rebuild the index of a native log (after a crash or damage) before showing it",
    )
    add_time_arguments(parser, verb="count")
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="also draw a timeline picture into the new file PNG: one row per topic, rate over time, "
        "gaps (> 3x the median spacing) and damaged parts marked (needs matplotlib: mcl[plot])",
    )


def main(argv: list[str] | None = None) -> int:
    """Run mcl-info with `argv` (default: sys.argv[1:]); return the exit status."""
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _info(parser.parse_args(argv)), parser.prog)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def summarize(path: str, args: argparse.Namespace | None = None) -> LogSummary:
    """The summary of one log (any format); of the window ``args.start`` .. ``args.end`` (seconds) when given."""
    verify = args is not None and bool(getattr(args, "check", False))
    start_ns, end_ns = _window_ns(args)
    if args is not None and getattr(args, "reindex", False):
        from pathlib import Path

        from mcl.log import native

        if native.probe(Path(path)):
            repaired = native.reindex(path)
            if start_ns is None and end_ns is None:
                return repaired
    source = open_source(path)
    try:
        if start_ns is None and end_ns is None:
            return source.summary(verify=verify)
        return window_summary(source, start_ns, end_ns, verify=verify)
    finally:
        source.close()


def _window_ns(args: argparse.Namespace | None) -> tuple[int | None, int | None]:
    """--start / --end as elapsed ns (None: open); an empty window is a usage error."""
    start = None if args is None else getattr(args, "start", None)
    end = None if args is None else getattr(args, "end", None)
    if start is not None and end is not None and end < start:
        raise MclError(f"--end {end:g} s is before --start {start:g} s")
    return seconds_to_ns(start), seconds_to_ns(end)


def _accounting(summary: LogSummary) -> dict[str, Any] | None:
    """The recording's accounting file (None: none); an unreadable one as {"error": reason}."""
    from mcl.exceptions import LogError
    from mcl.recorder import read_accounting

    try:
        return read_accounting(summary.path)
    except LogError as exc:
        return {"error": str(exc)}


def _info(args: argparse.Namespace) -> int:
    summaries = [summarize(path, args) for path in args.logs]
    if args.plot is not None:
        from mcl.plot import plot_timeline

        timeline = plot_timeline(args.logs, args.plot)
        gaps = sum(len(t.gaps) for t in timeline.topics)
        losses = sum(len(t.losses) for t in timeline.topics)
        print(f"{PROG}: drew {args.plot}: {timeline.rows} topic row(s), {gaps} gap(s), "
              f"{losses} lost span(s), {timeline.damage_count} damaged part(s)", file=sys.stderr)
    windowed = args.start is not None or args.end is not None
    window = {"start": args.start, "end": args.end} if windowed else None
    if args.json:
        objects = [summary_to_dict(s) for s in summaries]
        for obj, summary in zip(objects, summaries):
            obj["accounting"] = _accounting(summary)
            obj["window"] = window
        print(dumps_json(objects[0] if len(objects) == 1 else objects, indent=2))
        return 0
    for i, summary in enumerate(summaries):
        if i:
            print()
        print(format_summary(summary))
        if windowed:
            print(f"window:    {_window_text(args.start, args.end)} of log time"
                  " (messages, topics and times counted in it; files and size: the whole log)")
        accounting = _accounting(summary)
        if accounting is not None:
            print(format_accounting(accounting))
    return 0


def _window_text(start: float | None, end: float | None) -> str:
    first = "the start" if start is None else f"{start:.3f} s"
    last = "the end" if end is None else f"{end:.3f} s"
    return f"{first} to {last}"


def format_accounting(acc: dict[str, Any]) -> str:
    """The text of a recording's accounting: totals, then the streams with losses or drops."""
    if "error" in acc:
        return f"recording: accounting unreadable: {acc['error']}"

    def num(value: Any) -> int:
        return value if isinstance(value, int) else 0

    head = (
        f"recording: {num(acc.get('recorded'))} recorded, {num(acc.get('lost'))} lost, "
        f"{num(acc.get('malformed'))} malformed (dropped), {num(acc.get('suspect'))} suspect"
    )
    if acc.get("complete") is not True:
        head += " (recording did not end cleanly: counts up to its last update)"
    lines = [head]
    reasons = acc.get("malformed_by_reason")
    if isinstance(reasons, dict) and reasons:
        lines.append("  dropped: " + ", ".join(f"{k} {num(v)}" for k, v in sorted(reasons.items())))
    raw_streams = acc.get("streams")
    streams = [s for s in raw_streams if isinstance(s, dict)] if isinstance(raw_streams, list) else []
    shown = [s for s in streams if num(s.get("lost")) or num(s.get("malformed")) or num(s.get("suspect"))]
    if shown:
        lines.append(f"  {'topic':<20}  {'publisher':<24}  {'received':>9}  {'lost':>7}  {'malformed':>9}  {'suspect':>7}  where lost (s)")
    for s in shown:
        raw_spans = s.get("loss_spans")
        spans = [sp for sp in raw_spans if isinstance(sp, dict)] if isinstance(raw_spans, list) else []
        where = ", ".join(
            f"{sp.get('after') if sp.get('after') is not None else '?'}..{sp.get('before')} ({num(sp.get('count'))})"
            for sp in spans[:5]
        ) + (f", ... ({len(spans)} spans)" if len(spans) > 5 else "")
        topic = json.dumps(str(s.get("topic", ""))[:60], ensure_ascii=False)
        publisher = str(s.get("publisher", ""))[:24]
        lines.append(
            f"  {topic:<20}  {publisher:<24}  {num(s.get('received')):>9}  {num(s.get('lost')):>7}  "
            f"{num(s.get('malformed')):>9}  {num(s.get('suspect')):>7}  {where or '-'}"
        )
    return "\n".join(lines)


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / _NS


def _rate_hz(stats: TopicStats) -> float | None:
    """Messages per second between the first and the last record of the topic."""
    if stats.messages < 2 or stats.first_ns is None or stats.last_ns is None or stats.last_ns <= stats.first_ns:
        return None
    return (stats.messages - 1) * _NS / (stats.last_ns - stats.first_ns)


def summary_to_dict(summary: LogSummary) -> dict[str, Any]:
    """The JSON object of mcl-info --json for one log."""
    return {
        "path": summary.path,
        "format": summary.format,
        "files": list(summary.files),
        "size_bytes": summary.size_bytes,
        "origin": None if summary.origin_ns is None else format_utc(summary.origin_ns),
        "origin_ns": summary.origin_ns,
        "start": _seconds(summary.start_ns),
        "end": _seconds(summary.end_ns),
        "duration": summary.duration_ns / _NS,
        "messages": summary.messages,
        "topics": {
            topic: {
                "messages": stats.messages,
                "types": sorted(stats.types),
                "bytes": stats.bytes,
                "rate_hz": _rate_hz(stats),
                "first": _seconds(stats.first_ns),
                "last": _seconds(stats.last_ns),
            }
            for topic, stats in sorted(summary.topics.items())
        },
        "damage": [
            {"path": d.path, "line": d.line, "offset": d.offset, "reason": d.reason, "lost_bytes": d.lost_bytes}
            for d in summary.damage
        ],
        "metadata": dict(summary.metadata),
        "indexed": summary.indexed,
        "verified": summary.verified,
    }


def format_summary(summary: LogSummary) -> str:
    """The text mcl-info prints for one log."""
    lines = [
        f"path:      {summary.path}",
        f"format:    {_FORMAT_NAMES.get(summary.format, summary.format)}",
        f"files:     {len(summary.files)}",
        f"size:      {format_size(summary.size_bytes)}",
        f"origin:    {format_utc(summary.origin_ns)}",
    ]
    if summary.start_ns is None or summary.end_ns is None:
        lines.append("duration:  0.000 s (no messages)")
    else:
        lines.append(
            f"duration:  {format_seconds(summary.duration_ns / _NS)}"
            f" (elapsed {summary.start_ns / _NS:.3f} s to {summary.end_ns / _NS:.3f} s)"
        )
    lines.append(f"messages:  {summary.messages}")
    for key, value in sorted(summary.metadata.items()):
        lines.append(f"{key + ':':<10} {value}")
    if summary.damage:
        lines.append(f"damage:    {len(summary.damage)} damaged part(s) skipped")
        lines += [f"  - {d}" for d in summary.damage]
        if not summary.verified:
            lines.append("           the rest not verified (use --check)")
    elif summary.verified:
        lines.append("damage:    none (every record read and checked)")
    else:
        lines.append("damage:    none known, not verified (use --check)")
    if summary.topics:
        lines.append("topics:")
        names = [json.dumps(t, ensure_ascii=False) for t in sorted(summary.topics)]
        width = max(len("topic"), *(len(n) for n in names))
        lines.append(f"  {'topic':<{width}}  {'messages':>9}  {'rate':>10}  types")
        for name, (_, stats) in zip(names, sorted(summary.topics.items())):
            rate = _rate_hz(stats)
            rate_text = "-" if rate is None else f"{rate:.2f} Hz"
            types = ", ".join(sorted(stats.types)) or "(raw data)"
            lines.append(f"  {name:<{width}}  {stats.messages:>9}  {rate_text:>10}  {types}")
    return "\n".join(lines)


if __name__ == "__main__":
    run()
