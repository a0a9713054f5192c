#!/usr/bin/env python3
"""Foxglove bridge throughput and MCAP read rate, on the vehicle sample log's messages.

Bridge: a private bus, a FoxgloveBridge, one WebSocket client subscribed to
the channel and reading; a publisher sends N copies of the vehicle log's imu
messages as fast as the bus takes them (in bursts within its high-water
mark); the bridge's queue and the client's backlog hold all N, so nothing
is dropped and the figure is the rate of the bridge itself. Reported: messages/s the bridge converted to JSON and handed to the
SDK (sent / time until the client received the last one), and what was
dropped. MCAP read: the vehicle log converted to JSON MCAP, read back with
open_log (JSON decoded and re-encoded to msgpack per message).

    python3 tools/bench_foxglove.py [--count 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mcl  # noqa: E402
from mcl.foxglove import BridgeOptions, FoxgloveBridge  # noqa: E402
from mcl.mcap_export import write_mcap  # noqa: E402
from mcl.network import Publisher  # noqa: E402
from mcl.testing import make_private_bus  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs" / "vehicle"


def bench_bridge(count: int) -> None:
    from websockets.sync.client import connect

    with mcl.open_log(SAMPLE, topics=["imu"]) as log:
        payloads = [r.payload for r in log]
    bus = make_private_bus()
    try:
        with FoxgloveBridge(BridgeOptions(bus=str(bus.address), port=0, queue=count, backlog=count + 10)) as bridge, \
                Publisher(str(bus.address)) as publisher, contextlib.ExitStack() as stack:
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{bridge.port}", subprotocols=["foxglove.sdk.v1"]))
            assert publisher.wait_for_subscribers(1, timeout=10)
            publisher.publish("imu", payloads[0])
            received = 0
            deadline = time.monotonic() + 10
            while bridge.status().subscriptions == 0 and time.monotonic() < deadline:
                try:
                    frame = ws.recv(timeout=0.1)
                except TimeoutError:
                    continue
                message = json.loads(frame) if isinstance(frame, str) else {}
                if message.get("op") == "advertise":
                    cid = message["channels"][0]["id"]
                if message.get("op") in ("advertise", "status"):  # status: subscribed too early, again
                    ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": cid}]}))
            start = time.perf_counter()
            for i in range(count):
                publisher.publish("imu", payloads[i % len(payloads)])
                if i % 500 == 499:
                    time.sleep(0.001)
            last = start
            while received < count and time.perf_counter() - start < 60:
                try:
                    frame = ws.recv(timeout=1.0)
                except TimeoutError:
                    break
                if isinstance(frame, bytes) and frame[0] == 1:
                    struct.unpack_from("<IQ", frame, 1)
                    received += 1
                    last = time.perf_counter()
            status = bridge.status()
        elapsed = max(last - start, 1e-9)
        print(f"bridge: {received} of {count} imu messages reached the client in {elapsed:.2f} s: "
              f"{received / elapsed:,.0f} msg/s (dropped {status.dropped_total}, bus lost {status.bus_lost})")
    finally:
        bus.close()


def bench_mcap_read() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "v.mcap"
        write_mcap(SAMPLE, out)
        best = None
        for _ in range(3):
            start = time.perf_counter()
            with mcl.open_log(out) as log:
                n = sum(1 for _ in log)
            took = time.perf_counter() - start
            best = took if best is None else min(best, took)
        assert best is not None
        print(f"mcap read (json -> msgpack): {n} records in {best * 1000:.1f} ms: {n / best:,.0f} records/s (best of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    bench_bridge(args.count)
    bench_mcap_read()


if __name__ == "__main__":
    main()
