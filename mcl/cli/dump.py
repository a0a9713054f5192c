"""mcl-dump: record a live bus into a new log directory (and/or print what flows on it).

Each recording goes to a new directory DIR/<UTC timestamp>_<host>/ (never an
existing one), native format unless --format mcl1. The log is flushed every
--flush-interval (default 0.1 s): a recorder killed with SIGKILL loses at most
that much and the log reads back. Ctrl-C / SIGTERM / SIGHUP close the log cleanly (exit 0).

Scheduled capture: --start-at TIME, --window START END (repeatable), or
--every S --for S; each window is a separate log directory. TIME is '+S'
(seconds from now), 'HH:MM[:SS]' (local time, the next such time) or an ISO
date and time (local unless it ends with Z or an offset). --duration and
--count end the whole run.

Examples:
  mcl-dump                                  all topics of the default bus into ./
  mcl-dump --topics imu gps -o /data --split-size 512 --max-files 20 --compress
  mcl-dump --topic-prefix camera/ --exclude rear   the camera topics but the rear ones
  mcl-dump --echo --no-record --topics imu  print decoded messages only
  mcl-dump --every 3600 --for 60            one minute every hour
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import itertools
import json
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mcl.cli.args import (
    add_bus_argument,
    add_json_argument,
    add_quiet_argument,
    add_topic_arguments,
    bus_subscription,
    describe_topics,
)
from mcl.cli.common import (
    StopSignals,
    format_seconds,
    format_size,
    make_parser,
    megabytes,
    positive_int,
    queue_length,
    positive_seconds,
    print_warning,
    run_main,
)
from mcl.exceptions import MclError, RecordError
from mcl.log.record import datetime_to_ns
from mcl.timeutil import NS_PER_S

if TYPE_CHECKING:
    from mcl.recorder import RecordOptions

_ECHO_QUEUE = 10_000  # echo lines waiting to be printed; beyond, echo skips (recording never does)
_ECHO_BYTES = 64 << 20  # payload bytes waiting to be printed; beyond, echo skips too
_ECHO_CHARS = 2000  # an echo line shows at most this much of a message


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mcl-dump."""
    add_bus_argument(parser)
    add_topic_arguments(parser, verb="record", prefixes=True, short=("-t",))
    parser.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)  # accepted for old scripts: --topics are exact names now
    parser.add_argument("-o", "--output", metavar="DIR", default=".", help="where the <UTC timestamp>_<host>/ log directories go (default: .)")
    parser.add_argument("--format", choices=("native", "mcl1"), default="native", help="log format (default: native)")
    parser.add_argument("--split-size", type=megabytes, metavar="MB", help="start a new data file after MB megabytes (10^6 bytes)")
    parser.add_argument("--split-duration", type=positive_seconds, metavar="S", help="start a new data file every S seconds")
    parser.add_argument("--max-files", type=positive_int, metavar="N", help="rotation: keep only the newest N data files (native format)")
    parser.add_argument("--compress", action="store_true", help="compress data blocks with zstd (native format)")
    parser.add_argument("--flush-interval", type=positive_seconds, default=0.1, metavar="S", help="flush the log every S seconds; SIGKILL loses at most this much (default: 0.1)")
    parser.add_argument("--hwm", type=queue_length, default=100_000, metavar="N", help="messages queued for the recorder while it writes; when full the bus waits (a replay) or drops (live publishers; counted as lost); default: 100000")
    parser.add_argument("--metadata", "-m", action="append", default=[], metavar="KEY=VALUE", help="free metadata kept with the log (repeatable)")
    stop = parser.add_argument_group("stopping")
    stop.add_argument("--duration", type=positive_seconds, metavar="S", help="stop after S seconds of recording")
    stop.add_argument("--count", type=positive_int, metavar="N", help="stop after N messages")
    sched = parser.add_argument_group("scheduled capture")
    sched.add_argument("--start-at", metavar="TIME", help="wait until TIME before recording")
    sched.add_argument("--window", nargs=2, action="append", metavar=("START", "END"), help="record from START to END (repeatable; END may be '+S' after START)")
    sched.add_argument("--every", type=positive_seconds, metavar="S", help="start a recording every S seconds (with --for)")
    sched.add_argument("--for", dest="for_", type=positive_seconds, metavar="S", help="length of each --every recording")
    sched.add_argument("--repeat", type=positive_int, metavar="N", help="with --every: stop after N recordings")
    out = parser.add_argument_group("output")
    out.add_argument("--echo", action="store_true", help="print each message decoded on stdout (as well as recording)")
    add_json_argument(out, "with --echo: one JSON line per message, the line mcl-cat prints for it ({time, topic, payload})")
    out.add_argument("--no-record", action="store_true", help="write no log (with --echo: print only; alone: count and report losses)")
    add_quiet_argument(out, "no status lines and no summary")
    out.add_argument("--status-interval", type=positive_seconds, default=5.0, metavar="S", help="seconds between status lines when stderr is not a terminal (default: 5)")


def main(argv: list[str] | None = None) -> int:
    """Run mcl-dump with `argv` (default: sys.argv[1:]); returns the exit status."""
    parser = make_parser("mcl-dump", __doc__, add_arguments)
    return run_main(lambda: _dump(parser, parser.parse_args(argv)), parser.prog)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


# -- argument types and checks ----------------------------------------------------------


def parse_time(text: str, now_ns: int, after_ns: int | None = None) -> int:
    """A --start-at / --window TIME to UTC ns since the epoch.

    '+S' is S seconds after `after_ns` (default: now); 'HH:MM[:SS]' is the
    next such local time after `after_ns` (or now); otherwise an ISO date
    and time, local unless it carries Z or an offset.
    """
    base = now_ns if after_ns is None else after_ns
    text = text.strip()
    if text.startswith("+"):
        try:
            seconds = float(text[1:])
        except ValueError:
            raise ValueError(f"{text!r} is not '+SECONDS'") from None
        if not 0 <= seconds < float("inf"):
            raise ValueError(f"{text!r}: seconds must be >= 0")
        return base + round(seconds * NS_PER_S)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?", text)
    if m:
        hour, minute = int(m.group(1)), int(m.group(2))
        sec = float(m.group(3) or 0)
        if hour > 23 or minute > 59 or sec >= 60:
            raise ValueError(f"{text!r} is not a time of day")
        local = _dt.datetime.fromtimestamp(base / NS_PER_S).astimezone()
        when = local.replace(hour=hour, minute=minute, second=int(sec), microsecond=round((sec % 1) * 1e6))
        if datetime_to_ns(when) <= base:
            when = (when + _dt.timedelta(days=1)).replace(hour=hour, minute=minute)
        return datetime_to_ns(when)
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time ('+S', 'HH:MM[:SS]' or an ISO date and time)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return datetime_to_ns(when)


@dataclass(frozen=True, slots=True)
class Window:
    """One recording of a schedule."""

    start_ns: int = 0  # UTC ns since the epoch; 0: at once
    end_ns: int | None = None  # UTC ns since the epoch; None: until stopped


def make_schedule(args: argparse.Namespace, now_ns: int) -> Iterator[Window]:
    """The recordings asked for by --start-at / --window / --every --for (ValueError if bad)."""
    if args.window and (args.every or args.start_at):
        raise ValueError("--window cannot be combined with --start-at or --every")
    if (args.every is None) != (args.for_ is None):
        raise ValueError("--every and --for go together")
    if args.repeat is not None and args.every is None:
        raise ValueError("--repeat needs --every")
    if args.every is not None and args.for_ > args.every:
        raise ValueError(f"--for {args.for_} is longer than --every {args.every}")
    start = 0 if args.start_at is None else parse_time(args.start_at, now_ns)
    if args.window:
        windows = []
        for a, b in args.window:
            s = parse_time(a, now_ns)
            e = parse_time(b, now_ns, after_ns=s)
            if e <= s:
                raise ValueError(f"--window {a} {b}: the end is not after the start")
            windows.append(Window(s, e))
        windows.sort(key=lambda w: w.start_ns)
        for w1, w2 in itertools.pairwise(windows):
            if w2.start_ns < (w1.end_ns or 0):
                raise ValueError("--window: windows overlap")
        live = [w for w in windows if (w.end_ns or 0) > now_ns]
        if not live:
            raise ValueError("--window: every window is already over")
        return iter(live)
    if args.every is not None:
        return _every(start or now_ns, round(args.every * NS_PER_S), round(args.for_ * NS_PER_S), args.repeat)
    return iter([Window(start, None)])


def _every(first_ns: int, period_ns: int, length_ns: int, repeat: int | None) -> Iterator[Window]:
    n = 0
    while repeat is None or n < repeat:
        s = first_ns + n * period_ns
        yield Window(s, s + length_ns)
        n += 1


def _metadata(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata {item!r} is not KEY=VALUE")
        out[key] = value
    return out


# -- the run --------------------------------------------------------------------------------


def _dump(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.json and not args.echo:
        parser.error("--json applies to --echo (the messages printed)")
    if args.no_record and (args.split_size or args.split_duration or args.max_files or args.compress):
        parser.error("--no-record writes no log: --split-size, --split-duration, --max-files and --compress do not apply")
    from mcl.recorder import RecordOptions

    try:
        topics, exact, keep = bus_subscription(args)
        # The recorder's settings, built and validated once; each recording of a schedule
        # only changes when it stops (duration, count).
        options = RecordOptions.from_seconds(
            bus=args.bus,
            topics=topics,
            exact=exact,
            topic_filter=keep,
            format=args.format,
            metadata=_metadata(args.metadata),
            split_size=None if args.split_size is None else round(args.split_size * 1_000_000),
            split_duration=args.split_duration,
            max_files=args.max_files,
            compression="zstd" if args.compress else None,
            flush_interval=args.flush_interval,
            hwm=args.hwm,
        )
        schedule = make_schedule(args, time.time_ns())
    except (ValueError, RecordError) as exc:
        parser.error(str(exc))
    from mcl.network.address import parse_bus

    parse_bus(args.bus)  # a bad address is an error before any log directory is made

    with StopSignals() as stop:
        return _run_schedule(args, options, schedule, stop)


def _run_schedule(args: argparse.Namespace, options: RecordOptions, schedule: Iterator[Window], stop: StopSignals) -> int:
    from mcl.recorder import Recorder, make_log_path

    err = sys.stderr
    quiet = args.quiet
    total_messages = 0
    run_start: int | None = None  # monotonic ns when the first recording started
    echo = _Echo(sys.stdout, as_json=args.json) if args.echo else None
    # --every without --start-at is relative to the start: anchor it at the first
    # recording, not at the time the schedule was made (start-up would eat into
    # the first window).
    relative = args.every is not None and args.start_at is None
    shift = 0
    for window in schedule:
        if relative:
            if run_start is None:
                shift = time.time_ns() - window.start_ns
            window = Window(window.start_ns + shift, None if window.end_ns is None else window.end_ns + shift)
        now = time.time_ns()
        if window.end_ns is not None and window.end_ns <= now:
            continue
        if window.start_ns > now:
            if not quiet:
                print(f"waiting until {_local(window.start_ns)} to record", file=err, flush=True)
            if stop.event.wait((window.start_ns - now) / NS_PER_S):
                break
        if stop.event.is_set():
            break
        duration_ns = None if args.duration is None else round(args.duration * NS_PER_S)
        if run_start is not None and duration_ns is not None:
            duration_ns -= time.monotonic_ns() - run_start
            if duration_ns <= 0:
                break
        if window.end_ns is not None:
            # A relative window (--every S --for L) records L from its start, however late
            # the start-up; an absolute one (--window, --start-at) ends at its END.
            left = window.end_ns - (window.start_ns if relative else time.time_ns())
            duration_ns = left if duration_ns is None else min(duration_ns, left)
        count = None if args.count is None else args.count - total_messages
        path = None if args.no_record else make_log_path(args.output)
        recorder = Recorder(
            path,
            dataclasses.replace(
                options,
                duration_ns=duration_ns,
                count=count,
                on_message=None if echo is None else echo.push,
            ),
        )
        try:
            recorder.start()
        except BaseException:
            _remove_if_empty(path)
            raise
        if run_start is None:
            run_start = time.monotonic_ns()
        if echo is not None:
            echo.origin_ns = recorder.origin_ns
        if not quiet:
            where = f"recording to {path}" if path is not None else "listening (not recording)"
            print(f"{where} ({args.format if path else 'no log'}; {describe_topics(args)})", file=err, flush=True)
        failure: MclError | None = None
        try:
            _watch(recorder, stop, echo, args)
        finally:
            try:
                final = recorder.stop()
            except MclError as exc:
                failure = exc
                final = recorder.status()
        if echo is not None:
            echo.drain()
        if not quiet:
            _print_summary(final, err, echo)
        if failure is not None:
            raise failure
        total_messages += final.messages
        if stop.event.is_set() or (args.count is not None and total_messages >= args.count):
            break
        if args.duration is not None and time.monotonic_ns() - run_start >= args.duration * NS_PER_S:
            break
    return 0


def _remove_if_empty(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.rmdir()  # only succeeds if nothing was written
    except OSError:
        pass


def _local(ns: int) -> str:
    return _dt.datetime.fromtimestamp(ns / NS_PER_S).astimezone().isoformat(timespec="seconds")


def _watch(recorder: Any, stop: StopSignals, echo: _Echo | None, args: argparse.Namespace) -> None:
    """Show status and echo until the recording ends or a signal arrives."""
    err = sys.stderr
    live_display = not args.quiet and echo is None and err.isatty()
    plain = not args.quiet and echo is None and not live_display
    tick = 0.05 if echo is not None else 0.25
    next_line = time.monotonic() + args.status_interval
    live = None
    if live_display:
        from rich.console import Console
        from rich.live import Live

        live = Live(_status_text(recorder.status()), console=Console(file=err), refresh_per_second=4, transient=True)
        live.start()
    try:
        while not stop.event.is_set():
            if recorder.wait(tick):
                break
            if echo is not None:
                echo.drain()
            if live is not None:
                live.update(_status_text(recorder.status()))
            elif plain and time.monotonic() >= next_line:
                next_line += args.status_interval
                print(_status_text(recorder.status()), file=err, flush=True)
    finally:
        if live is not None:
            live.stop()


def _status_text(st: Any) -> str:
    parts = [
        f"{format_seconds(st.elapsed_ns / NS_PER_S)}",
        f"{st.messages:,} msgs",
        format_size(st.bytes),
        f"{st.rate:,.0f} msg/s",
        f"lost {st.lost:,}",
    ]
    if st.malformed:
        parts.append(f"malformed {st.malformed:,}")
    if st.current_file:
        parts.append(f"file {Path(st.current_file).name}" + (f" ({st.files} files)" if st.files > 1 else ""))
    return " | ".join(parts)


def _show_topic(topic: str) -> str:
    """A topic as printed in the summary: as is when printable and short, else quoted and cut (hostile input)."""
    if topic and topic.isprintable() and len(topic) <= 60 and topic.strip() == topic:
        return topic
    text = json.dumps(topic[:60], ensure_ascii=True)
    return text if len(topic) <= 60 else text[:-1] + f'..." ({len(topic)} chars)'


def _print_summary(st: Any, out: IO[str], echo: _Echo | None) -> None:
    seconds = st.elapsed_ns / NS_PER_S
    bad = st.malformed or st.suspect or any(t.malformed or t.suspect for t in st.topics.values())
    head_row = ("topic", "messages", "bytes", "msg/s", "lost") + (("malformed", "suspect") if bad else ())
    rows = [head_row]
    for topic in sorted(st.topics):
        t = st.topics[topic]
        rows.append((_show_topic(topic), f"{t.messages:,}", format_size(t.bytes), f"{t.messages / seconds:,.1f}" if seconds > 0 else "-", f"{t.lost:,}") + ((f"{t.malformed:,}", f"{t.suspect:,}") if bad else ()))
    rows.append(("total", f"{st.messages:,}", format_size(st.bytes), f"{st.messages / seconds:,.1f}" if seconds > 0 else "-", f"{st.lost:,}") + ((f"{st.malformed:,}", f"{st.suspect:,}") if bad else ()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head_row))]
    extra = ""
    if st.malformed:
        extra += f", dropped {st.malformed:,} malformed"
    if st.suspect:
        extra += f", {st.suspect:,} suspect loss claim(s) not counted"
    if st.path is not None:
        head = f"recorded {st.path}: {st.messages:,} messages in {format_seconds(seconds)}, {st.files} data file(s), lost {st.lost:,}{extra}"
    else:
        head = f"received {st.messages:,} messages in {format_seconds(seconds)} (not recorded), lost {st.lost:,}{extra}"
    print(head, file=out)
    for i, row in enumerate(rows):
        if i == len(rows) - 1:
            print("  " + "  ".join("-" * w for w in widths), file=out)
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        print("  " + "  ".join(cells), file=out)
    if st.dropped:
        print("  dropped: " + ", ".join(f"{reason} {n:,}" for reason, n in sorted(st.dropped.items())), file=out)
    if echo is not None and echo.skipped:
        print_warning(f"echo skipped {echo.skipped:,} messages (the terminal was slower than the bus; all were recorded)", out)
    out.flush()


class _Echo:
    """Prints received messages decoded, in the main thread, without slowing the recorder."""

    def __init__(self, out: IO[str], *, as_json: bool = False) -> None:
        self.out = out
        self.as_json = as_json  # JSON lines (mcl-cat's) instead of text
        self.queue: deque[Any] = deque()
        self.skipped = 0
        self.queued_bytes = 0  # payload bytes waiting in the queue
        self.origin_ns = 0  # times are printed in seconds since the recording started

    def push(self, received: Any) -> None:
        """Called in the recording thread: queue, or skip if the printer is behind (by count or bytes)."""
        if len(self.queue) < _ECHO_QUEUE and self.queued_bytes < _ECHO_BYTES:
            self.queue.append(received)
            self.queued_bytes += len(received.payload)
        else:
            self.skipped += 1

    def drain(self) -> None:
        """Print what is queued."""
        queue = self.queue
        out = self.out
        if self.as_json:
            from mcl.cli.cat import json_line

            while queue:
                r = queue.popleft()
                self.queued_bytes -= len(r.payload)
                print(json_line(r.received_ns - self.origin_ns, r.topic, r.payload), file=out)
        while queue:
            r = queue.popleft()
            self.queued_bytes -= len(r.payload)
            try:
                text = repr(r.message)
            except Exception:  # noqa: BLE001 - not msgpack (or too deep): show the bytes
                text = f"<{len(r.payload)} bytes> {r.payload[:64].hex()}"
            if len(text) > _ECHO_CHARS:
                text = text[:_ECHO_CHARS] + f"... ({len(text)} chars)"
            print(f"{(r.received_ns - self.origin_ns) / NS_PER_S:12.6f}  {_show_topic(r.topic)}  {text}", file=out)
        out.flush()


if __name__ == "__main__":
    run()
