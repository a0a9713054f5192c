#!/usr/bin/env python3
"""Bus throughput: mcl publish -> forwarder -> subscribe, as a ratio to raw pyzmq PUB -> SUB.

Both paths run in the same invocation on the same machine: the publisher in
its own process, the subscriber in this one (and, for mcl, the forwarder in a
third process). Raw: tools/raw_limits.py, a pyzmq PUB sending [topic, payload]
straight to a SUB receiving in NOBLOCK batches, in its two styles ("frames":
send/recv per frame, the reference; "multipart": send_multipart /
recv_multipart). mcl: Publisher.publish -> Forwarder (zmq.proxy) ->
Subscriber.recv_batch. High-water marks are set to the message count so a
subscriber that keeps up loses nothing; losses are reported (they must be 0).
The rate is (messages received - 1) / (last batch - first batch).

    python3 tools/bench_bus.py [--repeat 3] [--count-small 200000] [--count-large 10000]

``--subscriber-cpu`` measures only the subscriber's receive path, less
sensitive to a loaded machine than rates: 200 000 messages of 100 B are
queued (private forwarder in this process, unlimited HWMs), then drained
with ``recv_batch``; the process CPU time per message is reported (the
minimum of --repeat runs).
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

from raw_limits import raw_rate  # noqa: E402  (tools/ is on sys.path: this script's directory)


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


def subscriber_cpu(count: int, repeat: int) -> float:
    """Process CPU microseconds per message to receive `count` queued messages (the minimum of `repeat` runs)."""
    from mcl.network import Forwarder, Publisher, Subscriber

    runs = []
    with Forwarder("tcp://127.0.0.1:0", hwm=0) as forwarder:
        for _ in range(repeat):
            with Subscriber("t", bus=forwarder.address, hwm=0) as sub, Publisher(forwarder.address, hwm=0, close_timeout=0) as pub:
                if not pub.wait_for_subscribers(1, 10):
                    raise SystemExit("no subscriber")
                for _ in range(count):
                    pub.publish("t", b"x" * 100)
                first = sub.recv(timeout=10)  # the queue is filled in the background: wait for it to settle
                time.sleep(1.0)
                got = 0 if first is None else 1
                start = time.process_time()
                while got < count:
                    batch = sub.recv_batch(1000, timeout=2.0)
                    if not batch:
                        break
                    got += len(batch)
                runs.append((time.process_time() - start) / max(1, got - 1) * 1e6)
    print("subscriber CPU per message (us): " + ", ".join(f"{r:.2f}" for r in runs) + f"; min {min(runs):.2f}")
    return min(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subscriber-cpu", action="store_true", help="only the subscriber's CPU per message (see above)")
    parser.add_argument("--count-small", type=int, default=200_000, help="messages of 100 B")
    parser.add_argument("--count-large", type=int, default=10_000, help="messages of 64 KiB")
    args = parser.parse_args(argv)
    if args.subscriber_cpu:
        subscriber_cpu(args.count_small, args.repeat)
        return 0
    print(f"python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, "
          f"{mp.cpu_count()} cores")
    print(f"{'size':>8} {'raw msg/s':>12} {'raw mp msg/s':>12} {'mcl msg/s':>12} {'mcl MB/s':>9} "
          f"{'/raw':>5} {'/raw mp':>7} {'lost raw/mp/mcl':>15}")
    for size, count in ((100, args.count_small), (65536, args.count_large)):
        ratios, ratios_mp = [], []
        for _ in range(args.repeat):
            raw, raw_lost = raw_rate(size, count, "frames")
            raw_mp, raw_mp_lost = raw_rate(size, count, "multipart")
            mcl_rate, mcl_lost = run_mcl(size, count)
            ratios.append(mcl_rate / raw)
            ratios_mp.append(mcl_rate / raw_mp)
            print(f"{size:>8} {raw:>12,.0f} {raw_mp:>12,.0f} {mcl_rate:>12,.0f} {mcl_rate * size / 1e6:>9.1f} "
                  f"{ratios[-1]:>5.2f} {ratios_mp[-1]:>7.2f} {raw_lost:>5}/{raw_mp_lost}/{mcl_lost}", flush=True)
        print(f"{size:>8} median ratio to raw (frames) {statistics.median(ratios):.2f}, "
              f"to raw (multipart) {statistics.median(ratios_mp):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
