"""mcl-foxglove: a real Foxglove WebSocket client sees a real replay, its clock, and never disturbs the bus."""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import receive, wait_until

import mcl
from mcl.foxglove import BridgeOptions, FoxgloveBridge, is_loopback, message_log_time
from mcl.log.mcap import to_json_value
from mcl.message import encode, unpack
from mcl.network import Publisher, Subscriber

pytest.importorskip("foxglove", reason="the optional 'foxglove' extra (foxglove-sdk) is not installed")
ws_client = pytest.importorskip("websockets.sync.client")

SUBPROTOCOL = "foxglove.sdk.v1"  # what foxglove-sdk 0.30 serves (foxglove.websocket.v1 before)
OP_MESSAGE_DATA = 1
OP_TIME = 2


class Client:
    """A minimal Foxglove WebSocket client: server info, advertisements, subscribe, message data, time."""

    def __init__(self, port: int) -> None:
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            ws_client.connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL], open_timeout=10)
        )
        self.server_info: dict[str, Any] | None = None
        self.channels: dict[int, dict[str, Any]] = {}  # channel id -> advertisement
        self.messages: list[tuple[str, int, bytes]] = []  # (topic, log_time, data) in arrival order
        self.times: list[int] = []
        self._subscribed: dict[int, int] = {}  # subscription id -> channel id
        self.retries = 0

    def poll(self, seconds: float, *, subscribe: bool = True, until: Any = None) -> None:
        """Receive for up to `seconds`, subscribing to every channel advertised; stop early when until() holds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until is not None and until()):
            try:
                frame = self.ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            if isinstance(frame, str):
                message = json.loads(frame)
                if message["op"] == "serverInfo":
                    self.server_info = message
                elif message["op"] == "status" and message["message"].startswith("Unknown channel ID: "):
                    # foxglove-sdk 0.30 can send an advertisement a moment before it accepts
                    # subscriptions to that channel; a subscription in that gap is refused: again.
                    channel_id = int(message["message"].rsplit(" ", 1)[1])
                    if channel_id in self.channels and self.retries < 20:
                        self.retries += 1
                        time.sleep(0.01)
                        self.subscribe(channel_id)
                elif message["op"] == "advertise":
                    for channel in message["channels"]:
                        self.channels[channel["id"]] = channel
                        if subscribe:
                            self.subscribe(channel["id"])
            elif frame[0] == OP_MESSAGE_DATA:
                subscription, log_time = struct.unpack_from("<IQ", frame, 1)
                topic = self.channels[self._subscribed[subscription]]["topic"]
                self.messages.append((topic, log_time, bytes(frame[13:])))
            elif frame[0] == OP_TIME:
                self.times.append(struct.unpack_from("<Q", frame, 1)[0])

    def subscribe(self, channel_id: int) -> None:
        self._subscribed[channel_id] = channel_id
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": channel_id, "channelId": channel_id}]}))

    def topic_messages(self, topic: str) -> list[tuple[int, Any]]:
        return [(t, json.loads(d)) for name, t, d in self.messages if name == topic]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def bridge(mcl_bus: str) -> Iterator[FoxgloveBridge]:
    """A started bridge on the test's private bus, on a free loopback port."""
    with FoxgloveBridge(BridgeOptions(bus=mcl_bus, port=0)) as started:
        yield started


@pytest.fixture
def client(bridge: FoxgloveBridge) -> Iterator[Client]:
    c = Client(bridge.port)
    try:
        yield c
    finally:
        c.close()


@pytest.mark.slow
def test_client_sees_a_running_replay_in_order_with_content_and_log_times(
    bridge: FoxgloveBridge, client: Client, mcl_bus: str, sample_logs: Path
) -> None:
    """Server info, one advertised channel per topic with its JSON schema, then the replay's messages in order."""
    client.poll(5, until=lambda: client.server_info is not None)
    assert client.server_info is not None and "time" in client.server_info["capabilities"]
    assert client.ws.subprotocol == SUBPROTOCOL
    with mcl.open_log(sample_logs / "vehicle", end=2.0) as log:
        origin = log.origin_ns or 0
        records = list(log)
    # One message per topic first, so the channels exist and the client subscribes
    # before the replay starts: then every replayed message must arrive.
    # The SDK reports a subscription (on_subscribe) a moment before its sink takes messages:
    # publish them again until every topic's message has reached the client.
    firsts = {r.topic: r.payload for r in reversed(records)}
    published = 0
    with Publisher(mcl_bus) as publisher:
        assert publisher.wait_for_subscribers(1, timeout=10)
        for _ in range(100):
            for topic, payload in firsts.items():
                publisher.publish(topic, payload)
                published += 1
            client.poll(0.2, until=lambda: len({name for name, _, _ in client.messages}) == 3)
            if len({name for name, _, _ in client.messages}) == 3:
                break
    assert bridge.status().subscriptions == 3
    client.poll(0.5)
    client.messages.clear()
    with mcl.Replay(sample_logs / "vehicle", speed=2.0, bus=mcl_bus, end=2.0) as replay:
        replay.start()
        client.poll(30, until=lambda: len(client.messages) >= len(records))
        assert replay.wait(timeout=30)
        client.poll(0.5)
    advertised = {c["topic"]: c for c in client.channels.values()}
    assert set(advertised) == {"imu", "gps", "camera/front"}
    for channel in advertised.values():
        assert channel["encoding"] == "json" and channel["schemaEncoding"] == "jsonschema"
        schema = json.loads(channel["schema"])
        assert schema["type"] == "object" and "timestamp" in schema["properties"]
    gps_schema = json.loads(advertised["gps"]["schema"])
    assert gps_schema["properties"]["covariance"]["type"] == "object"  # a matrix: {shape, data}, not an array of arrays
    for topic in advertised:
        expected = [(origin + r.elapsed_ns, to_json_value(unpack(r.payload))) for r in records if r.topic == topic]
        got = client.topic_messages(topic)
        assert [value for _, value in got] == [value for _, value in expected], topic  # all, in order, same content
        for (log_time, _), (want, _) in zip(got, expected):
            assert abs(log_time - want) < 100_000_000, (topic, log_time - want)  # log time, not today's clock
    # the timeline followed the replay: times inside the log's first two seconds
    replay_times = [t for t in client.times if origin <= t <= origin + 3 * 10**9]
    assert len(replay_times) >= 5
    status = bridge.status()
    assert status.received == len(records) + published and status.bus_lost == 0 and status.dropped_total == 0


@pytest.mark.slow
def test_timeline_pauses_and_seeks_with_the_replay(bridge: FoxgloveBridge, client: Client, mcl_bus: str, sample_logs: Path) -> None:
    """Pause holds the broadcast time still; a seek moves it to the new log position."""
    with mcl.open_log(sample_logs / "vehicle") as log:
        origin = log.origin_ns or 0
    with mcl.Replay(sample_logs / "vehicle", speed=1.0, bus=mcl_bus) as replay:
        replay.start()
        client.poll(10, until=lambda: any(t > origin + 500_000_000 for t in client.times))
        replay.pause()
        replay.seek(7.0)
        target = origin + 7 * 10**9
        client.poll(10, until=lambda: any(abs(t - target) < 50_000_000 for t in client.times))
        client.times.clear()
        client.poll(10, until=lambda: len(client.times) >= 5)  # broadcast every 0.1 s, held still
        held = client.times[-5:]
        assert len(held) >= 3 and len(set(held)) == 1, held
        assert abs(held[0] - target) < 50_000_000
        replay.start()
        client.times.clear()
        client.poll(10, until=lambda: bool(client.times) and client.times[-1] > held[0] + 300_000_000)
        assert client.times[-1] > held[0] + 300_000_000


@pytest.mark.slow
def test_clients_coming_and_going_never_disturb_the_bus(bridge: FoxgloveBridge, mcl_bus: str) -> None:
    """Clients that connect, subscribe and vanish mid-stream: the bridge still takes every bus message, none lost."""
    total = 3000
    with Publisher(mcl_bus) as publisher:
        assert publisher.wait_for_subscribers(1, timeout=10)
        for i in range(total):
            publisher.publish("fast", encode({"name": "Tick", "timestamp": 0.0, "i": i}))
            if i % 100 == 0:
                c = Client(bridge.port)
                c.poll(0.05)
                c.ws.close_socket() if hasattr(c.ws, "close_socket") else c.ws.socket.close()  # vanish, no close frame
            if i % 50 == 0:
                time.sleep(0.002)
        wait_until(lambda: bridge.status().received >= total, 10, 0.05)
    status = bridge.status()
    assert status.received == total and status.bus_lost == 0


@pytest.mark.slow
def test_slow_client_costs_bounded_memory_and_drops_are_counted(mcl_bus: str) -> None:
    """A client that never reads, and a send side slower than the bus: queues stay bounded, drops counted per topic."""
    payload = encode({"name": "Blob", "timestamp": 0.0, "data": b"x" * 20_000})
    options = BridgeOptions(bus=mcl_bus, port=0, queue=20, backlog=16)
    with FoxgloveBridge(options) as bridge, Publisher(mcl_bus) as publisher:
        assert publisher.wait_for_subscribers(1, timeout=10)
        slow = Client(bridge.port)  # subscribes, then never reads again
        publisher.publish("blob", payload)
        # It reads until its subscription holds: foxglove-sdk 0.30 may refuse a subscription sent right
        # after the advertisement ("Unknown channel ID"), and the client only retries what it reads.
        slow.poll(20, until=lambda: bool(slow.channels) and bridge.status().subscriptions > 0)
        assert bridge.status().subscriptions > 0, f"the slow client did not subscribe ({slow.retries} retries)"
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
        total = 20_000  # 400 MB of payloads through the bridge
        for i in range(total):
            publisher.publish("blob", payload)
            if i % 200 == 0:
                time.sleep(0.01)  # within the bus's high-water mark: the bus itself loses nothing
        wait_until(lambda: bridge.status().received >= total + 1, 20, 0.05)
        status = bridge.status()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        slow.close()
    assert status.received == total + 1 and status.bus_lost == 0
    assert status.dropped["blob"] > 0 and "dropped" in status.line() and "blob" in status.line()
    assert status.sent + status.dropped["blob"] <= total + 1
    assert (rss_after - rss_before) < 200_000, f"grew by {(rss_after - rss_before) // 1024} MiB"


@pytest.mark.slow
def test_raw_payload_and_empty_topic(bridge: FoxgloveBridge, client: Client, mcl_bus: str) -> None:
    """A payload that is not msgpack arrives as {"base64": ...}; the empty topic is listed as '(empty)'."""
    with Publisher(mcl_bus) as publisher:
        assert publisher.wait_for_subscribers(1, timeout=10)
        for i in range(20):
            publisher.publish("raw", b"\xc1\x00" + bytes([i]))
            publisher.publish("", encode([i, "x"]))
            client.poll(0.05)
        client.poll(5, until=lambda: len(client.topic_messages("raw")) >= 15 and len(client.topic_messages("(empty)")) >= 15)
    raw = client.topic_messages("raw")
    assert raw and all(set(value) == {"base64"} for _, value in raw)
    assert [value["value"][0] for _, value in client.topic_messages("(empty)")] == list(range(20))[-len(client.topic_messages("(empty)")):]
    schemas = {c["topic"]: c["schemaName"] for c in client.channels.values()}
    assert schemas == {"raw": "RawBytes", "(empty)": "RawData"}


@pytest.mark.slow
def test_replay_publishes_its_clock_on_the_bus(mcl_bus: str, sample_logs: Path) -> None:
    """A replay's broadcast worker publishes (log_ns, wall_ns, speed): running, paused (speed 0), after a seek."""
    with mcl.open_log(sample_logs / "vehicle") as log:
        origin = log.origin_ns or 0
    with Subscriber(None, mcl_bus, clock=True) as sub, mcl.Replay(sample_logs / "vehicle", speed=1.0, bus=mcl_bus) as replay:
        replay.start()
        receive(sub, timeout=10, until=lambda _: sub.clocks)
        (log_ns, wall_ns, speed), = sub.clocks.values()
        assert speed == 1.0 and origin <= log_ns <= origin + 10**10 and abs(wall_ns - time.time_ns()) < 5 * 10**9
        replay.pause()
        replay.seek(4.0)
        def clock() -> tuple[int, float]:
            (log_ns, _, speed), = sub.clocks.values()
            return log_ns, speed

        receive(sub, timeout=10, until=lambda _: clock() == (origin + 4 * 10**9, 0.0))
        assert clock() == (origin + 4 * 10**9, 0.0)
    # ordinary subscribers never see it: the plugin's capture, a recorder, ... (kind 2 is skipped)
    assert message_log_time(5, 9, None) == 5 and message_log_time(0, 9, None) == 9
    assert message_log_time(1_500, 1_000, (10_000, 1_000, 2.0)) == 11_000


def test_loopback_detection() -> None:
    """Loopback addresses are recognised; anything else gets the warning."""
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("robot.local")


@pytest.mark.slow
def test_cli_serves_and_stops_cleanly_on_sigterm(mcl_bus: str) -> None:
    """mcl-foxglove prints the URL, a client gets the server info, SIGTERM exits 0 with a summary."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mcl.cli.foxglove import run; sys.argv[0] = 'mcl-foxglove'; run()",
         "--bus", mcl_bus, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("mcl-foxglove: serving ws://127.0.0.1:"), line
        port = int(line.split("ws://127.0.0.1:")[1].split()[0])
        c = Client(port)
        c.poll(5, until=lambda: c.server_info is not None)
        assert c.server_info is not None and c.server_info["name"] == "mcl"
        c.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "stopped;" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_cli_warns_on_a_non_loopback_host_and_errors_in_one_line(mcl_bus: str) -> None:
    """A non-loopback --host is warned about; a host it cannot bind is one error line, exit 1."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from mcl.cli.foxglove import run; sys.argv[0] = 'mcl-foxglove'; run()",
         "--bus", mcl_bus, "--port", "0", "--host", "192.0.2.1"],  # TEST-NET-1: never an address of this machine
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert any("mcl-foxglove: warning: serving on 192.0.2.1" in line for line in lines)
    assert lines[-1].startswith("mcl-foxglove: error: ") and "192.0.2.1" in lines[-1] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_endless_topic_names_are_bounded_by_max_channels(mcl_bus: str) -> None:
    """A publisher of ever new topic names: at most max_channels channels, the rest dropped and counted."""
    from mcl.foxglove import OVER_LIMIT

    with FoxgloveBridge(BridgeOptions(bus=mcl_bus, port=0, max_channels=10)) as bridge, Publisher(mcl_bus) as publisher:
        assert publisher.wait_for_subscribers(1, timeout=10)
        for i in range(300):
            publisher.publish(f"t{i}", encode({"name": "M", "timestamp": 0.0, "i": i}))
        wait_until(lambda: bridge.status().received >= 300, 20, 0.05)
        wait_until(lambda: bridge.status().channels >= 10, 20, 0.05)
        status = bridge.status()
    assert status.received == 300 and status.channels == 10
    assert status.dropped[OVER_LIMIT] == 290 and OVER_LIMIT in status.line()


@pytest.mark.slow
def test_forged_replay_clocks_never_stop_the_bridge(bridge: FoxgloveBridge, client: Client, mcl_bus: str) -> None:
    """Clock messages with speed NaN, -1, 1e308 or log times at the int64 edge: messages still flow, times in u64."""
    with Publisher(mcl_bus) as publisher:
        assert publisher.wait_for_subscribers(1, timeout=10)
        for _ in range(100):  # until the client is subscribed and gets messages
            publisher.publish("t", encode({"name": "M", "timestamp": 0.0, "i": -1}))
            client.poll(0.2, until=lambda: bool(client.messages))
            if client.messages:
                break
        assert client.messages
        for i, (log_ns, speed) in enumerate([(5, math.nan), (5, -1.0), (5, 1e308), ((1 << 63) - 1, 1e6), (-(1 << 63), 2.0)]):
            publisher.publish_time(log_ns, speed)
            publisher.publish("t", encode({"name": "M", "timestamp": 0.0, "i": i}))
        client.poll(10, until=lambda: any(json.loads(d)["i"] == 4 for _, _, d in client.messages))
        status = bridge.status()  # raises what stopped the bridge
    got = [json.loads(d)["i"] for _, _, d in client.messages]
    assert got[-5:] == [0, 1, 2, 3, 4], (got, status)
    assert all(0 <= t < 1 << 64 for _, t, _ in client.messages)
    assert status.received >= 6 and status.dropped_total == 0 and status.line()
    assert message_log_time(7, 9, (5, 0, math.nan)) == 7 and message_log_time(7, 9, (-50, 0, math.inf)) == 0
    assert message_log_time(3 * 10**9, 9, (5, 0, 1e308)) == (1 << 64) - 1 and message_log_time(0, 9, (5, 3 * 10**9, 1e308)) == 0


@pytest.mark.slow
def test_payloads_nested_past_the_recursion_limit_never_stop_the_bridge(bridge: FoxgloveBridge, client: Client, mcl_bus: str) -> None:
    """A map or list nested 1,000 deep (valid msgpack) on the bus: its channel is advertised (raw bytes), the bridge keeps serving."""
    deep = {"map": b"\x82\xa4name\xa4Deep\xa1x" + b"\x81\xa1a" * 1000 + b"\x01",
            "list": b"\x82\xa4name\xa4Deep\xa1x" + b"\x91" * 1000 + b"\x01"}
    with Publisher(mcl_bus) as publisher:
        assert publisher.wait_for_subscribers(1, timeout=10)
        for _ in range(100):
            for topic, payload in deep.items():
                publisher.publish(topic, payload)
            publisher.publish("ok", encode({"name": "M", "timestamp": 0.0}))
            client.poll(0.2, until=lambda: {name for name, _, _ in client.messages} >= {"ok", "map", "list"})
            if {name for name, _, _ in client.messages} >= {"ok", "map", "list"}:
                break
        status = bridge.status()  # raises what stopped the bridge
    assert {name for name, _, _ in client.messages} >= {"ok", "map", "list"}
    # deeper than mcl.message.MAX_DEPTH: not decoded, served as its bytes
    assert {c["topic"]: c["schemaName"] for c in client.channels.values()}["map"] == "RawBytes"
    assert status.received >= 3


@pytest.mark.slow
def test_client_connecting_while_a_replay_runs_gets_schemas_and_the_messages_in_order(
    bridge: FoxgloveBridge, mcl_bus: str, sample_logs: Path
) -> None:
    """Connect mid-replay: server info, the channels already advertised (with schemas), then in-order content."""
    with mcl.open_log(sample_logs / "vehicle") as log:
        records = list(log)
    expected = {t: [to_json_value(unpack(r.payload)) for r in records if r.topic == t] for t in ("imu", "gps", "camera/front")}
    with mcl.Replay(sample_logs / "vehicle", speed=1.0, bus=mcl_bus) as replay:
        replay.start()
        wait_until(lambda: bridge.status().channels >= 3, 30, 0.05)  # the replay is running: every topic seen
        assert bridge.status().channels == 3
        late = Client(bridge.port)
        try:
            late.poll(20, until=lambda: all(len(late.topic_messages(t)) >= 3 for t in expected))
        finally:
            late.close()
        replay.stop()
    assert late.server_info is not None and "time" in late.server_info["capabilities"]
    advertised = {c["topic"]: json.loads(c["schema"]) for c in late.channels.values()}
    assert set(advertised) == set(expected) and all(s["type"] == "object" for s in advertised.values())
    for topic, want in expected.items():
        got = [value for _, value in late.topic_messages(topic)]
        assert len(got) >= 3, topic
        first = want.index(got[0])
        assert got == want[first:first + len(got)], topic  # a contiguous run of the log, in order, same content


def _parse(*argv: str) -> Any:
    from mcl.cli.common import make_parser
    from mcl.cli.foxglove import PROG, add_arguments

    return make_parser(PROG, "", add_arguments).parse_args(list(argv))


def test_cli_topic_options_mean_what_they_mean_elsewhere() -> None:
    """--topics a,b = --topics a b = --topics a --topics b; --topic-prefix and --exclude (repeatable) reach BridgeOptions."""
    from mcl.cli.foxglove import bridge_options

    for argv in (["--topics", "imu,gps"], ["--topics", "imu", "gps"], ["--topics", "imu", "--topics", "gps"]):
        assert bridge_options(_parse(*argv)).topics == ("imu", "gps"), argv
    options = bridge_options(_parse("--topic-prefix", "cam", "--exclude", "rear", "--exclude", "^cam/x", "--bus", "tcp://127.0.0.1:1", "-q"))
    assert (options.topics, options.topic_prefixes, options.exclude, options.bus) == (None, ("cam",), ("rear", "^cam/x"), "tcp://127.0.0.1:1")
    keep = options.topic_filter()
    assert keep is not None and [t for t in ("cam/front", "cam/rear", "cam/x1", "imu") if keep(t)] == ["cam/front"]
    assert bridge_options(_parse()).topic_filter() is None
    with pytest.raises(SystemExit):
        _parse("--exclude", "(")  # a bad regex is a usage error, as in every command
    with pytest.raises(ValueError, match="bad exclude pattern"):
        BridgeOptions(exclude=("(",))


@pytest.mark.slow
def test_excluded_and_unselected_topics_are_not_advertised(mcl_bus: str) -> None:
    """A real bridge from the parsed options of `--topics imu,gps --topic-prefix cam --exclude rear`: only the selected topics become channels."""
    from mcl.cli.foxglove import bridge_options

    options = bridge_options(_parse("--bus", mcl_bus, "--port", "0", "--topics", "imu,gps", "--topic-prefix", "cam", "--exclude", "rear"))
    served = {"imu", "gps", "cam/front", "cam/side"}
    with FoxgloveBridge(options) as bridge, Publisher(mcl_bus) as publisher:
        c = Client(bridge.port)
        try:
            assert publisher.wait_for_subscribers(1, timeout=10)
            for i in range(30):
                for topic in ("imu", "gps", "cam/front", "cam/rear", "cam/side", "imu2", "other"):
                    publisher.publish(topic, encode({"name": "M", "timestamp": 0.0, "i": i}))
                c.poll(0.03)
            c.poll(10, until=lambda: {ch["topic"] for ch in c.channels.values()} >= served
                   and all(len(c.topic_messages(t)) >= 20 for t in served))
            c.poll(0.5)  # what else would have been advertised has been by now
            wait_until(lambda: bridge.status().received >= 30 * len(served), 10, 0.05)
            status = bridge.status()
        finally:
            c.close()
    assert {ch["topic"] for ch in c.channels.values()} == served
    assert all(len(c.topic_messages(t)) >= 20 for t in served)
    assert status.received == 30 * len(served)  # the others are not even counted as received
