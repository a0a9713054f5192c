"""Bus addresses: what a bus address names, parsing, the default local bus.

A bus address names a forwarder by its *publisher* endpoint,
``tcp://HOST:PORT``: the forwarder's XSUB socket listens on PORT (publishers
connect there) and its XPUB socket on PORT + 1 (subscribers connect there).
So one string is enough for every program on the bus, and ``mcl-bus --bind
tcp://0.0.0.0:26000`` serves ``tcp://HOST:26000`` to the other machines.

Accepted spellings: ``tcp://HOST:PORT``, ``HOST:PORT`` and ``PORT`` (on
loopback). HOST is an IPv4 address, a host name, ``*`` (bind only) or an IPv6
address in brackets (``tcp://[::1]:26000``). Port 0 (forwarder only) means
"two free adjacent ports".

The default bus is ``$MCL_BUS`` when set, else :data:`DEFAULT_BUS`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from mcl.exceptions import BusError

__all__ = ["DEFAULT_BUS", "ENV_BUS", "BusAddress", "default_bus", "parse_bus"]

DEFAULT_BUS = "tcp://127.0.0.1:26000"
ENV_BUS = "MCL_BUS"  # environment variable that replaces DEFAULT_BUS

_PATTERN = re.compile(r"^(?:tcp://)?(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):)?(?P<port>\d{1,5})$")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class BusAddress:
    """A parsed bus address: the forwarder's XSUB on `port`, its XPUB on `port` + 1."""

    host: str = "127.0.0.1"  # IPv6 addresses keep their brackets; "*" only for binding
    port: int = 26000  # publisher port; the subscriber port is port + 1; 0 = pick free ports

    @property
    def publish_endpoint(self) -> str:
        """Where publishers connect (the forwarder's XSUB)."""
        return f"tcp://{self.host}:{self.port}"

    @property
    def subscribe_endpoint(self) -> str:
        """Where subscribers connect (the forwarder's XPUB)."""
        return f"tcp://{self.host}:{self.port + 1}"

    @property
    def ipv6(self) -> bool:
        """True when the host is an IPv6 address (sockets need the IPV6 option)."""
        return self.host.startswith("[")

    @property
    def is_loopback(self) -> bool:
        """True when the bus is on this machine's loopback interface."""
        if self.host.lower() in _LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return self.publish_endpoint


def default_bus() -> str:
    """The default bus: ``$MCL_BUS`` when set, else :data:`DEFAULT_BUS`."""
    return os.environ.get(ENV_BUS) or DEFAULT_BUS


def parse_bus(bus: str | BusAddress | None = None, *, allow_any_port: bool = False) -> BusAddress:
    """Parse a bus address (None = the default bus); BusError when it is not one.

    `allow_any_port` accepts port 0 (a forwarder picking free ports) and the
    wildcard host ``*`` (a forwarder listening on every interface).
    """
    if isinstance(bus, BusAddress):
        address = bus
    else:
        text = default_bus() if bus is None else bus
        if not isinstance(text, str):
            raise BusError(f"bus address must be a string, not {type(text).__name__}")
        match = _PATTERN.match(text.strip())
        if match is None:
            raise BusError(
                f"bad bus address {text!r}: expected tcp://HOST:PORT (e.g. {DEFAULT_BUS}), HOST:PORT or PORT"
            )
        host = match.group("host") or "127.0.0.1"
        port = int(match.group("port"))
        if host.startswith("["):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise BusError(f"bad bus address {text!r}: {host} is not an IPv6 address") from None
        address = BusAddress(host, port)
    if not 0 <= address.port <= 65534:
        raise BusError(f"bad bus address {str(address)!r}: port must be 1..65534 (the bus also uses port + 1)")
    if not allow_any_port:
        if address.port == 0:
            raise BusError(f"bad bus address {str(address)!r}: port 0 only makes sense for a forwarder")
        if address.host in ("*", "0.0.0.0", "[::]"):
            raise BusError(
                f"bad bus address {str(address)!r}: {address.host} is for binding a forwarder; "
                "connect to a host name or address"
            )
    return address
