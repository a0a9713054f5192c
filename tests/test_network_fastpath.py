"""Tests of the bus's fast paths: in-process clients, the subscriber's frame handling, publish_many."""

from __future__ import annotations

import threading
import time

import zmq
from conftest import reach, receive, wait_until

from mcl.network import Forwarder, Publisher, Subscriber, parse_bus
from mcl.network import wire


def test_clients_of_an_in_process_forwarder_use_inproc_and_lose_nothing() -> None:
    """Clients in the forwarder's process connect over inproc (also from another thread) and count no loss."""
    with Forwarder("tcp://127.0.0.1:0") as forwarder, Subscriber("t", bus=forwarder.address) as sub:
        assert sub.socket.getsockopt(zmq.LAST_ENDPOINT).startswith(b"inproc://")
        endpoints: list[bytes] = []
        errors: list[BaseException] = []

        def publish() -> None:
            try:
                with Publisher(forwarder.address, close_timeout=10) as pub:
                    endpoints.append(pub._sock.getsockopt(zmq.LAST_ENDPOINT))  # type: ignore[union-attr]
                    assert pub.wait_for_subscribers(1, timeout=10)
                    for i in range(2000):
                        pub.publish("t", b"%d" % i)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        got = receive(sub, 2000)
        def published() -> bool:
            sub.recv(timeout=0.05)  # receive (and acknowledge) the end of stream
            return not thread.is_alive()

        wait_until(published, 15, 0, "the publisher thread did not finish")
        assert not errors
        assert endpoints and endpoints[0].startswith(b"inproc://")
        assert [r.payload for r in got] == [b"%d" % i for i in range(2000)]
        assert sub.lost == 0 and sub.malformed == 0


def test_a_closed_forwarder_frees_its_ports_for_a_new_one_every_time() -> None:
    """close() returns only once both ports are free: rebinding at once never fails (50 cycles)."""
    for _ in range(50):
        first = Forwarder("tcp://127.0.0.1:0")
        address = first.address
        first.close()
        with Forwarder(address) as second:
            assert second.serving


def test_malformed_frames_are_skipped_and_reading_resynchronises() -> None:
    """One-frame and four-frame messages are dropped and counted by reason; no other message is lost."""
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.linger = 0
    pid = b"raw:1:00000000"

    def mcl_message(seq: int, payload: bytes) -> list[bytes]:
        return [b"t", wire.META.pack(wire.VERSION, wire.KIND_DATA, seq, time.time_ns()) + pid, payload]

    try:
        with Forwarder("tcp://127.0.0.1:0") as forwarder, Subscriber(bus=forwarder.address) as sub:
            raw.connect(parse_bus(forwarder.address).publish_endpoint)
            reach(lambda: raw.send_multipart([b"warm", b""]), sub)  # until the subscription reaches the PUB
            receive(sub, 1000, timeout=0.3)  # the other warm-up messages
            for frames in (
                mcl_message(0, b"p0"),
                [b"junk"],  # one frame: dropped alone, never joined to the message after it
                mcl_message(1, b"p1"),
                [b"a", b"b", b"c", b"d"],  # four frames, no metadata
                mcl_message(2, b"p2"),
                [b"plain", b"data"],  # a foreign two-frame message is accepted
                mcl_message(3, b"p3"),
            ):
                raw.send_multipart(frames)
            got = receive(sub, until=lambda got: any(r.payload == b"p3" for r in got))  # p3 comes last
            seqs = [r.sequence for r in got if r.topic == "t"]
            assert seqs == [0, 1, 2, 3]
            assert all(r.payload == b"p%d" % r.sequence for r in got if r.topic == "t")
            assert [(r.payload, r.publisher) for r in got if r.topic == "plain"] == [(b"data", "")]
            assert sub.malformed == 2
            assert sub.stats().malformed_by_reason == {"one frame": 1, "bad metadata": 1}
            assert sub.lost == 0
    finally:
        raw.close(0)


def test_publish_many_is_publish_in_a_loop() -> None:
    """publish_many sends the same messages, numbered per topic, encoding non-bytes payloads."""
    with Forwarder("tcp://127.0.0.1:0") as forwarder, Subscriber(bus=forwarder.address) as sub:
        with Publisher(forwarder.address, close_timeout=0) as pub:  # end of stream sent once: read below
            assert pub.wait_for_subscribers(1, timeout=10)
            pub.publish("a", b"0")
            assert pub.publish_many([("a", b"1"), ("b", {"x": 1}), ("a", bytearray(b"2"))]) == 3
            assert pub.publish_many([]) == 0
            assert pub.sent == {"a": 3, "b": 1}
            got = receive(sub, 4)
        assert [(r.topic, r.sequence) for r in got] == [("a", 0), ("a", 1), ("b", 0), ("a", 2)]
        assert got[2].message == {"x": 1} and got[3].payload == b"2"
        sub.recv(timeout=0.5)
        assert sub.lost == 0
