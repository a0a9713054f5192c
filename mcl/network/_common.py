"""What publishers and subscribers share: the context, socket setup, ids, hosting."""

from __future__ import annotations

import os
import secrets
import socket as _socket

import zmq

from mcl.network.address import BusAddress, parse_bus
from mcl.network.forwarder import BusLease, lease_bus, local_endpoints
from mcl.network.security import CurveClient, client_from_env

_HOST = _socket.gethostname()


def make_id() -> str:
    """A new endpoint id: host, pid and a random part (unique on the bus)."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def resolve(bus: str | BusAddress | None, provide: bool | None) -> tuple[BusAddress, BusLease | None]:
    """Parse `bus`; lease the hosting forwarder when this program should help serve it.

    By default (``provide=None``) a program helps serve the default bus when it
    is on loopback; ``provide=True`` does it for any loopback bus.
    """
    address = parse_bus(bus)
    if provide is None:
        provide = address == parse_bus(None) and address.is_loopback
    lease = lease_bus(address) if provide else None
    return address, lease


def endpoints(address: BusAddress, curve: CurveClient | None) -> tuple[zmq.Context | None, str, str]:
    """(context, publish endpoint, subscribe endpoint) for a client of the bus at `address`.

    When a forwarder serving `address` runs in this process and no CURVE keys
    are in use, its ``inproc://`` endpoints and context (one TCP hop less; see
    :func:`mcl.network.forwarder.local_endpoints`); else TCP and None (this
    process's shared context).
    """
    if curve is None and client_from_env() is None:
        local = local_endpoints(address)
        if local is not None:
            return local
    return None, address.publish_endpoint, address.subscribe_endpoint


def make_socket(
    kind: int, address: BusAddress, hwm: int, curve: CurveClient | None, context: zmq.Context | None = None
) -> zmq.Socket:
    """A socket of this process's context with linger 0, the HWM and the keys set."""
    sock: zmq.Socket = (context or zmq.Context.instance()).socket(kind)
    try:
        sock.linger = 0
        if kind in (zmq.PUB, zmq.XPUB):
            sock.sndhwm = hwm
        else:
            sock.rcvhwm = hwm
        if address.ipv6:
            sock.ipv6 = True
        curve = curve if curve is not None else client_from_env()
        if curve is not None:
            curve.apply(sock)
    except BaseException:
        sock.close(0)
        raise
    return sock
