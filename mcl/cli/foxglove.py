"""Show the bus live in Foxglove: serve every topic over the Foxglove WebSocket protocol.

Subscribes to the bus (--bus, default $MCL_BUS or the local default bus)
and serves ws://HOST:PORT; in Foxglove choose "Open connection", "Foxglove
WebSocket", and give that URL. Each topic appears when its first message
arrives (JSON, with a schema from its message type). While mcl-replay plays
on the bus, Foxglove's timeline shows the replay's log time, pausing and
seeking with it. A status line (every second on a terminal, every 10 s
otherwise) shows clients, messages received / sent, messages dropped
because a client or the bridge could not keep up (per topic), and the time.

The server listens on loopback (127.0.0.1) unless --host says otherwise;
there is no authentication, so any other address is warned about.

Examples:
  mcl-foxglove                                   # ws://127.0.0.1:8765, every topic
  mcl-foxglove --topics imu,gps --port 9000
  mcl-foxglove --topic-prefix camera --exclude rear  # camera/* but not camera/rear
  mcl-foxglove --quiet        # and in another shell: mcl-replay sample_logs/vehicle --loop
  mcl-foxglove --bus tcp://robot:26000 --host 0.0.0.0
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING

from mcl.cli.args import add_bus_argument, add_quiet_argument, add_topic_arguments, describe_topics
from mcl.cli.common import LineFormatter, StopSignals, make_parser, print_warning, queue_length, run_main, whole_number

if TYPE_CHECKING:  # the bridge (and foxglove-sdk) is imported when serving: --help starts without it
    from mcl.foxglove import BridgeOptions

__all__ = ["add_arguments", "bridge_options", "main", "run"]

PROG = "mcl-foxglove"


def _port(text: str) -> int:
    value = whole_number(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0..65535)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mcl-foxglove."""
    add_bus_argument(parser)
    add_topic_arguments(parser, verb="serve", prefixes=True)
    parser.add_argument("--host", default="127.0.0.1", help="address the WebSocket server listens on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8765, help="WebSocket port (default: 8765; 0 picks a free one)")
    parser.add_argument(
        "--queue", type=queue_length, default=1000, metavar="N",
        help="messages held per topic for the clients; beyond, the oldest are dropped and counted (default: 1000)",
    )
    parser.add_argument(
        "--backlog", type=queue_length, default=1024, metavar="N",
        help="messages queued per client by the server; a slower client loses its oldest (default: 1024)",
    )
    add_quiet_argument(parser, "no status line")


def main(argv: list[str] | None = None) -> int:
    """Run mcl-foxglove with `argv` (default: sys.argv[1:]); return the exit status."""
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _serve(parser.parse_args(argv)), parser.prog)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def bridge_options(args: argparse.Namespace) -> BridgeOptions:
    """The bridge options of parsed mcl-foxglove arguments."""
    from mcl.foxglove import BridgeOptions

    return BridgeOptions(
        bus=args.bus,
        topics=None if args.topics is None else tuple(args.topics),
        topic_prefixes=None if args.topic_prefix is None else tuple(args.topic_prefix),
        exclude=None if args.exclude is None else tuple(args.exclude),
        host=args.host,
        port=args.port,
        queue=args.queue,
        backlog=args.backlog,
    )


def _serve(args: argparse.Namespace) -> int:
    from mcl.foxglove import FoxgloveBridge, is_loopback

    options = bridge_options(args)
    if not is_loopback(args.host):
        print_warning(
            f"serving on {args.host}: every machine that reaches port {args.port} sees the bus, without authentication"
        )
    # The SDK logs through Python logging (e.g. a client's bad request): one prefixed line each.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(PROG))
    sdk_log = logging.getLogger("foxglove")
    sdk_log.addHandler(handler)
    sdk_log.setLevel(logging.WARNING)
    try:
        with StopSignals() as signals, FoxgloveBridge(options) as bridge:
            stop = signals.event
            host = f"[{args.host}]" if ":" in args.host else args.host
            print(f"{PROG}: serving ws://{host}:{bridge.port} (bus {args.bus or 'default'}; {describe_topics(args)})",
                  flush=True)
            tty = sys.stderr.isatty()
            every = 1.0 if tty else 10.0
            next_line = time.monotonic() + every
            while not stop.wait(0.2):
                status = bridge.status()  # raises what stopped the bridge
                if not args.quiet and time.monotonic() >= next_line:
                    next_line += every
                    line = status.line()
                    print(f"\r\x1b[2K{line}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
            status = bridge.status()
        if not args.quiet:
            print(("\n" if sys.stderr.isatty() else "") + f"{PROG}: stopped; {status.line()}", file=sys.stderr, flush=True)
    finally:
        sdk_log.removeHandler(handler)
    return 0


if __name__ == "__main__":
    run()
