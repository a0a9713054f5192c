"""Replay logs onto the bus at their recorded timing, with live progress and controls.

Keys (in a terminal): space pause/resume, s step one message, left/right seek
-5/+5 s, up/down speed, q quit. Without a terminal, plain progress lines are
printed once a second. Times are seconds of log time from the log's time
origin (the elapsed times of mcl-cat). --control ADDR serves JSON requests
(status, pause, resume, stop, step, seek, speed, quit) on a ZeroMQ REP socket:
see docs/architecture.md, "Replay".

Examples:
  mcl-replay sample_logs/vehicle                       play at the recorded timing
  mcl-replay sample_logs/vehicle --start 2 --end 5 --speed 4 --topics imu,gps
  mcl-replay run/ --loop --exclude '^camera/' --bus tcp://10.0.0.2:26000
  mcl-replay run/ --max-speed --dry-run                check timing without publishing
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections import deque
from contextlib import ExitStack
from typing import Any, TextIO

from mcl.cli.args import add_bus_argument, add_quiet_argument, add_time_arguments, add_topic_arguments, replay_selection, topic_filter
from mcl.cli.common import (
    StopSignals,
    check_topics,
    make_parser,
    non_negative_seconds,
    positive_number,
    print_warning,
    run_main,
    whole_numbers,
)
from mcl.checks import MAX_C_INT
from mcl.exceptions import ReplayError
from mcl.timeutil import NS_PER_S
from mcl.replay.options import MAX_READ_AHEAD, ReplayStatus, parse_remap

__all__ = ["add_arguments", "main", "run"]

PROG = "mcl-replay"
SEEK_STEP_S = 5.0
SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


def _speed(text: str) -> float:
    """argparse type: a replay speed within the clock's documented range."""
    from mcl.replay.clock import check_speed

    value = positive_number(text, sys.float_info.max)
    try:
        check_speed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace(" (or math.inf: as fast as possible)", " (or --max-speed)")) from None
    return value


def _remap(text: str) -> str:
    try:
        parse_remap(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", nargs="+", metavar="LOG", help="log directories or files (several are merged by time)")
    timing = parser.add_argument_group("timing")
    timing.add_argument("--speed", type=_speed, default=1.0, metavar="X", help="replay rate, 0.001 to 1000000 (default 1.0)")
    timing.add_argument("--max-speed", action="store_true", help="as fast as possible (in order, nothing dropped)")
    timing.add_argument("--loop", action="store_true", help="start again at the end, until quit")
    end = timing.add_mutually_exclusive_group()
    add_time_arguments(
        timing, verb="play", end_parser=end, start_aliases=("--start-offset",), end_aliases=("--until",),
        start_dest="start_offset", end_dest="until",
    )
    end.add_argument("--duration", type=non_negative_seconds, metavar="S", help="play S seconds of log time")
    timing.add_argument("--start-paused", action="store_true", help="start paused (space or a control request plays)")
    timing.add_argument("--delay", type=non_negative_seconds, default=0.0, metavar="S", help="wait S seconds before each pass")
    selection = parser.add_argument_group("selection")
    add_topic_arguments(selection, verb="play", prefixes=True)
    selection.add_argument("--remap", type=_remap, action="append", default=[], metavar="OLD:=NEW", help="rename a topic (repeatable)")
    output = parser.add_argument_group("output")
    add_bus_argument(output)
    add_quiet_argument(output, "no progress display and no final line")
    output.add_argument("--wait-for-subscribers", type=whole_numbers(0, MAX_C_INT), default=0, metavar="N", help="hold the first message until N subscribers (mcl-dump, Subscriber) are attached to the bus")
    output.add_argument("--hwm", type=whole_numbers(0, MAX_C_INT), default=None, metavar="N", help="messages queued towards the bus before a publish waits (0: unlimited; default: the bus default, 10000)")
    output.add_argument("--dry-run", action="store_true", help="publish nothing: timing and progress only")
    output.add_argument("--read-ahead", type=whole_numbers(1, MAX_READ_AHEAD), default=5000, metavar="N", help="messages buffered ahead (default 5000)")
    output.add_argument("--control", metavar="ADDR", help="serve remote control requests on ADDR (PORT, HOST:PORT, tcp://...; port 0: any)")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _replay(parser.parse_args(argv)), parser.prog)


def run() -> None:
    sys.exit(main())


def _replay(args: argparse.Namespace) -> int:
    import mcl
    from mcl.replay import Replay

    if args.bus is not None:
        from mcl.network import parse_bus

        parse_bus(args.bus)  # a bad address is bad input (also with --dry-run): say so before starting anything
    if args.control is not None:
        from mcl.replay.control import parse_control_address

        parse_control_address(args.control)  # before any worker starts (a bad one left their semaphores behind)
    with mcl.open_log(*args.logs) as log:
        # Bad selections are bad input: say so rather than replay nothing.
        check_topics(log, args.topics)
        # Only when asked: the duration of an MCL_LOG 1.0 log takes a full scan.
        if args.start_offset is not None and args.start_offset > (duration_s := log.duration_ns / NS_PER_S):
            raise ReplayError(f"--start {args.start_offset:g} s is past the end of the log ({duration_s:.3f} s)")
    end = args.until
    if args.duration is not None:
        start = args.start_offset
        if start is None:
            with mcl.open_log(*args.logs, topics=topic_filter(args)) as reader:
                first = next(iter(reader.iter_records()), None)
            start = 0.0 if first is None else first.elapsed_ns / NS_PER_S
        end = start + args.duration
    topics, exclude = replay_selection(args)
    try:
        replay = Replay(
            args.logs,
            math.inf if args.max_speed else args.speed,
            bus=args.bus,
            publish=not args.dry_run,
            loop=args.loop,
            start=args.start_offset,
            end=end,
            topics=topics,
            exclude=exclude,
            remap=args.remap,
            delay=args.delay,
            read_ahead=args.read_ahead,
            wait_for_subscribers=args.wait_for_subscribers,
            hwm=args.hwm,
        )
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    quit_requested = threading.Event()
    with ExitStack() as stack:
        stack.enter_context(replay)
        stack.enter_context(StopSignals(raise_exit=True))
        keys = stack.enter_context(KeyReader(sys.stdin)) if _is_tty(sys.stdin) else None
        display: Display = RichDisplay(keys is not None) if _is_tty(sys.stdout) else PlainDisplay(sys.stdout)
        if args.quiet:
            display = QuietDisplay()
        stack.enter_context(display)
        if not args.dry_run and not args.quiet:
            from mcl.network import default_bus

            bus = str(parse_bus_address(args.bus if args.bus is not None else default_bus()))
            print(f"bus: publishing on {bus}", flush=True)
            if args.wait_for_subscribers:
                print(
                    f"waiting for {args.wait_for_subscribers} subscriber(s) (mcl-dump, Subscriber) "
                    f"to attach to {bus} before the first message",
                    flush=True,
                )
        if args.control is not None:  # bound before the workers start: a bind that fails leaves nothing running
            from mcl.replay.control import ControlServer, is_loopback

            server = stack.enter_context(ControlServer(replay, args.control, on_quit=quit_requested.set))
            if not is_loopback(server.address):
                print_warning(
                    f"the control endpoint {server.address} is not on loopback: anyone who can connect to it "
                    "can pause, seek, stop and quit this replay (no authentication); bind 127.0.0.1 unless "
                    "a firewall keeps others out"
                )
        if args.start_paused:
            replay.pause()
        else:
            replay.start()
        if args.control is not None:  # announced once the workers run: a client then sees them playing or paused
            print(f"control: {server.address}", flush=True)
        try:
            status = _run(replay, keys, display, quit_requested)
        except OSError as exc:
            if exc.errno == errno.EIO and (keys is not None or isinstance(display, RichDisplay)):
                # The terminal hung up; the SIGHUP that comes with it may not be here yet.
                raise SystemExit(128 + signal.SIGHUP) from None
            raise
        if status.finished and status.total == 0 and status.sent == 0:
            # An empty selection (a --loop over it would spin): bad input, say so.
            raise ReplayError("nothing to replay: no record of the log is in the selection (--topics, --exclude, --start-offset, --until)")
        display.final(status)
    return 0


def parse_bus_address(text: str) -> str:
    from mcl.network import parse_bus

    return str(parse_bus(text))


def final_line(status: ReplayStatus) -> str:
    """The last line: what was sent, and to how many subscribers (none said plainly)."""
    text = f"{status.state}: {status.sent} messages sent, {status.passes} loops"
    if status.bus is None:
        return text  # --dry-run: nothing was published, nothing to say about the bus
    if status.peak_subscribers == 0:
        text += f"; no subscriber was attached to {status.bus}: nobody received them"
    else:
        text += f" to {status.peak_subscribers} subscriber(s) on {status.bus}"
    if status.dropped:
        text += f"; {status.dropped} not sent (the bus stayed full; the subscribers count them as lost)"
    return text


def _run(replay: Any, keys: KeyReader | None, display: Display, quit_requested: threading.Event) -> ReplayStatus:
    while True:
        status = replay.status()
        if status.state == "failed":
            raise ReplayError(status.error or "the replay failed")
        display.update(status)
        if status.finished or quit_requested.is_set():
            return status
        if keys is None:
            quit_requested.wait(0.1)
            continue
        for key in keys.read(0.1):
            if key == "q":
                return replay.status()
            status = _on_key(replay, key, status)


def _on_key(replay: Any, key: str, status: ReplayStatus) -> ReplayStatus:
    """Act on one key; return `status` as the key left it, so that the next key of the
    same read starts from there (two right arrows seek twice, two spaces pause and resume)."""
    if key == " ":
        if status.state in ("playing", "waiting"):
            replay.pause()
            return dataclasses.replace(status, state="paused")
        replay.start()
        return dataclasses.replace(status, state="playing")
    elif key == "s":
        replay.step()
    elif key in ("left", "right"):
        position = (status.position_ns or 0) / NS_PER_S + (SEEK_STEP_S if key == "right" else -SEEK_STEP_S)
        low = (status.start_ns or 0) / NS_PER_S
        high = (status.end_ns or 0) / NS_PER_S if status.end_ns is not None else position
        target = max(low, min(position, high))
        replay.seek(target)
        return dataclasses.replace(status, position_ns=round(target * NS_PER_S))
    elif key in ("up", "down"):
        replay.speed = _next_speed(replay.speed, up=key == "up")
    return status


def _next_speed(speed: float, *, up: bool) -> float:
    """The next rung of the speed ladder (up from infinity stays; down from it goes to the top)."""
    if math.isinf(speed):
        return speed if up else SPEEDS[-1]
    if up:
        return next((s for s in SPEEDS if s > speed * 1.001), SPEEDS[-1])
    return next((s for s in reversed(SPEEDS) if s < speed * 0.999), SPEEDS[0])


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class KeyReader:
    """Single key presses from a terminal (cbreak mode: no echo, no line buffering, Ctrl-C kept).

    The terminal settings are restored on exit, whatever ends the program
    (Ctrl-C, SIGTERM, an error).
    """

    _SEQUENCES = {"\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left"}

    def __init__(self, stream: TextIO) -> None:
        self.fd = stream.fileno()
        self._saved: list[Any] | None = None

    def __enter__(self) -> KeyReader:
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            saved, self._saved = self._saved, None
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
            except (termios.error, OSError):  # the terminal is gone (SIGHUP): nothing to restore
                pass

    def read(self, timeout: float) -> list[str]:
        """Keys pressed within `timeout` seconds: characters, or up/down/left/right."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        text = os.read(self.fd, 64).decode("utf-8", errors="ignore")
        keys = []
        i = 0
        while i < len(text):
            for sequence, name in self._SEQUENCES.items():
                if text.startswith(sequence, i):
                    keys.append(name)
                    i += len(sequence)
                    break
            else:
                keys.append(text[i].lower())
                i += 1
        return keys


class Display:
    """Shows the progress of a replay."""

    def __init__(self) -> None:
        self._rates: deque[tuple[float, int]] = deque()

    def rate(self, status: ReplayStatus) -> float:
        """Messages per second over the last two seconds."""
        now = time.monotonic()
        rates = self._rates
        rates.append((now, status.total))
        while len(rates) > 2 and now - rates[0][0] > 2.0:
            rates.popleft()
        span = now - rates[0][0]
        return (status.total - rates[0][1]) / span if span > 0 else 0.0

    def update(self, status: ReplayStatus) -> None:
        raise NotImplementedError

    def final(self, status: ReplayStatus) -> None:
        raise NotImplementedError

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _times(status: ReplayStatus) -> tuple[float, float, float]:
    """Position and end in seconds of log time from the log's time origin (the origin of
    --start/--end, seek, --control replies and mcl-cat), and the percent played."""
    position = (status.position_ns or 0) / NS_PER_S
    end = (status.end_ns or 0) / NS_PER_S
    return max(0.0, position), end, 100.0 * (status.progress or 0.0)


def _speed_text(speed: float) -> str:
    return "max" if math.isinf(speed) else f"{speed:g}x"


class QuietDisplay(Display):
    """Shows nothing (-q): errors and warnings only."""

    def update(self, status: ReplayStatus) -> None:
        pass

    def final(self, status: ReplayStatus) -> None:
        pass


class PlainDisplay(Display):
    """One progress line a second (and on a change of state), for pipes and CI logs."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._last = 0.0
        self._state = ""

    def update(self, status: ReplayStatus) -> None:
        rate = self.rate(status)
        now = time.monotonic()
        if now - self._last < 1.0 and status.state == self._state:
            return
        self._last, self._state = now, status.state
        position, end, percent = _times(status)
        print(
            f"{status.state:<8} {position:9.3f} / {end:.3f} s {percent:5.1f} % "
            f"{rate:8.0f} msg/s  sent {status.sent}  speed {_speed_text(status.speed)}",
            file=self.stream,
            flush=True,
        )

    def final(self, status: ReplayStatus) -> None:
        print(final_line(status), file=self.stream, flush=True)


class RichDisplay(Display):
    """A live line with a progress bar, redrawn in place (rich)."""

    def __init__(self, with_keys: bool) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.with_keys = with_keys
        self.live = Live(console=self.console, refresh_per_second=10, transient=False, auto_refresh=False)

    def __enter__(self) -> RichDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.live.__exit__(None, None, None)
        except OSError:  # the terminal is gone (SIGHUP): nothing to redraw
            pass

    def update(self, status: ReplayStatus) -> None:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        rate = self.rate(status)
        position, end, percent = _times(status)
        grid = Table.grid(padding=(0, 1))
        styles = {"playing": "green", "paused": "yellow", "waiting": "cyan", "finished": "blue"}
        grid.add_row(
            Text(f"{status.state:<8}", style=f"bold {styles.get(status.state, 'red')}"),
            Text(f"{position:.3f}/{end:.3f} s", no_wrap=True),
            ProgressBar(total=100.0, completed=percent, width=20),
            Text(f"{percent:5.1f} %"),
            Text(f"{rate:7.0f} msg/s"),
            Text(f"sent {status.sent}"),
            Text(f"speed {_speed_text(status.speed)}"),
        )
        if self.with_keys:
            help_line = Text("space pause/resume  s step  \u2190/\u2192 seek 5 s  \u2191/\u2193 speed  q quit", style="dim")
            outer = Table.grid()
            outer.add_row(grid)
            outer.add_row(help_line)
            self.live.update(outer, refresh=True)
        else:
            self.live.update(grid, refresh=True)

    def final(self, status: ReplayStatus) -> None:
        self.update(status)
        self.console.print(final_line(status), markup=False, highlight=False)


if __name__ == "__main__":
    run()
