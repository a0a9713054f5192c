"""The bus wire format: frames, metadata struct and the reserved control topics.

Every message is three ZeroMQ frames::

    [topic (UTF-8), metadata (18 + n bytes), payload (bytes, verbatim)]

metadata, little endian::

    offset size  field
    0      1     format version (1)
    1      1     kind: 0 data, 1 end-of-stream, 2 replay time (see below)
    2      8     sequence: u64, per publisher and topic, from 0
    10     8     sent_ns: u64, the sender's time.time_ns() at publish
    18     n     publisher id (UTF-8, the rest of the frame)

Control topics start with byte 0xFF, which never occurs in UTF-8, so they can
never collide with (nor sort before) a user topic:

* ``\\xffmcl.end`` (kind 1): sent by a closing publisher; the payload is msgpack
  ``{"counts": {topic: messages sent}, "joined": {subscriber id: {topic:
  first sequence sent after that subscriber was seen}}}``. It lets each
  subscriber count the messages it missed at the tail (and the head).
* ``\\xffmcl.time`` (kind 2): a replay's clock, sent by its broadcast worker
  when the clock changes (start, pause, seek, speed) and every 0.2 s while
  it plays. The payload is :data:`TIME` (``log_ns`` i64: the log time being
  played, UTC ns; ``wall_ns`` i64: the sender's ``time.time_ns()`` at which
  it held; ``speed`` f64: log seconds per wall second, 0 when paused, inf as
  fast as possible), so a data message of the same publisher sent at
  ``sent_ns`` is at log time ``log_ns + (sent_ns - wall_ns) * speed``.
  Subscribers skip it unless made with ``clock=True`` (``mcl-foxglove``).
* subscriptions ``\\xffmcl.sub.<subscriber id>`` announce a subscriber (a
  publisher sees it through the forwarder: this is how
  ``wait_for_subscribers`` counts); it sorts after every user topic, so when a
  publisher sees it the subscriber's topic subscriptions are already in place.
* the subscription ``\\xff\\xffmcl.ready`` is made by the forwarder itself: it
  sorts after every other subscription, and ZeroMQ sends a newly connected
  publisher the subscriptions present in byte order, so a publisher that has
  seen it has seen every subscription already on the bus.
* subscriptions ``\\xffmcl.ack.<publisher id>.<subscriber id>`` acknowledge an
  end-of-stream message to the closing publisher.
"""

from __future__ import annotations

import struct

__all__ = [
    "ACK_PREFIX",
    "END_TOPIC",
    "KIND_DATA",
    "KIND_END",
    "KIND_TIME",
    "TIME",
    "TIME_TOPIC",
    "META",
    "READY_TOPIC",
    "SUB_PREFIX",
    "VERSION",
]

VERSION = 1
KIND_DATA = 0
KIND_END = 1
KIND_TIME = 2
META = struct.Struct("<BBQQ")  # version, kind, sequence, sent_ns; publisher id follows

CONTROL = b"\xffmcl."
END_TOPIC = CONTROL + b"end"
TIME_TOPIC = CONTROL + b"time"
TIME = struct.Struct("<qqd")  # log_ns, wall_ns, speed: the payload of a replay time message
SUB_PREFIX = CONTROL + b"sub."
ACK_PREFIX = CONTROL + b"ack."
READY_TOPIC = b"\xff\xffmcl.ready"  # subscribed by the forwarder: sorts after every other subscription


def ack_topic(publisher: bytes, subscriber: bytes) -> bytes:
    """The subscription by which `subscriber` acknowledges the end of `publisher`."""
    return ACK_PREFIX + publisher + b"." + subscriber
