"""Trust tests of the bus (issue 11, sections 1 and 2): nothing lost silently, no client stops a recording.

Real sockets on loopback: a private forwarder per test, raw pyzmq attacker
sockets sending crafted frames, real mcl-replay / mcl-dump processes.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import child_env, free_bus, reach, receive, wait_until

import mcl
from mcl.network import Forwarder, Publisher, Received, Subscriber, parse_bus, wire
from mcl.network import _common
from mcl.recorder import ACCOUNTING_FILE, Recorder, read_accounting

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs" / "vehicle"
ATTACKER_ID = b"attacker:1:00000000"


# -- helpers ---------------------------------------------------------------------------------
def meta(seq: int, kind: int = wire.KIND_DATA, pid: bytes = ATTACKER_ID, sent_ns: int | None = None) -> bytes:
    return wire.META.pack(wire.VERSION, kind, seq, time.time_ns() if sent_ns is None else sent_ns) + pid


class Attacker:
    """A raw pyzmq PUB on the forwarder's publisher port: sends any frames at all."""

    def __init__(self, address: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.linger = 0
        self.sock.sndhwm = 0
        self.sock.connect(parse_bus(address).publish_endpoint)
        self._marks = 0

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def reach(self, sub: Subscriber, timeout: float = 10.0) -> None:
        """Wait until what this socket sends reaches `sub` (its subscription reached this PUB)."""
        reach(lambda: self.send([b"warm", b""]), sub, timeout, topic="warm")
        drain(sub, 0.2)

    def mark(self, sub: Subscriber, timeout: float = 10.0) -> list[Received]:
        """Send a marker after what was sent and receive until it arrives (same pipe: in order)."""
        self._marks += 1
        marker = b"%d" % self._marks
        self.send([b"marker", marker])

        def is_marker(r: Received) -> bool:
            return r.topic == "marker" and r.payload == marker

        # What follows the marker in its batch is kept: other publishers' pipes are not ordered with it.
        got = receive(sub, timeout=timeout, until=lambda got: any(map(is_marker, got)))
        if not any(map(is_marker, got)):
            raise AssertionError(f"marker {marker!r} did not arrive; got {got[-5:]}")
        return [r for r in got if not is_marker(r)]

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture()
def attacker(mcl_bus: str) -> Iterator[Attacker]:
    raw = Attacker(mcl_bus)
    try:
        yield raw
    finally:
        raw.close()


def drain(sub: Subscriber, quiet: float = 0.3) -> list[Received]:
    """Receive until nothing came for `quiet` seconds."""
    got: list[Received] = []
    while True:
        batch = sub.recv_batch(1000, timeout=quiet)
        if not batch:
            return got
        got.extend(batch)


# -- 1. slow joiners --------------------------------------------------------------------------
_PUBLISHER_STARTS = """
import sys
from mcl.network import Publisher
bus, starts, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(starts):
    with Publisher(bus) as pub:  # no flag, no wait_for_subscribers
        for j in range(count):
            pub.publish("sj", b"%d:%d" % (i, j))
"""


@pytest.mark.slow
def test_slow_joiner_every_first_message_reaches_a_subscriber_already_on_the_bus(mcl_bus: str) -> None:
    """40 publishers started one after the other (TCP, another process) against a subscriber on the bus lose nothing."""
    starts, count = 40, 5
    with Subscriber("sj", bus=mcl_bus) as sub:
        assert sub.wait_joined(10)
        proc = subprocess.run(
            [sys.executable, "-c", _PUBLISHER_STARTS, mcl_bus, str(starts), str(count)],
            env=child_env(MCL_BUS=None), capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        got = drain(sub, 1.0)
        stats = sub.stats()
    payloads = [r.payload for r in got]
    assert sorted(payloads) == sorted(b"%d:%d" % (i, j) for i in range(starts) for j in range(count))
    assert {r.sequence for r in got if r.payload.endswith(b":0")} == {0}  # every first message came
    assert stats.lost == 0 and stats.suspect == 0 and stats.malformed == 0
    assert len(stats.streams) == starts


@pytest.mark.slow
def test_replays_with_default_options_lose_no_first_record(mcl_bus: str, tmp_path: Path) -> None:
    """8 replays with default options (no wait_for_subscribers) into a subscriber on the bus: every record of each arrives."""
    _make_log(tmp_path / "log", 30)
    runs = 8
    with Subscriber(bus=mcl_bus) as sub:
        assert sub.wait_joined(10)
        for _ in range(runs):
            with mcl.Replay(tmp_path / "log", math.inf, bus=mcl_bus) as replay:
                replay.start()
                assert replay.wait(60)
        got = drain(sub, 1.0)
        stats = sub.stats()
    by_publisher: dict[str, list[int]] = {}
    for r in got:
        by_publisher.setdefault(r.publisher, []).append(r.sequence)
    assert len(by_publisher) == runs
    for seqs in by_publisher.values():
        assert sorted(seqs) == [i for i in range(10) for _ in range(3)]  # 3 topics x sequences 0..9
    assert stats.lost == 0


def test_a_head_missed_by_a_subscriber_on_the_bus_is_counted_from_0(mcl_bus: str, attacker: Attacker) -> None:
    """End of stream of a publisher that never knew of this subscriber (its subscription was still on its way):
    messages sent after the subscriber was on the bus are lost from sequence 0; those sent before are not claimed."""
    with Subscriber(bus=mcl_bus) as sub:
        attacker.reach(sub)  # the subscriber is on the bus from here
        joined = time.time_ns()
        late = {"counts": {b"h": 5}, "joined": {}, "first_ns": {b"h": joined + 1}}
        early = {"counts": {b"h": 7}, "joined": {}, "first_ns": {b"h": joined - 10**9}}
        attacker.send([wire.END_TOPIC, meta(0, wire.KIND_END, pid=b"late"), msgpack.packb(late)])
        attacker.send([wire.END_TOPIC, meta(0, wire.KIND_END, pid=b"early"), msgpack.packb(early)])
        attacker.mark(sub)
        stats = sub.stats()
    assert stats.lost == 5 and stats.suspect == 0  # 'late' sent all 5 after the join; 'early' began before it


def test_publisher_waits_for_the_subscriptions_already_on_the_bus(mcl_bus: str) -> None:
    """wait_for_bus sees the forwarder's READY subscription after the subscribers' ones; a bus without it times out."""
    with Subscriber("t", bus=mcl_bus) as sub:
        assert sub.wait_joined(10)
        with Publisher(mcl_bus, close_timeout=0) as pub:
            assert pub.wait_for_bus(10)
            assert pub.subscribers == 1  # the subscriber's announcement came before READY
            pub.publish("t", b"first")
            first = sub.recv(timeout=10)
            assert first is not None and first.payload == b"first" and first.sequence == 0
    # A plain ZeroMQ proxy does not make the READY subscription: the wait is bounded.
    ctx = zmq.Context.instance()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    try:
        xsub.bind("tcp://127.0.0.1:*")
        port = int(xsub.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        with Publisher(f"tcp://127.0.0.1:{port}", provide=False, startup_wait=0.3, close_timeout=0) as pub:
            started = time.monotonic()
            assert pub.wait_for_bus() is False
            assert 0.25 <= time.monotonic() - started < 5
            pub.publish("t", b"x")  # waited once: no second wait
    finally:
        xsub.close(0)
        xpub.close(0)


def test_head_loss_counted_from_zero_when_the_subscriber_was_there_first(mcl_bus: str, attacker: Attacker) -> None:
    """A subscriber seen by the publisher before its first message counts a lost head from sequence 0."""
    with Subscriber(bus=mcl_bus) as sub:
        attacker.reach(sub)
        for seq in (3, 4):
            attacker.send([b"h", meta(seq), b"x"])
        table = {"counts": {b"h": 7}, "joined": {sub.id.encode(): {}}}  # it saw the subscriber before seq 0
        attacker.send([wire.END_TOPIC, meta(0, wire.KIND_END), msgpack.packb(table)])
        got = attacker.mark(sub)
        assert [r.sequence for r in got] == [3, 4]
        stats = sub.stats()
        stream = stats.streams[(ATTACKER_ID.decode(), "h")]
        assert stream.lost == 3 + 2 and stream.received == 2  # head 0..2 and tail 5..6
        assert [(s.first, s.count) for s in stream.spans] == [(0, 3), (5, 2)]
        assert sub.lost == 5


# -- 1. high-water marks and back-pressure ------------------------------------------------------
def test_back_pressure_a_slow_subscriber_loses_nothing(mcl_bus: str) -> None:
    """A publisher with send_timeout into small queues and a slow reader: every message arrives, none dropped."""
    with Forwarder("tcp://127.0.0.1:0", hwm=50) as small:
        result: dict[str, object] = {}
        ready = threading.Event()

        def slow_reader() -> None:
            with Subscriber("bp", bus=small.address, hwm=50) as sub:
                sub.wait_joined(10)
                ready.set()
                got = 0
                deadline = time.monotonic() + 60
                while got < 20_000 and time.monotonic() < deadline:
                    batch = sub.recv_batch(200, timeout=1.0)
                    got += len(batch)
                    time.sleep(0.001)  # slower than the publisher
                result.update(got=got, lost=sub.lost)

        reader = threading.Thread(target=slow_reader)
        reader.start()
        try:
            assert ready.wait(10)
            with Publisher(small.address, hwm=50, send_timeout=5.0, close_timeout=2) as pub:
                for i in range(20_000):
                    pub.publish("bp", b"%d" % i)
                assert pub.dropped == 0
        finally:
            reader.join(90)
        assert result == {"got": 20_000, "lost": 0}
        assert small.stalls == 0


@pytest.mark.slow  # over two seconds: not in the fast lane
def test_a_stuck_subscriber_stalls_the_bus_for_stall_s_only_and_its_loss_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A subscriber that never reads: after stall_s the forwarder drops for it (counted), the others go on; then it waits again."""
    from mcl.network import forwarder as forwarder_module

    monkeypatch.setattr(forwarder_module, "REARM_S", 0.5)
    with Forwarder("tcp://127.0.0.1:0", hwm=20, stall_s=0.3) as fwd:
        with Subscriber("st", bus=fwd.address, hwm=20) as stuck, Subscriber("st", bus=fwd.address) as live:
            assert stuck.wait_joined(10) and live.wait_joined(10)
            sent = 3000
            got: list[Received] = []
            with Publisher(fwd.address, close_timeout=0) as pub:
                for i in range(sent):
                    pub.publish("st", b"%d" % i)
                    if i % 100 == 0:
                        got.extend(live.recv_batch(1000, timeout=0))
                        time.sleep(0.01)
                got.extend(drain(live, 1.0))
                assert fwd.stalls >= 1
                late = drain(stuck, 1.0)
                assert 0 < len(late) < sent
                pub.publish("st", b"last")  # a message after the gap shows it (the tail needs a later message)
                got.extend(drain(live, 1.0))
                late.extend(drain(stuck, 1.0))
            assert late[-1].payload == b"last" and got[-1].payload == b"last"
            wait_until(lambda: not fwd.dropping, 10, 0.05)  # REARM_S later it waits for full queues again
            assert len(got) + live.lost == sent + 1  # whatever the live one missed while the bus waited is counted
            assert len(late) + stuck.lost == sent + 1  # the stuck one's drops are all counted
            assert stuck.suspect == 0


@pytest.mark.slow  # over two seconds: not in the fast lane
def test_a_waiting_publisher_waits_once_for_a_dead_bus_then_drops_and_counts() -> None:
    """send_timeout: a bus that takes nothing costs one timeout, then messages drop at once (counted) until it moves."""
    with Forwarder("tcp://127.0.0.1:0", hwm=10, stall_s=5.0) as fwd, Subscriber("x", bus=fwd.address, hwm=10) as stuck:
        assert stuck.wait_joined(10)
        with Publisher(fwd.address, hwm=10, send_timeout=0.3, close_timeout=0) as pub:
            started = time.monotonic()
            for i in range(2000):
                pub.publish("x", b"%d" % i)
            elapsed = time.monotonic() - started
            assert pub.dropped > 0
            assert elapsed < 20  # one wait of 0.3 s, not one per dropped message (hundreds of seconds)
            got = drain(stuck, 1.0)  # the subscriber reads: the bus moves again
            pub.publish("x", b"last")
            got.extend(drain(stuck, 1.0))
        assert got[-1].payload == b"last"
        assert len(got) + stuck.lost == 2001 and len(got) + pub.dropped <= 2001


def _make_log(path: Path, count: int) -> None:
    with mcl.LogWriter(path, "native", origin_ns=0) as writer:
        for i in range(count):
            writer.write(("a", "b", "c")[i % 3], b"payload %d" % i + b"." * (i % 200), i * 1_000_000)


@pytest.mark.slow
def test_max_speed_replay_into_a_live_recorder_loses_nothing(tmp_path: Path) -> None:
    """mcl-replay --max-speed of 20,000 messages (default options, TCP) into a running Recorder: all recorded, lost 0."""
    count = 20_000
    _make_log(tmp_path / "src", count)
    bus = free_bus()
    with Recorder(tmp_path / "rec", bus) as rec:
        done = subprocess.run(
            [sys.executable, "-c", "from mcl.cli.replay import run; run()", str(tmp_path / "src"), "--max-speed", "--bus", bus],
            env=child_env(MCL_BUS=None), capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        wait_until(lambda: rec.status().messages >= count, 30, 0.1)
        time.sleep(0.3)  # the end of stream
    status = rec.status()
    assert status.messages == count and status.lost == 0 and status.malformed == 0
    assert done.stdout.splitlines()[-1].endswith(f"to 1 subscriber(s) on {bus}")
    with mcl.open_log(tmp_path / "rec") as log:
        assert [r.payload for r in log.iter_records()][:3] == [b"payload 0", b"payload 1.", b"payload 2.."]


# -- 1. nobody listening, --bus by flag, no forwarder -------------------------------------------
def _replay_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from mcl.cli.replay import run; run()", *args],
        env=child_env(MCL_BUS=None), capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.slow
def test_replay_says_where_it_publishes_and_that_nobody_listened() -> None:
    """mcl-replay prints the bus address and, with nobody attached, says so plainly in its last line."""
    bus = free_bus()
    done = _replay_cli(str(SAMPLE), "--max-speed", "--bus", bus)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"bus: publishing on {bus}" in lines
    assert lines[-1] == f"finished: 1400 messages sent, 0 loops; no subscriber was attached to {bus}: nobody received them"


@pytest.mark.slow
def test_bus_by_flag_behaves_like_mcl_bus_on_loopback(tmp_path: Path) -> None:
    """mcl-dump --bus ADDR + mcl-replay --bus ADDR (no forwarder started by anyone else) records the whole log."""
    from tests.test_record_helpers import DumpProcess

    bus = free_bus()
    with DumpProcess("--bus", bus, "-o", str(tmp_path), "--status-interval", "60") as dump:
        path = dump.wait_recording()
        done = _replay_cli(str(SAMPLE), "--max-speed", "--bus", bus, "--wait-for-subscribers", "1")
        assert done.returncode == 0, done.stderr
        assert "waiting for 1 subscriber(s) (mcl-dump, Subscriber) to attach to " + bus in done.stdout
        assert done.stdout.splitlines()[-1].endswith(f"to 1 subscriber(s) on {bus}")
        time.sleep(0.5)
        dump.proc.send_signal(2)
        assert dump.wait(20) == 0, dump.stderr
    assert path is not None
    with mcl.open_log(path) as log:
        assert len(list(log.iter_records())) == 1400
    assert "lost 0" in dump.stderr


def test_a_client_of_a_bus_without_forwarder_says_so_and_keeps_trying(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No forwarder within NO_ANSWER_S: one warning naming the address and `mcl-bus --bind`; then it connects."""
    monkeypatch.setattr(_common, "NO_ANSWER_S", 0.3)
    bus = free_bus()
    caplog.set_level(logging.WARNING, logger="mcl.network")
    with Subscriber("t", bus=bus, provide=False) as sub:
        wait_until(lambda: "no forwarder answers" in caplog.text, 10, 0.05)
        lines = [r.getMessage() for r in caplog.records if "no forwarder answers" in r.getMessage()]
        assert lines == [f"no forwarder answers at {bus} (subscriber, tried for 0 s); start a bus there with `mcl-bus --bind {bus}`; still trying"]
        with Forwarder(bus) as fwd, Publisher(fwd.address, provide=False, close_timeout=0) as pub:
            assert pub.wait_for_subscribers(1, timeout=20)  # ZeroMQ kept trying: the subscriber is there now
            pub.publish("t", b"late")
            got = sub.recv(timeout=10)
            assert got is not None and got.payload == b"late"
    assert len([r for r in caplog.records if "no forwarder answers" in r.getMessage()]) == 1


# -- 2. hostile frames ------------------------------------------------------------------------------
def test_forged_end_of_stream_with_a_list_of_counts_is_dropped_and_counted(mcl_bus: str, attacker: Attacker) -> None:
    """An end of stream whose counts field is a list (and other bad tables) crashes nothing; counted by reason."""
    with Subscriber(bus=mcl_bus) as sub:
        attacker.reach(sub)
        for n, payload in enumerate([
            msgpack.packb({"counts": [1, 2, 3], "joined": {}}),
            msgpack.packb({"counts": {b"t": "many"}}),
            msgpack.packb([1, 2]),
            b"\xc1 not msgpack",
            msgpack.packb({"counts": {b"t": -5}}),
        ]):
            attacker.send([wire.END_TOPIC, meta(0, wire.KIND_END, pid=b"forger:%d" % n), payload])
        attacker.mark(sub)
        assert sub.stats().malformed_by_reason == {"bad end of stream": 5}
        assert sub.lost == 0


def test_one_frame_messages_never_take_frames_of_the_next(mcl_bus: str, attacker: Attacker) -> None:
    """Two one-frame messages in a row are not delivered as a fake message; the real one after them arrives."""
    with Subscriber(bus=mcl_bus) as sub:
        attacker.reach(sub)
        attacker.send([b"fake-topic"])
        attacker.send([b"fake-payload"])
        attacker.send([b"t", meta(0), b"real"])
        got = attacker.mark(sub)
        assert [(r.topic, r.payload) for r in got] == [("t", b"real")]
        assert sub.stats().malformed_by_reason == {"one frame": 2}


def test_forged_sequences_and_end_claims_are_suspect_not_lost(mcl_bus: str, attacker: Attacker) -> None:
    """A sequence jump of a billion, a sequence going back and an end of stream claiming 10^12 sent are suspect."""
    with Subscriber(bus=mcl_bus) as sub:
        attacker.reach(sub)
        attacker.send([b"s", meta(0), b"0"])
        attacker.send([b"s", meta(1), b"1"])
        attacker.send([b"s", meta(1_000_000_001), b"forged"])
        attacker.send([b"s", meta(2), b"2"])
        attacker.send([b"s", meta(1), b"again"])
        table = {"counts": {b"s": 10**12, b"never": 10**12}, "joined": {sub.id.encode(): {}}}
        attacker.send([wire.END_TOPIC, meta(0, wire.KIND_END), msgpack.packb(table)])
        attacker.mark(sub)
        stats = sub.stats()
        assert stats.lost == 0
        assert stats.suspect == 4  # the jump, the repeat and the end-of-stream claims of both topics
        assert stats.streams[(ATTACKER_ID.decode(), "s")].received == 5


def test_a_real_gap_is_counted_with_its_span(mcl_bus: str, attacker: Attacker) -> None:
    """A plausible gap is lost, with the span (first sequence, count, sender times around it)."""
    with Subscriber(bus=mcl_bus) as sub:
        attacker.reach(sub)
        attacker.send([b"g", meta(0, sent_ns=10**18), b"0"])
        attacker.send([b"g", meta(6, sent_ns=10**18 + 10**9), b"6"])
        attacker.mark(sub)
        stream = sub.stats().streams[(ATTACKER_ID.decode(), "g")]
        assert stream.lost == 5 and stream.suspect == 0
        assert [(s.first, s.count, s.after_ns, s.before_ns) for s in stream.spans] == [(1, 5, 10**18, 10**18 + 10**9)]


def test_oversized_topics_frames_and_too_many_streams_are_bounded() -> None:
    """A 70,000-byte topic, a frame over max_message_bytes and streams beyond max_streams: dropped, counted, rest goes on."""
    with Forwarder("tcp://127.0.0.1:0", max_message_bytes=1 << 20) as fwd:
        raw = Attacker(fwd.address)
        try:
            with Subscriber(bus=fwd.address, max_streams=10) as sub:
                raw.reach(sub)
                raw.send([b"x" * 70_000, meta(0), b"p"])
                for n in range(20):
                    raw.send([b"many", meta(0, pid=b"p%d" % n), b"p"])
                got = raw.mark(sub)
                assert len([r for r in got if r.topic == "many"]) == 10
                assert sub.stats().malformed_by_reason == {"topic too long": 1, "too many streams": 10}
                raw.send([b"big", meta(1), b"x" * (2 << 20)])  # over MAXMSGSIZE: the forwarder drops the sender
                raw.close()
                raw = Attacker(fwd.address)
                raw.reach(sub)
                assert not any(r.topic == "big" for r in raw.mark(sub))
        finally:
            raw.close()


_FRAME = st.binary(max_size=40)
_META = st.builds(
    lambda version, kind, seq, sent, pid: struct.pack("<BBQQ", version, kind, seq, sent) + pid,
    st.sampled_from([1, 1, 1, 0, 2, 255]),
    st.sampled_from([0, 0, 1, 2, 255]),
    st.one_of(st.integers(0, 20), st.integers(0, 2**64 - 1)),
    st.one_of(st.just(0), st.integers(0, 2**64 - 1), st.just(time.time_ns())),
    st.sampled_from([ATTACKER_ID, b"", b"other", "é".encode()]) | st.binary(max_size=8),
)
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=8) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=4) | st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
_END_PAYLOAD = st.one_of(
    st.binary(max_size=40),
    _JSONISH.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    st.builds(lambda counts, joined: msgpack.packb({"counts": counts, "joined": joined}, use_bin_type=True), _JSONISH, _JSONISH),
)
_MESSAGE = st.one_of(
    st.lists(_FRAME, min_size=1, max_size=5),
    st.tuples(st.sampled_from([b"t", b"u", b"\xffmcl.end", b"\xff\xff", b"\xfe"]) | _FRAME, _META, _FRAME).map(list),
    st.tuples(st.just(wire.END_TOPIC), _META, _END_PAYLOAD).map(list),
)


@pytest.mark.slow  # over two seconds: not in the fast lane
def test_fuzzed_frames_never_crash_a_subscriber_nor_hide_real_messages(mcl_bus: str, attacker: Attacker) -> None:
    """Hypothesis: any frames from a raw socket, between the messages of a real publisher: none lost, nothing raises."""
    cases = {"n": 0, "legit": 0}
    with Subscriber(bus=mcl_bus) as sub:
        attacker.reach(sub)  # on the bus before the publisher starts: its first message is due to it
        pub = Publisher(mcl_bus, close_timeout=2)
        legit: list[Received] = []

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.lists(_MESSAGE, max_size=6))
        def run(messages: list[list[bytes]]) -> None:
            cases["n"] += 1
            for frames in messages:
                attacker.send(frames)
                pub.publish("legit", b"%d" % cases["legit"])
                cases["legit"] += 1
            got = attacker.mark(sub)
            legit.extend(r for r in got if r.publisher == pub.id)
            stats = sub.stats()
            assert sum(stats.malformed_by_reason.values()) == stats.malformed

        try:
            run()
        finally:
            pub.close()
        legit.extend(r for r in drain(sub, 0.5) if r.publisher == pub.id)
        assert [r.payload for r in legit] == [b"%d" % i for i in range(cases["legit"])]
        assert [r.sequence for r in legit] == list(range(cases["legit"]))
        assert sub.stats().streams[(pub.id, "legit")].lost == 0
    assert cases["n"] >= 100
    print(f"fuzzed: {cases['n']} cases, {cases['legit']} real messages between them, all received")  # for docs/reliability.md


# -- 2. a recording goes on; its accounting is in the log ----------------------------------------
@pytest.mark.slow  # over two seconds: not in the fast lane
def test_recording_goes_on_past_unstorable_messages_and_stores_its_accounting(mcl_bus: str, attacker: Attacker, tmp_path: Path) -> None:
    """Native and MCL_LOG 1.0: hostile topics / type names are dropped by reason; the rest is recorded; accounting stored."""
    for fmt in ("native", "mcl1"):
        with Recorder(tmp_path / fmt, mcl_bus, topics=["hostile/"], format=fmt) as rec:
            with Subscriber(bus=mcl_bus) as probe:
                attacker.reach(probe)
            attacker.send([b"hostile/type", meta(0), msgpack.packb({"name": "N" * 300})])  # a 300-character type name
            attacker.send([b"hostile/" + b"y" * 4000, meta(0), b"long topic"])
            attacker.send([b"hostile/" + b"z" * 70_000, meta(0), b"too long"])  # over max_topic_bytes: dropped
            attacker.send([b"hostile/bigtype", meta(0), msgpack.packb({"name": "B" * 70_000})])  # over a u16
            attacker.send([b"hostile/with space", meta(0), b"x"])  # MCL_LOG 1.0 cannot store white space in a topic
            for i in range(1500):  # 1,500 type names: MCL_LOG 1.0 would need a file each
                attacker.send([b"hostile/types", meta(i), msgpack.packb({"name": f"T{i}"})])
            attacker.send([wire.END_TOPIC, meta(0, wire.KIND_END, pid=b"forger"), msgpack.packb({"counts": [1]})])
            attacker.send([b"hostile/after", meta(0), b"after"])
            wait_until(lambda: rec.status().messages + rec.status().malformed >= 1507, 20, 0.05)
        status = rec.status()
        assert status.error is None
        with mcl.open_log(tmp_path / fmt) as log:
            records = list(log.iter_records())
        assert records[-1].payload == b"after"
        assert status.dropped.get("bad end of stream") == 1
        assert status.dropped.get("topic too long") == 1
        if fmt == "mcl1":
            assert status.dropped["type name too long for MCL_LOG 1.0"] == 2
            assert status.dropped["topic not storable in MCL_LOG 1.0"] == 1
            assert status.dropped["too many types for MCL_LOG 1.0"] == 1500 - 255  # raw data (no type) took one of 256
        else:
            assert len(records) == 1505 and set(status.dropped) == {"bad end of stream", "topic too long"}
        wire_drops = ("bad end of stream", "topic too long")
        assert len(records) + sum(v for k, v in status.dropped.items() if k not in wire_drops) == 1505
        accounting = read_accounting(tmp_path / fmt)
        assert accounting is not None and accounting["complete"] is True
        assert accounting["recorded"] == len(records)
        assert accounting["malformed_by_reason"] == status.dropped
        assert (tmp_path / fmt / ACCOUNTING_FILE).is_file()


def test_mcl_info_shows_the_recording_accounting(mcl_bus: str, attacker: Attacker, tmp_path: Path) -> None:
    """mcl-info (text and --json) shows what the recording lost and where."""
    from mcl.cli.info import main as info_main

    with Recorder(tmp_path / "log", mcl_bus, topics=["g"]) as rec:
        with Subscriber(bus=mcl_bus) as probe:
            attacker.reach(probe)
        attacker.send([b"g", meta(0, sent_ns=rec.origin_ns + 10**9), b"0"])
        attacker.send([b"g", meta(4, sent_ns=rec.origin_ns + 2 * 10**9), b"4"])
        attacker.send([b"g-one-frame"])
        wait_until(lambda: rec.status().lost >= 3, 10, 0.05)
    assert rec.status().lost == 3
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert info_main([str(tmp_path / "log")]) == 0
    text = out.getvalue()
    assert "recording: 2 recorded, 3 lost, 1 malformed (dropped), 0 suspect" in text
    assert "dropped: one frame 1" in text
    assert '"g"' in text and "1.0..2.0 (3)" in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert info_main([str(tmp_path / "log"), "--json"]) == 0
    acc = json.loads(out.getvalue())["accounting"]
    (stream,) = [s for s in acc["streams"] if s["topic"] == "g"]
    assert stream["lost"] == 3 and stream["received"] == 2
    assert stream["loss_spans"] == [{"first": 1, "count": 3, "after": 1.0, "before": 2.0}]


def test_recording_bounds_its_topics(mcl_bus: str, attacker: Attacker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct topics beyond MAX_TOPICS (foreign [topic, payload] senders make no streams) are dropped and counted."""
    from mcl import recorder as record

    monkeypatch.setattr(record, "MAX_TOPICS", 5)
    with Recorder(tmp_path / "log", mcl_bus, topics=["many/"]) as rec:
        with Subscriber(bus=mcl_bus) as probe:
            attacker.reach(probe)
        for n in range(12):
            attacker.send([b"many/%d" % n, b"payload"])
        wait_until(lambda: rec.status().messages + rec.status().malformed >= 12, 10, 0.05)
    status = rec.status()
    assert status.messages == 5 and status.dropped == {"too many topics": 7}
    assert sorted(t for t, c in status.topics.items() if c.messages) == [f"many/{n}" for n in range(5)]
    assert sum(c.malformed for c in status.topics.values()) == 7  # per topic (the last ones under "*": bounded too)


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[1, 2]", b'{"streams": 5}', b'{"streams": [{"loss_spans": 7, "lost": "x"}], "malformed_by_reason": []}',
     b"\xff\xfe", b"[" * 100_000],
)
def test_mcl_info_survives_a_hostile_accounting_file(tmp_path: Path, content: bytes) -> None:
    """A damaged or forged accounting.json never breaks mcl-info: one line says it is unreadable, or fields are skipped."""
    import contextlib
    import io

    from mcl.cli.info import main as info_main

    with mcl.LogWriter(tmp_path / "log", "native", origin_ns=0) as writer:
        writer.write("t", b"x", 0)
    (tmp_path / "log" / ACCOUNTING_FILE).write_bytes(content)
    for argv in ([str(tmp_path / "log")], [str(tmp_path / "log"), "--json"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert info_main(argv) == 0
        assert "messages" in out.getvalue()
