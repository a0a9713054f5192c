#!/usr/bin/env python3
"""Benchmark of mcl-dump: sustained zero-loss recording, the maximum zero-loss rate, CPU and memory.

Runs, on a private bus (a forwarder in this process, free loopback ports):

1. raw limit: tools/raw_limits.py (shared with the bus and replay
   benchmarks): a raw pyzmq PUB process sends [topic, payload] messages of
   SIZE bytes as fast as it can to a raw pyzmq SUB receiving in NOBLOCK
   batches (no high-water mark: nothing dropped), in its two styles (frames:
   the reference; multipart).
2. sustained: an mcl Publisher process publishes RATE msg/s (default
   50 000) of SIZE bytes for SECONDS (default 60) into a real ``mcl-dump``
   process (native format); checks zero loss (recorded == sent, lost == 0),
   samples the recorder's RSS every second and measures its CPU time.
   A rate counts as sustained only if nothing is lost and the recorder is
   at most MAX_LAG_S behind when the publisher stops (so the queues on the
   way, up to 100 000 messages each, do not hide a recorder that is slower).
3. maximum zero-loss rate: the same at increasing rates (SEARCH seconds each)
   until a run loses, then bisection; reported as a ratio to the raw limit.

Usage: python3 tools/bench_record.py [--seconds 60] [--rate 50000] [--size 100] [--search 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_NS = 1_000_000_000


# -- raw pyzmq PUB -> SUB ------------------------------------------------------------------


def raw_rate(size: int, style: str = "frames") -> float:
    """Messages per second of raw pyzmq PUB -> SUB (tools/raw_limits.py, shared with the other benchmarks)."""
    from raw_limits import raw_rate as measure  # tools/ is on sys.path (this script's directory)

    rate, lost = measure(size, 500_000, style)
    if lost:
        print(f"  raw ({style}): {lost} of 500,000 not received")
    return rate


# -- mcl Publisher at a paced rate -----------------------------------------------------------


def _mcl_pub(bus: str, rate: int, seconds: float, size: int, out: mp.Queue) -> None:  # type: ignore[valid-type]
    from mcl.network import Publisher

    payload = b"x" * size
    with Publisher(bus, hwm=100_000, close_timeout=5.0) as pub:
        if not pub.wait_for_subscribers(1, 20):
            out.put((0, 0.0, "no subscriber", 0))  # type: ignore[attr-defined]
            return
        publish = pub.publish
        slot_ns = 1_000_000  # publish in 1 ms slots
        per_slot = rate / 1000
        total = int(rate * seconds)
        sent = 0
        start = time.monotonic_ns()
        owed = 0.0
        next_slot = start
        while sent < total:
            owed += per_slot
            n = min(int(owed), total - sent)
            owed -= n
            for _ in range(n):
                publish("bench", payload)
            sent += n
            next_slot += slot_ns
            delay = next_slot - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / _NS)
        end = time.monotonic_ns()
    out.put((sent, sent / ((end - start) / _NS), "", end))  # type: ignore[attr-defined]


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


MAX_LAG_S = 0.5  # a rate is sustained if the recorder is at most this far behind when the publisher stops
_STATUS = re.compile(r"^[^|]* s \| (?P<n>[\d,]+) msgs \|")
_SUMMARY = re.compile(r"^recorded (?P<path>.+): (?P<n>[\d,]+) messages in .* lost (?P<lost>[\d,]+)$")


def record_run(bus: str, rate: int, seconds: float, size: int, out_dir: Path, sample_rss: bool = False) -> dict[str, object]:
    """mcl-dump recording `rate` msg/s for `seconds`; counts, loss, CPU and RSS of the recorder."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    dump = subprocess.Popen(
        [sys.executable, "-m", "mcl.cli.dump", "--bus", bus, "-o", str(out_dir), "--status-interval", "0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT),
    )
    try:
        assert dump.stderr is not None
        line = dump.stderr.readline()
        if not line.startswith("recording to"):
            raise RuntimeError(f"mcl-dump did not start: {line}{dump.stderr.read()}")
        progress: list[tuple[int, int]] = []  # (monotonic ns when a status line came, messages recorded)
        lines: list[str] = []

        def read_status() -> None:
            for text in dump.stderr:  # type: ignore[union-attr]
                lines.append(text)
                m = _STATUS.match(text)
                if m:
                    progress.append((time.monotonic_ns(), int(m["n"].replace(",", ""))))

        reader = threading.Thread(target=read_status, daemon=True)
        reader.start()
        cpu0 = _proc_cpu_s(dump.pid)
        mpx = mp.get_context("spawn")
        out = mpx.Queue()
        pub = mpx.Process(target=_mcl_pub, args=(bus, rate, seconds, size, out))
        pub.start()
        rss: list[float] = []
        deadline = time.monotonic() + seconds + 60
        while pub.is_alive() and time.monotonic() < deadline:
            if sample_rss:
                rss.append(_proc_rss_mib(dump.pid))
            pub.join(1.0)
        sent, achieved, problem, end_ns = out.get(timeout=30)
        pub.join(10)
        last_n, still = -1, 0
        for _ in range(600):  # until the backlog is recorded, or 1 s without progress, or 60 s
            n = progress[-1][1] if progress else 0
            if n >= sent:
                break
            still = still + 1 if n == last_n else 0
            if still >= 10:
                break
            last_n = n
            time.sleep(0.1)
        cpu = _proc_cpu_s(dump.pid) - cpu0
        dump.send_signal(signal.SIGINT)
        dump.wait(60)
        reader.join(10)
        rest = "".join(lines)
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    recorded = lost = -1
    for text in rest.splitlines():
        m = _SUMMARY.match(text)
        if m:
            recorded = int(m["n"].replace(",", ""))
            lost = int(m["lost"].replace(",", ""))
    # Backlog: how long after the last publish the recorder had recorded everything.
    done = [t for t, n in progress if n >= sent]
    lag = (done[0] - end_ns) / _NS if done and end_ns else float("inf")
    return {
        "rate": rate, "sent": sent, "achieved": achieved, "recorded": recorded, "lost": lost,
        "cpu_s": cpu, "rss": rss, "problem": problem, "lag": lag,
        "ok": not problem and recorded == sent and lost == 0 and achieved >= 0.97 * rate and lag <= MAX_LAG_S,
    }


def _show(r: dict[str, object]) -> str:
    rss = r["rss"]
    extra = f", RSS {rss[0]:.0f} -> {max(rss):.0f} -> {rss[-1]:.0f} MiB" if rss else ""  # type: ignore[index]
    per_msg = r["cpu_s"] / max(1, r["recorded"]) * 1e6  # type: ignore[operator]
    return (
        f"rate {r['rate']:>7,} msg/s (publisher reached {r['achieved']:,.0f}): sent {r['sent']:,}, "
        f"recorded {r['recorded']:,}, lost {r['lost']:,}, behind by {r['lag']:.2f} s at the end, "
        f"recorder CPU {per_msg:.2f} us/msg{extra} -> {'sustained, zero loss' if r['ok'] else 'NOT sustained'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sustained run (default 60)")
    parser.add_argument("--rate", type=int, default=50_000, help="rate of the sustained run, msg/s (default 50000)")
    parser.add_argument("--size", type=int, default=100, help="payload bytes (default 100)")
    parser.add_argument("--search", type=float, default=5.0, help="seconds per step of the max-rate search (default 5)")
    parser.add_argument("--no-search", action="store_true", help="skip the max-rate search")
    args = parser.parse_args()

    from mcl.network.forwarder import Forwarder

    print(f"mcl-dump benchmark: {args.size} B payloads, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    raw = raw_rate(args.size)
    raw_mp = raw_rate(args.size, "multipart")
    print(f"raw pyzmq PUB->SUB (tools/raw_limits.py): {raw:,.0f} msg/s (frames), {raw_mp:,.0f} msg/s (multipart)")
    with tempfile.TemporaryDirectory(prefix="bench_record_") as tmp, Forwarder("tcp://127.0.0.1:0", hwm=100_000) as fwd:
        bus = fwd.address
        run = record_run(bus, args.rate, args.seconds, args.size, Path(tmp) / "sustained", sample_rss=True)
        print(f"sustained {args.seconds:g} s: " + _show(run))
        if args.no_search:
            return 0
        best = 0
        lo, hi = 0, None
        rate = max(args.rate, 25_000)
        for step in range(9):
            r = record_run(bus, rate, args.search, args.size, Path(tmp) / f"search{step}")
            print("  search: " + _show(r))
            if r["ok"]:
                best = lo = rate
                nxt = rate * 2 if hi is None else (lo + hi) // 2
            else:
                hi = rate
                nxt = (lo + hi) // 2
            if hi is not None and hi - lo <= max(5_000, hi // 20):
                break
            rate = int(nxt)
        again = raw_rate(args.size)
        again_mp = raw_rate(args.size, "multipart")
        print(f"raw pyzmq PUB->SUB again: {again:,.0f} msg/s (frames), {again_mp:,.0f} msg/s (multipart); "
              "the ratios use the higher of the two")
        raw, raw_mp = max(raw, again), max(raw_mp, again_mp)
        print(f"max zero-loss rate: {best:,} msg/s = {best / raw:.2f} x raw frames ({raw:,.0f} msg/s), "
              f"{best / raw_mp:.2f} x raw multipart ({raw_mp:,.0f} msg/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
