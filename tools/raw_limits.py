#!/usr/bin/env python3
"""The raw pyzmq PUB -> SUB limit that the bus, replay and record benchmarks compare against.

One measurement shared by tools/bench_bus.py, tools/bench_replay.py and
tools/bench_record.py, so their ratios mean the same thing: a raw pyzmq PUB in
its own (spawned) process sends [topic, payload] messages of SIZE bytes as
fast as it can over TCP loopback to a raw pyzmq SUB in the calling process
(no high-water mark on either side: nothing is dropped). The SUB receives in
batches of NOBLOCK receives and polls when its queue is empty, like
``mcl.network.Subscriber.recv_batch``; the rate is (messages received - 1) / (time
of the last batch - time of the first batch), as in the mcl benchmarks.

Two styles of the same loop, both real, best-effort Python:

* ``frames`` (the reference): ``send(topic, SNDMORE); send(payload)`` and two
  plain ``recv`` calls per message, integer flags, zero-copy sends for 64 KiB
  and more (as the mcl Publisher does). The fastest raw pyzmq loop we know.
* ``multipart``: ``send_multipart`` / ``recv_multipart(NOBLOCK)``, the
  idiomatic pyzmq calls (each is several times slower per message in pyzmq 27:
  they query RCVMORE and convert enum flags in Python).

    python3 tools/raw_limits.py [--size 100] [--count 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time

import zmq

STYLES = ("frames", "multipart")
_ZERO_COPY_BYTES = 65536


def _publisher(port_q: mp.Queue, go: mp.Event, done: mp.Event, size: int, count: int, style: str) -> None:  # type: ignore[valid-type]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    sock.sndhwm = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    port_q.put(port)  # type: ignore[attr-defined]
    while not go.wait(0.01):  # type: ignore[attr-defined]  # until the SUB's subscription is in place
        sock.send_multipart([b"warmup", b""])
    topic, payload = b"bench", b"x" * size
    if style == "multipart":
        send_multipart = sock.send_multipart
        for _ in range(count):
            send_multipart([topic, payload])
    else:
        send = sock.send
        more = int(zmq.SNDMORE)
        copy = size < _ZERO_COPY_BYTES
        for _ in range(count):
            send(topic, more)
            send(payload, copy=copy)
    deadline = time.monotonic() + 120
    while not done.wait(0.05) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        sock.send_multipart([b"end", b""])
    sock.close(0)
    ctx.term()


def raw_rate(size: int, count: int = 200_000, style: str = "frames", batch: int = 1000) -> tuple[float, int]:
    """(messages per second, messages lost) of raw pyzmq PUB (other process) -> SUB (this one)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    mpx = mp.get_context("spawn")
    port_q, go, done = mpx.Queue(), mpx.Event(), mpx.Event()
    proc = mpx.Process(target=_publisher, args=(port_q, go, done, size, count, style), daemon=True)
    proc.start()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = 0
    sock.subscribe(b"")
    received = 0
    first = last = 0.0
    try:
        sock.connect(f"tcp://127.0.0.1:{port_q.get(timeout=60)}")
        if not sock.poll(30_000):
            raise RuntimeError("raw publisher sent nothing")
        while sock.recv_multipart()[0] != b"warmup":
            pass
        go.set()
        noblock = int(zmq.NOBLOCK)
        recv = sock.recv
        recv_multipart = sock.recv_multipart
        frames = style == "frames"
        ended = False
        deadline = time.monotonic() + 300
        while not ended and time.monotonic() < deadline:
            if not sock.poll(5000):
                break
            n = 0
            while n < batch:  # one batch: what is queued, NOBLOCK
                try:
                    if frames:
                        topic = recv(noblock)
                        recv(noblock)
                    else:
                        topic = recv_multipart(noblock)[0]
                except zmq.Again:
                    break
                if topic == b"bench":
                    n += 1
                elif topic == b"end":
                    ended = True
                    break
            if n:
                last = time.perf_counter()
                if received == 0:
                    first = last
                received += n
    finally:
        done.set()
        sock.close(0)
        ctx.term()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    # The same measure as the mcl benchmarks: (received - 1) / (last batch - first batch).
    return ((received - 1) / (last - first) if last > first else 0.0), count - received


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for style in STYLES:
        rates = []
        for _ in range(args.repeat):
            rate, lost = raw_rate(args.size, args.count, style)
            rates.append(rate)
            print(f"{style:>9} {args.size:>7} B: {rate:>12,.0f} msg/s  lost {lost}", flush=True)
        print(f"{style:>9} median {statistics.median(rates):,.0f} msg/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
