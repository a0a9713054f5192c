#!/usr/bin/env python3
"""Benchmark columnar reading (mcl.tables): batch rate, decode rate, memory.

Every figure is printed with its reference measured in the same run:

- raw batches: records/s of ``LogReader.iter_batches`` over a native log of
  100 B msgpack payloads, vs the record API (``open_log`` iteration) and vs
  ``msgpack.Unpacker`` over a stream of the same (elapsed, topic, payload)
  records (goals: >= 5x and >= 2x);
- decode: records/s of ``mcl.tables.decode(table, type=...)`` of a numeric
  message type (8 number fields) vs ``msgpack.unpackb`` of the same payloads
  into dicts (goal: >= 0.5x);
- memory (``--size``, default 300M; 2G for the issue's case): peak RSS of a
  fresh process reading a log of that size to batches (goal < 200 MB), the
  log written to a temporary directory and deleted afterwards.

Usage: python3 tools/bench_tables.py [--records N] [--size 2G] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mcl  # noqa: E402
import mcl.tables  # noqa: E402
from bench_native import _size  # noqa: E402  (tools/ is on sys.path when this runs as a script)

TOPICS = [f"sensor/{i}" for i in range(8)]


def _payloads(n: int) -> list[bytes]:
    """Distinct ~100 B payloads of a numeric message type (8 number fields)."""
    out = []
    for i in range(n):
        out.append(
            msgpack.packb(
                {
                    "name": "Bench",
                    "timestamp": 1.7e9 + i * 1e-3,
                    "x": i * 0.5,
                    "y": -i * 0.25,
                    "z": 9.81 + i * 1e-6,
                    "speed": 13.5 + (i % 100) * 0.01,
                    "count": i,
                    "flags": i % 7,
                    "quality": 0.5,
                }
            )
        )
    return out


def best(fn, reps: int = 3) -> float:
    """Best rate (items/s) of `fn`, which returns the number of items it handled."""
    rate = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        count = fn()
        rate = max(rate, count / (time.perf_counter() - t0))
    return rate


def bench_rates(tmp: Path, n: int) -> dict[str, float]:
    payloads = _payloads(n)
    log = tmp / "rates"
    with mcl.LogWriter(log, origin_ns=time.time_ns()) as writer:
        for i, p in enumerate(payloads):
            writer.write(TOPICS[i % len(TOPICS)], p, i * 1_000_000)
    stream = tmp / "stream.msgpack"
    with open(stream, "wb") as fp:
        pack = msgpack.Packer().pack
        for i, p in enumerate(payloads):
            fp.write(pack((i * 1_000_000, TOPICS[i % len(TOPICS)], p)))

    def records() -> int:
        count = 0
        with mcl.open_log(log) as reader:
            for _ in reader:
                count += 1
        assert count == n
        return count

    def unpacker() -> int:
        count = 0
        with open(stream, "rb") as fp:
            for _ in msgpack.Unpacker(fp, use_list=False):
                count += 1
        return count

    def batches() -> int:
        with mcl.open_log(log) as reader:
            count = sum(b.num_rows for b in reader.iter_batches())
        assert count == n
        return count

    with mcl.open_log(log) as reader:
        table = reader.to_arrow()

    def decode() -> int:
        out = mcl.tables.decode(table, type="Bench")
        assert out.num_rows == n
        return int(out.num_rows)

    def unpackb() -> int:
        unpack = msgpack.unpackb
        dicts = [unpack(p) for p in payloads]
        return len(dicts)

    out = {"records": n, "payload_bytes": sum(map(len, payloads)) / n}
    for name, fn in (("records", records), ("unpacker", unpacker), ("batches", batches), ("unpackb", unpackb), ("decode", decode)):
        out[f"{name}_rate"] = best(fn)
    return out


_CHILD = r"""
import json, sys, time
def _hwm_mb():
    # VmHWM: peak RSS of this process image (ru_maxrss would keep the parent's peak across exec)
    with open("/proc/self/status") as fp:
        return next(int(l.split()[1]) for l in fp if l.startswith("VmHWM")) / 1024
sys.path.insert(0, {root!r})
import mcl
t0 = time.perf_counter()
rows = 0
nbytes = 0
with mcl.open_log({path!r}) as reader:
    for batch in reader.iter_batches():
        rows += batch.num_rows
        nbytes += batch.nbytes
print(json.dumps({{"rows": rows, "bytes": nbytes, "seconds": time.perf_counter() - t0,
                  "max_rss_mb": _hwm_mb()}}))
"""


def bench_memory(tmp: Path, size: int) -> dict[str, float]:
    log = tmp / "big"
    payload = os.urandom(1000)
    written = 0
    i = 0
    with mcl.LogWriter(log, origin_ns=time.time_ns(), flush_interval_ns=None) as writer:
        w = writer.write
        while written < size:
            w(TOPICS[i % len(TOPICS)], payload, i * 1000)
            written += 1014
            i += 1
    on_disk = sum(p.stat().st_size for p in log.iterdir())
    child = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT), path=str(log))], capture_output=True, text=True, check=True
    )
    result = json.loads(child.stdout)
    result["log_bytes"] = on_disk
    result["records_written"] = i
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records of the rate log (default 1 000 000)")
    parser.add_argument("--size", default="300M", help="size of the memory log (default 300M; the issue's case: 2G)")
    parser.add_argument("--dir", default=None, help="where the temporary logs go (default: the system's)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mcl-bench-tables-", dir=args.dir))
    try:
        r = bench_rates(tmp, args.records)
        print(f"{r['records']} records, {r['payload_bytes']:.0f} B payloads on {len(TOPICS)} topics")
        print(f"record API (open_log):          {r['records_rate'] / 1e6:7.2f} M records/s")
        print(f"msgpack.Unpacker, same records: {r['unpacker_rate'] / 1e6:7.2f} M records/s")
        print(
            f"iter_batches:                   {r['batches_rate'] / 1e6:7.2f} M records/s"
            f" = {r['batches_rate'] / r['records_rate']:.1f}x records (goal 5), {r['batches_rate'] / r['unpacker_rate']:.1f}x Unpacker (goal 2)"
        )
        print(f"msgpack.unpackb to dicts:       {r['unpackb_rate'] / 1e6:7.2f} M payloads/s")
        print(
            f"tables.decode (numeric type):   {r['decode_rate'] / 1e6:7.2f} M records/s"
            f" = {r['decode_rate'] / r['unpackb_rate']:.2f}x unpackb (goal 0.5)"
        )
        shutil.rmtree(tmp / "rates")
        m = bench_memory(tmp, _size(args.size))
        print(
            f"memory: {m['log_bytes'] / 1e9:.2f} GB log, {m['rows']} records read to batches in {m['seconds']:.1f} s"
            f" ({m['log_bytes'] / m['seconds'] / 1e6:.0f} MB/s), peak RSS {m['max_rss_mb']:.0f} MB (goal < 200)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
