"""Run a bus forwarder (the hub that publishers and subscribers connect to) until stopped.

The bus address names the publisher port; subscribers use port + 1. Without
--bind it serves the default local bus ($MCL_BUS or tcp://127.0.0.1:26000),
which mcl programs otherwise serve among themselves (see docs/architecture.md).
To serve other machines, bind every interface and point each program at
tcp://THIS_HOST:PORT:

    mcl-bus --bind tcp://0.0.0.0:26000

CURVE security (optional): make keys once with --make-keys, give the
forwarder its secret certificate and a directory of accepted client public
keys; clients set MCL_CURVE_SECRET (their .key_secret) and MCL_CURVE_SERVER
(the forwarder's .key). Unknown clients are refused and logged on stderr.
SIGINT / SIGTERM / SIGHUP stop the forwarder (exit 0).

Examples:
  mcl-bus                                   serve the default local bus
  mcl-bus --bind tcp://0.0.0.0:26000 -q     serve every interface, errors only
  mcl-bus --make-keys keys/server           a CURVE key pair for the forwarder
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from mcl.cli.common import LineFormatter, StopSignals, make_parser, queue_length, run_main
from mcl.exceptions import BusError

if TYPE_CHECKING:
    from mcl.network.security import CurveServer

__all__ = ["add_arguments", "main", "run"]

PROG = "mcl-bus"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bind",
        metavar="ADDR",
        help="bus address to serve: tcp://HOST:PORT (PORT and PORT+1 are bound; default: the default bus)",
    )
    parser.add_argument(
        "--hwm",
        type=queue_length,
        default=None,
        metavar="N",
        help="messages queued per peer before ZeroMQ drops (default: 1000)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if the ports are taken (e.g. by an mcl program hosting the default bus), wait for them",
    )
    parser.add_argument("--curve-secret", metavar="FILE", type=Path, help="the forwarder's CURVE secret certificate")
    parser.add_argument(
        "--curve-clients", metavar="DIR", type=Path, help="directory of the public keys (*.key) of accepted clients"
    )
    parser.add_argument(
        "--make-keys",
        metavar="DIR/NAME",
        type=Path,
        help="write a new CURVE key pair DIR/NAME.key and DIR/NAME.key_secret, then exit",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _bus(parser, parser.parse_args(argv)), parser.prog)


def _bus(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from mcl.network.security import CurveServer, make_keys

    if args.make_keys is not None:
        base = args.make_keys
        public, secret = make_keys(base.parent, base.name)  # never replaces a pair; secret file 0600
        if not args.quiet:
            print(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it)")
        return 0
    if (args.curve_secret is None) != (args.curve_clients is None):
        parser.error("--curve-secret and --curve-clients go together")
    curve = None
    if args.curve_secret is not None:
        if not args.curve_secret.is_file():
            raise BusError(f"{args.curve_secret}: no such certificate file")
        curve = CurveServer(args.curve_secret, args.curve_clients)
        _check_certificate(curve)

    # The forwarder's INFO lines (serving, hosting); its warnings reach run_main's handler.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(PROG))
    handler.addFilter(lambda record: record.levelno < logging.WARNING)
    net_log = logging.getLogger("mcl.network")
    net_log.addHandler(handler)
    net_log.setLevel(logging.INFO)

    try:
        with StopSignals() as signals:
            _serve(args, curve, signals.event)
    finally:
        net_log.removeHandler(handler)
    return 0


def _serve(args: argparse.Namespace, curve: CurveServer | None, stop: threading.Event) -> None:
    """Serve the bus until `stop` is set (a signal)."""
    from mcl.network.forwarder import DEFAULT_HWM, HOST_RETRY_S, Forwarder

    forwarder = Forwarder(
        args.bind,
        hwm=args.hwm or DEFAULT_HWM,
        curve=curve,
        retry_s=HOST_RETRY_S if args.wait else None,
    )
    try:
        if args.wait and not forwarder.serving:
            if not args.quiet:
                print(f"{PROG}: waiting for {forwarder.bind_address} to be free", flush=True)
            while not stop.is_set() and not forwarder.wait_serving(0.2):
                pass
        if forwarder.serving and not args.quiet:
            bound = forwarder.bind_address
            port = int(bound.rsplit(":", 1)[1])
            secure = " (CURVE)" if curve is not None else ""
            print(
                f"{PROG}: serving bus {forwarder.address}{secure}: publishers connect to port {port}, "
                f"subscribers to port {port + 1}",
                flush=True,
            )
        while not stop.wait(0.5):
            pass
    finally:
        forwarder.close()


def _check_certificate(curve: CurveServer) -> None:
    """Raise BusError now if the forwarder's certificate cannot be used (before any thread starts)."""
    import zmq

    context = zmq.Context()
    try:
        sock = context.socket(zmq.XSUB)
        try:
            curve.apply(sock)
        finally:
            sock.close(0)
    finally:
        context.term()


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
