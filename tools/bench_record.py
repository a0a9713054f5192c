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

4. replay round trip (``--replay N``, skips 1-3): ``mcl-replay LOG
   --max-speed`` of a native log of N messages into a live ``mcl-dump
   --count N``, both real processes on the default path (a loopback bus
   given by ``--bus``: mcl-dump hosts its forwarder, default options
   everywhere), ``--runs R`` times; a run has zero loss when mcl-dump
   records all N (it exits by itself) with ``lost 0`` and the log reads
   back N records in order.

Usage: python3 tools/bench_record.py [--seconds 60] [--rate 50000] [--size 100] [--search 5]
       python3 tools/bench_record.py --replay 200000 --runs 10
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
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


def _free_bus() -> str:
    from mcl.network.forwarder import Forwarder

    with Forwarder("tcp://127.0.0.1:0") as fwd:
        return fwd.address


def replay_round_trip(count: int, runs: int, size: int) -> int:
    """mcl-replay --max-speed into mcl-dump --count, `runs` times; prints one line per run; 0 if none lost."""
    import mcl

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    env.pop("MCL_BUS", None)
    failures = 0
    print(f"replay round trip: mcl-replay --max-speed of {count:,} messages ({size} B) into mcl-dump, {runs} runs")
    with tempfile.TemporaryDirectory(prefix="bench_replay_record_") as tmp:
        src = Path(tmp) / "src"
        with mcl.LogWriter(src, "native", origin_ns=0) as writer:
            for i in range(count):
                writer.write(("imu", "gps", "camera")[i % 3], i.to_bytes(8, "little") + b"x" * max(0, size - 8), i * 100_000)
        for run in range(runs):
            bus = _free_bus()
            out = Path(tmp) / f"run{run}"
            dump = subprocess.Popen(
                [sys.executable, "-c", "from mcl.cli.dump import run; run()", "--bus", bus, "-o", str(out),
                 "--count", str(count), "--status-interval", "3600"],
                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
            )
            assert dump.stderr is not None
            lines: list[str] = []
            started = threading.Event()

            def read(stream=dump.stderr, lines=lines, started=started) -> None:  # type: ignore[no-untyped-def]
                for line in stream:
                    lines.append(line.rstrip("\n"))
                    if line.startswith("recording to "):
                        started.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            try:
                if not started.wait(30):
                    raise SystemExit(f"mcl-dump did not start: {lines}")
                t0 = time.perf_counter()
                replay = subprocess.run(
                    [sys.executable, "-c", "from mcl.cli.replay import run; run()", str(src), "--max-speed", "--bus", bus],
                    capture_output=True, text=True, env=env, timeout=600,
                )
                t_replay = time.perf_counter() - t0
                try:
                    dump.wait(120)
                except subprocess.TimeoutExpired:  # it did not get all: stop it, and count
                    dump.send_signal(signal.SIGINT)
                    dump.wait(60)
                t_total = time.perf_counter() - t0
            finally:
                if dump.poll() is None:
                    dump.kill()
                    dump.wait()
            reader.join(10)
            summary = next((line for line in lines if line.startswith("recorded ")), "")
            m = re.search(r": ([\d,]+) messages .* lost ([\d,]+)", summary)
            recorded = int(m.group(1).replace(",", "")) if m else 0
            lost = int(m.group(2).replace(",", "")) if m else -1
            (log_dir,) = out.iterdir()
            with mcl.open_log(log_dir) as log:
                seqs = [int.from_bytes(r.payload[:8], "little") for r in log.iter_records()]
            in_order = seqs == list(range(count))
            ok = replay.returncode == 0 and recorded == count and lost == 0 and in_order
            failures += not ok
            last = replay.stdout.strip().splitlines()[-1] if replay.stdout.strip() else replay.stderr.strip()
            print(f"  run {run + 1}: recorded {recorded:,} of {count:,}, lost {lost:,}, read back {len(seqs):,} "
                  f"{'in order' if in_order else 'NOT in order'}; replay {t_replay:.2f} s ({count / t_replay:,.0f} msg/s), "
                  f"all recorded after {t_total:.2f} s -> {'zero loss' if ok else 'LOSS'} | replay: {last}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    print(f"replay round trip: {runs - failures} of {runs} runs with zero loss")
    return 0 if failures == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sustained run (default 60)")
    parser.add_argument("--rate", type=int, default=50_000, help="rate of the sustained run, msg/s (default 50000)")
    parser.add_argument("--size", type=int, default=100, help="payload bytes (default 100)")
    parser.add_argument("--search", type=float, default=5.0, help="seconds per step of the max-rate search (default 5)")
    parser.add_argument("--no-search", action="store_true", help="skip the max-rate search")
    parser.add_argument("--replay", type=int, metavar="N", help="only the replay round trip, of N messages (e.g. 200000)")
    parser.add_argument("--runs", type=int, default=10, help="runs of the replay round trip (default 10)")
    args = parser.parse_args()
    if args.replay:
        return replay_round_trip(args.replay, args.runs, args.size)

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
