"""Tests of the network bus: addresses, publish/subscribe, loss accounting, hosting, CLI."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from conftest import child_env, free_bus, reach, receive, wait_until

import mcl
from mcl.exceptions import BusError
from mcl.network import DEFAULT_BUS, Forwarder, Publisher, Subscriber, parse_bus
from mcl.network.forwarder import hosting


class Point(mcl.Message):
    fields = ("x", "y")


# -- addresses ------------------------------------------------------------------------------


def test_parse_bus_spellings() -> None:
    """tcp://HOST:PORT, HOST:PORT and PORT parse; the subscriber port is port + 1."""
    assert parse_bus("tcp://10.1.2.3:4000").publish_endpoint == "tcp://10.1.2.3:4000"
    assert parse_bus("tcp://10.1.2.3:4000").subscribe_endpoint == "tcp://10.1.2.3:4001"
    assert str(parse_bus("example.org:5000")) == "tcp://example.org:5000"
    assert str(parse_bus("27000")) == "tcp://127.0.0.1:27000"
    assert parse_bus("tcp://[::1]:26000").ipv6
    assert parse_bus("tcp://localhost:1").is_loopback
    assert not parse_bus("tcp://192.0.2.1:1").is_loopback


def test_parse_bus_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """None is DEFAULT_BUS, or $MCL_BUS when set."""
    monkeypatch.delenv("MCL_BUS", raising=False)
    assert str(parse_bus(None)) == DEFAULT_BUS
    monkeypatch.setenv("MCL_BUS", "tcp://127.0.0.1:29000")
    assert parse_bus(None).port == 29000


@pytest.mark.parametrize(
    "text",
    ["", "udp://127.0.0.1:1", "tcp://127.0.0.1", "tcp://127.0.0.1:70000", "tcp://h:65535", "tcp://[nothex]:1",
     "tcp://127.0.0.1:0", "tcp://*:26000", "ipc:///tmp/x"],
)
def test_parse_bus_rejects_bad_addresses(text: str) -> None:
    """Bad addresses (and bind-only ones, for a client) raise BusError naming the input."""
    with pytest.raises(BusError, match=re.escape(f"bad bus address {text!r}")):
        parse_bus(text)


def test_bad_bus_address_in_publisher_and_subscriber() -> None:
    """Publisher and Subscriber refuse a bad address with BusError."""
    with pytest.raises(BusError):
        Publisher("tcp://nope")
    with pytest.raises(BusError):
        Subscriber(bus="nope:")


# -- publish / subscribe ----------------------------------------------------------------------


def test_round_trip_fields(mcl_bus: str) -> None:
    """Bytes go verbatim, Messages and values are encoded; metadata is filled in."""
    with Subscriber(bus=mcl_bus) as sub, Publisher(mcl_bus, close_timeout=0) as pub:
        assert pub.wait_for_subscribers(1, timeout=10)
        before = time.time_ns()
        pub.publish("raw", b"\x00\xffnot msgpack")
        pub.publish("point", Point(x=1, y=[2, 3]))
        pub.publish("point", {"k": 1.5})
        got = receive(sub, 3)
    assert [r.topic for r in got] == ["raw", "point", "point"]
    assert got[0].payload == b"\x00\xffnot msgpack"
    assert got[1].payload == Point(x=1, y=[2, 3], timestamp=got[1].message.timestamp).encode()
    assert got[1].message == Point(x=1, y=[2, 3], timestamp=got[1].message.timestamp)
    assert got[2].message == {"k": 1.5}
    assert [(r.topic, r.sequence) for r in got] == [("raw", 0), ("point", 0), ("point", 1)]
    for r in got:
        assert r.publisher == pub.id
        assert before <= r.sent_ns <= r.received_ns <= time.time_ns()
    assert sub.lost == 0 and sub.losses() == {}


def test_topic_filters(mcl_bus: str) -> None:
    """Prefix (default), exact and all-topics subscriptions get the right messages."""
    with (
        Subscriber(["cam"], bus=mcl_bus) as prefix,
        Subscriber("cam", bus=mcl_bus, exact=True) as exact,
        Subscriber(bus=mcl_bus) as every,
        Publisher(mcl_bus, close_timeout=0) as pub,
    ):
        assert pub.wait_for_subscribers(3, timeout=10)
        for topic in ("cam", "camera/left", "imu", "cam"):
            pub.publish(topic, topic.encode())
        assert [r.topic for r in receive(prefix, 3)] == ["cam", "camera/left", "cam"]
        assert [r.topic for r in receive(exact, 2)] == ["cam", "cam"]
        assert [r.topic for r in receive(every, 4)] == ["cam", "camera/left", "imu", "cam"]
        assert prefix.recv(timeout=0.1) is None and exact.recv(timeout=0.1) is None


def test_wait_for_subscribers_counts_and_times_out(mcl_bus: str) -> None:
    """wait_for_subscribers is False with too few subscribers and True once they attach."""
    with Publisher(mcl_bus) as pub:
        t0 = time.monotonic()
        assert pub.wait_for_subscribers(1, timeout=0.3) is False
        assert time.monotonic() - t0 >= 0.25
        with Subscriber(bus=mcl_bus), Subscriber("x", bus=mcl_bus):
            assert pub.wait_for_subscribers(2, timeout=10)
            assert pub.subscribers == 2
        wait_until(lambda: pub.subscribers == 0, 10, message=lambda: f"{pub.subscribers} subscribers still counted")


def test_slow_joiner_loses_nothing(mcl_bus: str) -> None:
    """After wait_for_subscribers, the very first message reaches a subscriber that just joined."""
    for _ in range(5):
        with Publisher(mcl_bus, close_timeout=0) as pub, Subscriber(bus=mcl_bus) as sub:
            assert pub.wait_for_subscribers(1, timeout=10)
            pub.publish("first", b"1")
            got = sub.recv(timeout=5)
            assert got is not None and got.sequence == 0 and got.payload == b"1"


def test_recv_timeout_batch_and_iteration(mcl_bus: str) -> None:
    """recv returns None on timeout; recv_batch takes what is queued; iteration yields in order."""
    with Subscriber(bus=mcl_bus) as sub, Publisher(mcl_bus, close_timeout=0) as pub:
        t0 = time.monotonic()
        assert sub.recv(timeout=0.2) is None
        assert 0.15 <= time.monotonic() - t0 < 5
        assert sub.recv_batch(10, timeout=0.05) == []
        assert pub.wait_for_subscribers(1, timeout=10)
        for i in range(50):
            pub.publish("n", i)
        batch = receive(sub, 20)
        assert [r.message for r in batch] == list(range(20))
        rest = []
        for received in sub:
            rest.append(received.message)
            if len(rest) == 30:
                break
        assert rest == list(range(20, 50))


def test_closed_endpoints_are_idempotent_and_refuse_use(mcl_bus: str) -> None:
    """close() twice is fine; using a closed publisher or subscriber is a RuntimeError."""
    pub = Publisher(mcl_bus)
    sub = Subscriber(bus=mcl_bus)
    pub.close()
    pub.close()
    sub.close()
    sub.close()
    with pytest.raises(RuntimeError, match="closed Publisher"):
        pub.publish("a", b"")
    with pytest.raises(RuntimeError, match="closed Subscriber"):
        sub.recv(0)


def test_foreign_two_frame_messages_are_accepted(mcl_bus: str) -> None:
    """A plain pyzmq PUB sending [topic, payload] is received without accounting."""
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.linger = 0
    try:
        raw.connect(parse_bus(mcl_bus).publish_endpoint)
        with Subscriber(bus=mcl_bus) as sub:
            got = reach(lambda: raw.send_multipart([b"plain", b"data"]), sub)[0]
            assert (got.topic, got.payload, got.publisher, got.sequence) == ("plain", b"data", "", -1)
    finally:
        raw.close(0)


# -- loss accounting ---------------------------------------------------------------------------


def _flood(bus: str, counts: dict[str, int], size: int, ready: threading.Event, ids: list[str]) -> None:
    payload = b"x" * size
    with Publisher(bus, hwm=4, close_timeout=20) as pub:
        ids.append(pub.id)
        ready.wait(10)
        assert pub.wait_for_subscribers(1, timeout=10)
        for i in range(max(counts.values())):
            for topic, n in counts.items():
                if i < n:
                    pub.publish(topic, payload)


def test_loss_count_is_exact_with_tiny_hwm_and_slow_consumer() -> None:
    """Forced HWM drops: the reported loss equals sent minus received, per publisher and topic."""
    counts = {"a": 3000, "b": 1500}
    with Forwarder("tcp://127.0.0.1:0", hwm=4) as forwarder:
        bus = forwarder.address
        ready = threading.Event()
        ids: list[str] = []
        with Subscriber(bus=bus, hwm=4) as sub:
            thread = threading.Thread(target=_flood, args=(bus, counts, 16384, ready, ids), daemon=True)
            thread.start()
            ready.set()
            received: dict[str, list[int]] = {"a": [], "b": []}
            deadline = time.monotonic() + 60
            while thread.is_alive() and time.monotonic() < deadline:
                got = sub.recv(timeout=0.1)
                if got is not None:
                    received[got.topic].append(got.sequence)
                    time.sleep(0.0005)  # the slow consumer
            while (got := sub.recv(timeout=0.2)) is not None:
                received[got.topic].append(got.sequence)
            thread.join(5)
            assert not thread.is_alive()
            losses = sub.losses()
            for topic, seqs in received.items():
                assert seqs == sorted(set(seqs)), "sequences arrive in order, without duplicates"
                assert losses.get((ids[0], topic), 0) == counts[topic] - len(seqs)
            assert sub.lost == sum(counts.values()) - sum(map(len, received.values()))
            assert sub.lost > 0, "the test must actually force loss"


def test_tail_loss_is_counted_from_the_end_of_stream(mcl_bus: str) -> None:
    """Messages dropped after the last one received are counted once the publisher closes."""
    with Subscriber(["a", "b"], bus=mcl_bus, exact=True) as sub:
        with Publisher(mcl_bus, close_timeout=0) as pub:
            assert pub.wait_for_subscribers(1, timeout=10)
            pub.publish("a", b"0")
            assert sub.recv(timeout=5) is not None
            # Simulate drops on the way: publish directly past the subscriber's view by
            # bumping the sequence numbers the subscriber will never see.
            pub._seqs[b"a"] += 7  # 7 messages of "a" lost at the tail
            pub._seqs[b"b"] = 3  # 3 messages of "b" lost, none received
        assert sub.recv(timeout=0.3) is None  # processes the end of stream
        assert sub.losses() == {(pub.id, "a"): 7, (pub.id, "b"): 3}
        assert sub.lost == 10


def test_close_waits_for_acknowledgement_and_flushes() -> None:
    """A burst published just before close() is delivered whole to a receiving subscriber."""
    n = 20000
    result: dict[str, int] = {}
    forwarder = Forwarder("tcp://127.0.0.1:0", hwm=n)
    bus = forwarder.address

    def consume(started: threading.Event) -> None:
        with Subscriber(bus=bus, hwm=n) as sub:
            started.set()
            got = receive(sub, n, timeout=30)
            while sub.recv(timeout=0.3) is not None:
                pass
            result.update(received=len(got), lost=sub.lost)

    try:
        started = threading.Event()
        thread = threading.Thread(target=consume, args=(started,), daemon=True)
        thread.start()
        assert started.wait(10)
        with Publisher(bus, hwm=n, close_timeout=20) as pub:
            assert pub.wait_for_subscribers(1, timeout=10)
            for i in range(n):
                pub.publish("burst", b"%d" % i)
        thread.join(40)
    finally:
        forwarder.close()
    assert result == {"received": n, "lost": 0}


# -- zero configuration ---------------------------------------------------------------------------

_HOST_SCRIPT = """
import sys, time
from mcl.network import Subscriber
from mcl.network.address import parse_bus
from mcl.network.forwarder import hosting
with Subscriber("nothing"):
    deadline = time.monotonic() + 20
    while not hosting(parse_bus(None)) and time.monotonic() < deadline:
        time.sleep(0.02)
    print("hosting" if hosting(parse_bus(None)) else "not hosting", flush=True)
    sys.stdin.read()
"""

_PUB_SCRIPT = """
import sys
from mcl.network import Publisher
with Publisher() as pub:
    if not pub.wait_for_subscribers(1, timeout=20):
        sys.exit(3)
    for i in range(int(sys.argv[1])):
        pub.publish("hello", b"%d" % i)
"""

_SUB_SCRIPT = """
import sys
from mcl.network import Subscriber
with Subscriber("hello") as sub:
    print("ready", flush=True)
    got = [sub.recv(timeout=20) for _ in range(int(sys.argv[1]))]
    print(",".join(r.payload.decode() if r else "-" for r in got), sub.lost, flush=True)
"""


@pytest.mark.slow
def test_zero_config_either_order() -> None:
    """Without any forwarder, a subscriber and a publisher find each other in either order."""
    env = child_env(MCL_BUS=free_bus())
    for first in ("sub", "pub"):
        procs: list[subprocess.Popen[str]] = []
        try:
            sub_cmd = [sys.executable, "-c", _SUB_SCRIPT, "5"]
            pub_cmd = [sys.executable, "-c", _PUB_SCRIPT, "5"]
            for cmd in ([sub_cmd, pub_cmd] if first == "sub" else [pub_cmd, sub_cmd]):
                procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
                time.sleep(0.3)
            sub = procs[0] if first == "sub" else procs[1]
            out, _ = sub.communicate(timeout=40)
            assert out.splitlines()[-1] == "0,1,2,3,4 0"
            for proc in procs:
                assert proc.wait(timeout=20) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()


@pytest.mark.slow
def test_zero_config_recovers_when_the_host_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the process serving the default bus is killed, the others take over without restart."""
    address = free_bus()
    monkeypatch.setenv("MCL_BUS", address)
    host = subprocess.Popen(
        [sys.executable, "-c", _HOST_SCRIPT], env=child_env(MCL_BUS=address), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    pub_proc = None
    try:
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "hosting"
        with Subscriber("hello") as sub:
            assert not hosting(parse_bus(address))  # the ports are taken by the host process
            host.kill()
            host.wait(timeout=10)
            wait_until(lambda: hosting(parse_bus(address)), 10, message="this process did not take the bus over")
            pub_proc = subprocess.Popen([sys.executable, "-c", _PUB_SCRIPT, "3"], env=child_env(MCL_BUS=address))
            got = receive(sub, 3, timeout=30)
            assert [r.payload for r in got] == [b"0", b"1", b"2"]
            assert pub_proc.wait(timeout=20) == 0
    finally:
        for proc in (host, pub_proc):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if host.stdin is not None:
            host.stdin.close()
        if host.stdout is not None:
            host.stdout.close()


def test_private_bus_does_not_host(mcl_bus: str) -> None:
    """An explicit (private) bus is never hosted by its publishers unless asked."""
    with Publisher(mcl_bus) as pub:
        assert not hosting(parse_bus(mcl_bus))
        assert pub.bus == mcl_bus


def test_forwarder_releases_its_ports() -> None:
    """A closed forwarder frees its two ports at once (a new one binds them)."""
    first = Forwarder("tcp://127.0.0.1:0")
    address = first.address
    with pytest.raises(BusError, match="already in use"):
        Forwarder(address)
    first.close()
    first.close()
    with Forwarder(address) as second:
        assert second.serving and second.address == address


# -- mcl-bus ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mcl_bus_serves_and_stops_on_sigterm() -> None:
    """mcl-bus --bind serves a bus until SIGTERM, then exits 0."""
    address = free_bus()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcl.cli.bus", "--bind", address], env=child_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert "serving bus " + address in proc.stdout.readline()
        with Subscriber(bus=address) as sub, Publisher(address, close_timeout=0) as pub:
            assert pub.wait_for_subscribers(1, timeout=10)
            pub.publish("via", b"mcl-bus")
            got = sub.recv(timeout=5)
            assert got is not None and got.payload == b"mcl-bus"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--bind", "nonsense"], "mcl-bus: error: bad bus address 'nonsense'"),
     (["--curve-secret", "/nonexistent/x.key_secret", "--curve-clients", "/tmp"],
      "mcl-bus: error: /nonexistent/x.key_secret: no such certificate file")],
)
def test_mcl_bus_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input gives one error line and exit 1."""
    from mcl.cli import bus as cli

    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1


def test_mcl_bus_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    """mcl-bus on ports already taken exits 1 with a clear message."""
    from mcl.cli import bus as cli

    with Forwarder("tcp://127.0.0.1:0") as forwarder:
        assert cli.main(["--bind", forwarder.address]) == 1
    assert "already in use" in capsys.readouterr().err


def test_mcl_bus_make_keys(tmp_path: Path) -> None:
    """--make-keys writes a public and a secret certificate."""
    from mcl.cli import bus as cli

    assert cli.main(["--make-keys", str(tmp_path / "keys" / "server"), "-q"]) == 0
    assert (tmp_path / "keys" / "server.key").is_file()
    assert (tmp_path / "keys" / "server.key_secret").is_file()
