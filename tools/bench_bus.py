#!/usr/bin/env python3
"""Bus throughput: mcl publish -> forwarder -> subscribe, as a ratio to raw pyzmq PUB -> SUB.

Both paths run in the same invocation on the same machine: the publisher in
its own process, the subscriber in this one (and, for mcl, the forwarder in a
third process). Raw: a pyzmq PUB sending [topic, payload] straight to a SUB
receiving with recv_multipart. mcl: Publisher.publish -> Forwarder (zmq.proxy)
-> Subscriber.recv_batch. High-water marks are set to the message count so a
subscriber that keeps up loses nothing; losses are reported (they must be 0).
The rate is messages received / (last receive - first receive).

    python3 tools/bench_bus.py [--repeat 3] [--count-small 200000] [--count-large 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq  # noqa: E402


# -- raw pyzmq ------------------------------------------------------------------------------
def _raw_publisher(port_q: mp.Queue, go: mp.Event, done: mp.Event, size: int, count: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    sock.sndhwm = count + 100
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    port_q.put(port)
    while not go.wait(0.01):
        sock.send_multipart([b"warmup", b""])
    payload = b"x" * size
    send = sock.send_multipart
    for _ in range(count):
        send([b"bench", payload])
    deadline = time.monotonic() + 60
    while not done.wait(0.05) and time.monotonic() < deadline:
        sock.send_multipart([b"end", b""])
    sock.close(0)
    ctx.term()


def run_raw(size: int, count: int) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    port_q: mp.Queue = ctx.Queue()
    go = ctx.Event()
    done = ctx.Event()
    proc = ctx.Process(target=_raw_publisher, args=(port_q, go, done, size, count), daemon=True)
    proc.start()
    port = port_q.get(timeout=30)
    zctx = zmq.Context()
    sock = zctx.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = count + 100
    sock.subscribe(b"")
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        while sock.recv_multipart()[0] != b"warmup":
            pass
        go.set()
        received = 0
        first = last = 0.0
        recv = sock.recv_multipart
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:  # the same receive loop as Subscriber.recv_batch: NOBLOCK, poll when empty
                topic = recv(zmq.NOBLOCK)[0]
            except zmq.Again:
                if not sock.poll(2000):
                    break
                continue
            if topic == b"bench":
                if received == 0:
                    first = time.perf_counter()
                received += 1
                last = time.perf_counter()
            elif topic == b"end":
                break
    finally:
        done.set()
        sock.close(0)
        zctx.term()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return received / max(last - first, 1e-9), count - received


# -- mcl ----------------------------------------------------------------------------------------
def _forwarder(addr_q: mp.Queue, stop: mp.Event, hwm: int) -> None:
    from mcl.network import Forwarder

    with Forwarder("tcp://127.0.0.1:0", hwm=hwm) as forwarder:
        addr_q.put(forwarder.address)
        stop.wait(300)


def _mcl_publisher(bus: str, size: int, count: int) -> None:
    from mcl.network import Publisher

    payload = b"x" * size
    with Publisher(bus, hwm=count + 100, close_timeout=60) as pub:
        if not pub.wait_for_subscribers(1, timeout=30):
            raise SystemExit("no subscriber")
        publish = pub.publish
        for _ in range(count):
            publish("bench", payload)


def run_mcl(size: int, count: int) -> tuple[float, int]:
    from mcl.network import Subscriber

    ctx = mp.get_context("spawn")
    addr_q: mp.Queue = ctx.Queue()
    stop = ctx.Event()
    fwd = ctx.Process(target=_forwarder, args=(addr_q, stop, count + 100), daemon=True)
    fwd.start()
    bus = addr_q.get(timeout=30)
    pub = None
    try:
        with Subscriber("bench", bus=bus, hwm=count + 100) as sub:
            pub = ctx.Process(target=_mcl_publisher, args=(bus, size, count), daemon=True)
            pub.start()
            received = 0
            first = last = 0.0
            deadline = time.monotonic() + 120
            while received + sub.lost < count and time.monotonic() < deadline:
                batch = sub.recv_batch(1000, timeout=2.0)
                if not batch:
                    if not pub.is_alive():
                        break
                    continue
                if received == 0:
                    first = time.perf_counter()
                received += len(batch)
                last = time.perf_counter()
            # let the end of stream arrive so tail loss is counted too
            sub.recv(timeout=0.5)
            lost = sub.lost
        pub.join(30)
    finally:
        stop.set()
        fwd.join(10)
        for proc in (pub, fwd):
            if proc is not None and proc.is_alive():
                proc.kill()
    return (received - 1) / max(last - first, 1e-9) if received > 1 else 0.0, max(lost, count - received)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--count-small", type=int, default=200_000, help="messages of 100 B")
    parser.add_argument("--count-large", type=int, default=10_000, help="messages of 64 KiB")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, "
          f"{mp.cpu_count()} cores")
    print(f"{'size':>8} {'raw msg/s':>12} {'raw MB/s':>9} {'mcl msg/s':>12} {'mcl MB/s':>9} {'ratio':>6} "
          f"{'lost raw/mcl':>12}")
    for size, count in ((100, args.count_small), (65536, args.count_large)):
        ratios = []
        for _ in range(args.repeat):
            raw_rate, raw_lost = run_raw(size, count)
            mcl_rate, mcl_lost = run_mcl(size, count)
            ratio = mcl_rate / raw_rate
            ratios.append(ratio)
            print(f"{size:>8} {raw_rate:>12,.0f} {raw_rate * size / 1e6:>9.1f} {mcl_rate:>12,.0f} "
                  f"{mcl_rate * size / 1e6:>9.1f} {ratio:>6.2f} {raw_lost:>6}/{mcl_lost:<5}", flush=True)
        print(f"{size:>8} median ratio {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
