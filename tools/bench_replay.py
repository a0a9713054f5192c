"""Replay benchmark: timing precision at 1 kHz, as-fast-as-possible rate vs raw pyzmq, memory.

    python3 tools/bench_replay.py [--messages 5000] [--fast-messages 200000] [--rss-mb 256]

1. timing: a 1 kHz log (5000 messages of 100 B) replayed at speed 1 to a
   subscriber in a process of its own (which also hosts the private bus).
   Error of each arrival against the ideal schedule anchored at the first
   arrival: p50 / p99 / max, end drift; CPU % of the two replay workers.
2. as fast as possible: messages per second delivered (and lost) through the
   bus, as a ratio to raw pyzmq PUB -> SUB (tools/raw_limits.py, both styles)
   and to a bare mcl Publisher -> forwarder -> Subscriber, in the same run.
3. memory: peak RSS of the replay processes while replaying a large log.
"""

from __future__ import annotations

import argparse
import gc
import math
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import mcl
from mcl.network import Forwarder, Subscriber
from raw_limits import raw_rate  # tools/raw_limits.py (this script's directory is on sys.path)

MS = 1_000_000
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def make_log(path: Path, count: int, step_ns: int, size: int) -> Path:
    payload = bytes(size)
    with mcl.LogWriter(path, format="native") as writer:
        for i in range(count):
            writer.write("bench/data", payload, i * step_ns)
    return path


def _timing_subscriber(count: int, conn: mp.connection.Connection) -> None:  # type: ignore[name-defined]
    """The subscriber process: hosts a private bus, sends its address, returns arrival times."""
    with Forwarder("tcp://127.0.0.1:0") as bus, Subscriber(bus=bus.address) as sub:
        # The measuring process should not add its own pauses: keep the
        # collector off the objects of the imports (as mcl's workers do).
        gc.collect()
        gc.freeze()
        conn.send(bus.address)
        arrivals: list[int] = []
        deadline = time.monotonic() + count / 1000 + 60
        while len(arrivals) < count and time.monotonic() < deadline:
            if sub.recv(timeout=1.0) is not None:
                arrivals.append(time.monotonic_ns())  # CLOCK_MONOTONIC: one clock for every process
        conn.send((arrivals, sub.lost))


def bench_timing(tmp: Path, count: int) -> dict[str, float]:
    log = make_log(tmp / "timing", count, 1 * MS, 100)
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    # The subscriber (with the bus it hosts) is a process of its own, as a
    # program receiving a replay would be: nothing of the replay runs there.
    receiver = ctx.Process(target=_timing_subscriber, args=(count, there), name="bench subscriber")
    receiver.start()
    try:
        if not here.poll(30):
            raise RuntimeError("the subscriber process did not start")
        address = here.recv()
        with mcl.Replay(log, speed=1.0, bus=address, wait_for_subscribers=1) as replay:
            replay.pause()
            pids = list(replay.worker_pids.values())
            cpu0 = sum(cpu_seconds(p) for p in pids)
            wall0 = time.monotonic()
            replay.start()
            replay.wait(count / 1000 + 30)
            wall = time.monotonic() - wall0
            cpu = sum(cpu_seconds(p) for p in pids) - cpu0
            lateness = replay.status().lateness
        if not here.poll(60):
            raise RuntimeError("the subscriber process did not report")
        arrivals, lost = here.recv()
    finally:
        receiver.join(10)
        if receiver.is_alive():
            receiver.kill()
            receiver.join()
    errors = [abs((t - arrivals[0]) - i * MS) for i, t in enumerate(arrivals)]
    errors_sorted = sorted(errors)
    n = len(errors_sorted)
    # The first arrival alone may be delayed by a load spike; the same errors
    # anchored at the median offset show the spread around the schedule.
    offsets = sorted((t - arrivals[0]) - i * MS for i, t in enumerate(arrivals))
    median = offsets[n // 2]
    robust = sorted(abs(o - median) for o in offsets)
    return {
        "robust_p99_ms": robust[math.ceil(0.99 * n) - 1] / MS,
        "robust_max_ms": robust[-1] / MS,
        "received": len(arrivals),
        "lost": lost,
        "p50_ms": errors_sorted[math.ceil(0.5 * n) - 1] / MS,
        "p99_ms": errors_sorted[math.ceil(0.99 * n) - 1] / MS,
        "max_ms": errors_sorted[-1] / MS,
        "mean_ms": statistics.fmean(errors) / MS,
        "end_drift_ms": ((arrivals[-1] - arrivals[0]) - (n - 1) * MS) / MS,
        "cpu_percent": 100.0 * cpu / wall,
        "publish_late_p99_ms": lateness.get("p99_ns", 0) / MS,
        "publish_late_max_ms": lateness.get("max_ns", 0) / MS,
    }


def _mcl_publisher(bus: str, count: int, size: int) -> None:
    from mcl.network import Publisher

    with Publisher(bus, hwm=0, close_timeout=0) as pub:
        pub.wait_for_subscribers(1, 30)
        payload = bytes(size)
        for _ in range(count):
            pub.publish("bench/data", payload)


def receive_all(sub: Subscriber, count: int) -> tuple[int, float]:
    """(messages received, rate from the first to the last), stopping after 5 s of silence."""
    got = 0
    first = last = 0.0
    while got < count:
        batch = sub.recv_batch(1000, timeout=5.0)
        if not batch:
            break
        last = time.perf_counter()
        if got == 0:
            first = last
        got += len(batch)
    return got, ((got - 1) / (last - first) if got > 1 else 0.0)


def bench_mcl_bus(count: int, size: int) -> float:
    """Messages per second of a bare mcl Publisher process -> forwarder -> mcl Subscriber."""
    with Forwarder("tcp://127.0.0.1:0", hwm=0) as bus, Subscriber(bus=bus.address, hwm=0) as sub:
        proc = mp.get_context("spawn").Process(target=_mcl_publisher, args=(bus.address, count, size))
        proc.start()
        try:
            _, rate = receive_all(sub, count)
        finally:
            proc.join(30)
    return rate


def bench_fast(tmp: Path, count: int) -> dict[str, float]:
    log = make_log(tmp / "fast", count, 10_000, 100)
    raw, _ = raw_rate(100, count, "frames")
    raw_mp, _ = raw_rate(100, count, "multipart")
    bus_rate = bench_mcl_bus(count, 100)
    with Forwarder("tcp://127.0.0.1:0", hwm=0) as bus, Subscriber(bus=bus.address, hwm=0) as sub:
        with mcl.Replay(log, speed=math.inf, bus=bus.address, wait_for_subscribers=1, hwm=0) as replay:
            replay.start()
            got, rate = receive_all(sub, count)
            replay.wait(30)
        lost = sub.lost
    return {
        "received": got,
        "lost": lost + (count - got),
        "rate": rate,
        "raw_rate": raw,
        "ratio": rate / raw,
        "raw_mp_rate": raw_mp,
        "mp_ratio": rate / raw_mp,
        "bus_rate": bus_rate,
        "bus_ratio": rate / bus_rate,
    }


def bench_memory(tmp: Path, megabytes: int) -> dict[str, float]:
    size = 4096
    count = megabytes * 1024 * 1024 // size
    log = make_log(tmp / "big", count, 100_000, size)
    on_disk = sum(f.stat().st_size for f in (tmp / "big").rglob("*") if f.is_file())
    peak = {"buffer": 0, "broadcast": 0, "parent": 0}
    with mcl.Replay(log, speed=math.inf, publish=False) as replay:
        replay.start()
        pids = replay.worker_pids
        began = time.monotonic()
        while True:
            for name, pid in pids.items():
                peak[name] = max(peak[name], rss_bytes(pid))
            peak["parent"] = max(peak["parent"], rss_bytes(os.getpid()))
            if replay.wait(0.1):
                break
        elapsed = time.monotonic() - began
    return {
        "log_mb": on_disk / 2**20,
        "seconds": elapsed,
        "rate_mb_s": on_disk / 2**20 / elapsed,
        **{f"rss_{k}_mb": v / 2**20 for k, v in peak.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--fast-messages", type=int, default=200_000)
    parser.add_argument("--rss-mb", type=int, default=256)
    parser.add_argument("--fast-only", action="store_true", help="only the as-fast-as-possible part")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_replay_"))
    try:
        if args.fast_only:
            f = bench_fast(tmp, args.fast_messages)
            print(f"fast    {f['rate']:,.0f} msg/s lost {f['lost']}; /raw frames {f['ratio']:.2f}, "
                  f"/raw multipart {f['mp_ratio']:.2f}, /bare mcl bus {f['bus_ratio']:.2f} "
                  f"(raw {f['raw_rate']:,.0f}, {f['raw_mp_rate']:,.0f}; bus {f['bus_rate']:,.0f})")
            return
        t = bench_timing(tmp, args.messages)
        print(f"timing  1 kHz x {args.messages}, 100 B, speed 1: received {t['received']} lost {t['lost']}")
        print(f"        |error| p50 {t['p50_ms']:.3f} ms  p99 {t['p99_ms']:.3f} ms  max {t['max_ms']:.3f} ms  "
              f"mean {t['mean_ms']:.3f} ms  end drift {t['end_drift_ms']:+.3f} ms")
        print(f"        anchored at the median offset instead: p99 {t['robust_p99_ms']:.3f} ms  max {t['robust_max_ms']:.3f} ms")
        print(f"        replay CPU {t['cpu_percent']:.1f} % of one core (buffer + broadcast); "
              f"publish lateness p99 {t['publish_late_p99_ms']:.3f} ms max {t['publish_late_max_ms']:.3f} ms")
        f = bench_fast(tmp, args.fast_messages)
        print(f"fast    {args.fast_messages} x 100 B as fast as possible: {f['rate']:,.0f} msg/s, lost {f['lost']}; "
              f"raw pyzmq PUB->SUB {f['raw_rate']:,.0f} msg/s (frames; ratio {f['ratio']:.2f}), "
              f"{f['raw_mp_rate']:,.0f} msg/s (multipart; ratio {f['mp_ratio']:.2f})")
        print(f"        bare mcl Publisher -> forwarder -> mcl Subscriber {f['bus_rate']:,.0f} msg/s; "
              f"replay / bare mcl bus {f['bus_ratio']:.2f}")
        m = bench_memory(tmp, args.rss_mb)
        print(f"memory  {m['log_mb']:.0f} MB log in {m['seconds']:.1f} s ({m['rate_mb_s']:.0f} MB/s): peak RSS "
              f"buffer {m['rss_buffer_mb']:.0f} MB, broadcast {m['rss_broadcast_mb']:.0f} MB, parent {m['rss_parent_mb']:.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
