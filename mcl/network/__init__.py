"""The network bus: publishers and subscribers through a ZeroMQ forwarder.

See docs/architecture.md ("Network bus") for the model, the wire format and
zero-configuration hosting of the default bus.
"""

from __future__ import annotations

from mcl.network.address import DEFAULT_BUS, ENV_BUS, BusAddress, default_bus, parse_bus
from mcl.network.forwarder import DEFAULT_HWM, DEFAULT_MAX_MESSAGE_BYTES, Forwarder
from mcl.network.publisher import Publisher
from mcl.network.security import CurveClient, CurveServer, make_keys
from mcl.network.subscriber import LossSpan, Received, StreamStats, Subscriber, SubscriberStats

__all__ = [
    "DEFAULT_BUS",
    "DEFAULT_HWM",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ENV_BUS",
    "BusAddress",
    "CurveClient",
    "CurveServer",
    "Forwarder",
    "LossSpan",
    "Publisher",
    "Received",
    "StreamStats",
    "Subscriber",
    "SubscriberStats",
    "default_bus",
    "make_keys",
    "parse_bus",
]
