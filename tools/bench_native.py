#!/usr/bin/env python3
"""Benchmark the native log format: read and write rates, memory, open + seek time.

Every figure is printed with the raw limit measured in the same run:

- read: records/s through ``mcl.open_log`` (100 B payloads) vs a msgpack
  stream of the same records read with ``msgpack.Unpacker`` (the raw floor);
- write: records/s through ``mcl.LogWriter`` vs ``msgpack.Packer`` writing
  the same records to a file;
- big log (``--size``, default 2 GB, written to a temporary directory and
  deleted afterwards): open + first record at the start and in the middle
  (goal < 0.5 s), peak RSS of a process reading all of it (goal < 150 MB),
  and its read rate vs reading the raw bytes of the files.

Usage: python3 tools/bench_native.py [--records N] [--size 2G] [--dir /tmp]
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

TOPICS = [f"sensor/{i}" for i in range(8)]


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _records(n: int, payload_size: int) -> list[tuple[int, str, bytes]]:
    # Distinct payloads (no caching effects), msgpack maps like real messages.
    filler = os.urandom(payload_size)
    out = []
    for i in range(n):
        body = msgpack.packb({"name": "Bench", "timestamp": i * 1e-3, "data": b""})
        pad = payload_size - len(body) - 2
        payload = msgpack.packb({"name": "Bench", "timestamp": i * 1e-3, "data": filler[: max(pad, 0)]})
        out.append((i * 1_000_000, TOPICS[i % len(TOPICS)], payload))
    return out


def bench_rates(tmp: Path, n: int) -> dict[str, float]:
    recs = _records(min(n, 200_000), 100)
    reps = max(1, n // len(recs))
    total = reps * len(recs)
    size = len(recs[0][2])

    # raw write floor: msgpack.Packer to a file
    raw_path = tmp / "raw.msgpack"
    t0 = time.perf_counter()
    with open(raw_path, "wb") as fp:
        pack = msgpack.Packer().pack
        write = fp.write
        for r in range(reps):
            for t, topic, payload in recs:
                write(pack((t + r, topic, payload)))
    raw_write = total / (time.perf_counter() - t0)

    # native write
    log = tmp / "rates"
    t0 = time.perf_counter()
    with mcl.LogWriter(log, origin_ns=0) as writer:
        w = writer.write
        for r in range(reps):
            shift = r * len(recs) * 1_000_000
            for t, topic, payload in recs:
                w(topic, payload, t + shift)
    native_write = total / (time.perf_counter() - t0)

    # raw read floor: msgpack.Unpacker over the stream
    best_raw = best_native = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        count = 0
        with open(raw_path, "rb") as fp:
            for _obj in msgpack.Unpacker(fp, use_list=False):
                count += 1
        best_raw = max(best_raw, count / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        count = 0
        with mcl.open_log(log) as reader:
            for _rec in reader:
                count += 1
        assert count == total, (count, total)
        best_native = max(best_native, count / (time.perf_counter() - t0))
    return {
        "records": total,
        "payload_bytes": size,
        "raw_read": best_raw,
        "native_read": best_native,
        "raw_write": raw_write,
        "native_write": native_write,
    }


_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import mcl
t_import = time.perf_counter() - t0
path = {path!r}
out = {{"import_s": t_import}}
t0 = time.perf_counter()
with mcl.open_log(path) as reader:
    first = next(iter(reader))
out["open_first_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
with mcl.open_log(path, start={middle!r}) as reader:
    rec = next(iter(reader))
out["open_seek_s"] = time.perf_counter() - t0
out["seek_record_s"] = rec.elapsed_ns / 1e9
if {read_all!r}:
    t0 = time.perf_counter()
    n = 0
    with mcl.open_log(path) as reader:
        for _ in reader:
            n += 1
    out["read_all_s"] = time.perf_counter() - t0
    out["records"] = n
out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def bench_big(tmp: Path, size: int) -> dict[str, float]:
    log = tmp / "big"
    payload = os.urandom(1000)
    n = 0
    t0 = time.perf_counter()
    with mcl.LogWriter(log, origin_ns=time.time_ns()) as writer:
        w = writer.write
        per_record = len(payload) + 14
        while n * per_record < size:
            for k in range(1000):
                w(TOPICS[k % 8], payload, (n + k) * 100_000)
            n += 1000
    write_s = time.perf_counter() - t0
    files = sorted(log.glob("*.mcln"))
    disk = sum(f.stat().st_size for f in files)
    # raw read rate of the same bytes (page cache as warm as for the reader)
    t0 = time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as fp:
            while fp.read(1 << 20):
                pass
    raw_read_s = time.perf_counter() - t0
    middle = n * 100_000 / 2 / 1e9
    code = _CHILD.format(root=str(ROOT), path=str(log), middle=middle, read_all=True)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = json.loads(proc.stdout)
    # a second child for open timings only, after the full read left the cache warm
    code = _CHILD.format(root=str(ROOT), path=str(log), middle=middle, read_all=False)
    baseline = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    return {
        "bytes": disk,
        "records": n,
        "write_s": write_s,
        "raw_read_s": raw_read_s,
        "open_first_s": child["open_first_s"],
        "open_seek_s": child["open_seek_s"],
        "open_seek_warm_s": baseline["open_seek_s"],
        "read_all_s": child["read_all_s"],
        "read_records": child["records"],
        "max_rss_mb": child["max_rss_mb"],
        "rss_without_reading_mb": baseline["max_rss_mb"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000, help="records for the read / write rates")
    parser.add_argument("--size", type=_size, default=2 << 30, help="size of the big log (e.g. 2G, 200M; 0 skips it)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary logs go (deleted at the end)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mcl-bench-native-", dir=args.dir))
    try:
        rates = bench_rates(tmp, args.records)
        print(f"records: {rates['records']:,} of {rates['payload_bytes']} B payloads, 8 topics")
        print(
            f"read : native open_log {rates['native_read'] / 1e6:.2f} M rec/s, msgpack.Unpacker {rates['raw_read'] / 1e6:.2f} M rec/s"
            f"  -> ratio {rates['native_read'] / rates['raw_read']:.2f}  (goal >= 2 M rec/s)"
        )
        print(
            f"write: native LogWriter {rates['native_write'] / 1e6:.2f} M rec/s, msgpack.Packer to file {rates['raw_write'] / 1e6:.2f} M rec/s"
            f"  -> ratio {rates['native_write'] / rates['raw_write']:.2f}  (goal >= 1 M rec/s)"
        )
        shutil.rmtree(tmp / "rates")
        (tmp / "raw.msgpack").unlink()
        if args.size:
            big = bench_big(tmp, args.size)
            gb = big["bytes"] / 1e9
            print(f"big log: {gb:.2f} GB, {big['records']:,} records of 1000 B, written in {big['write_s']:.1f} s ({big['bytes'] / big['write_s'] / 1e6:.0f} MB/s)")
            print(f"  open + first record:              {big['open_first_s'] * 1e3:.1f} ms (goal < 500 ms)")
            print(f"  open + first record at the middle: {big['open_seek_s'] * 1e3:.1f} ms, warm {big['open_seek_warm_s'] * 1e3:.1f} ms (goal < 500 ms)")
            print(
                f"  read all: {big['read_all_s']:.1f} s = {big['bytes'] / big['read_all_s'] / 1e6:.0f} MB/s vs raw file read "
                f"{big['bytes'] / big['raw_read_s'] / 1e6:.0f} MB/s -> ratio {big['raw_read_s'] / big['read_all_s']:.2f}"
            )
            print(f"  peak RSS reading all: {big['max_rss_mb']:.0f} MB (same process without the full read: {big['rss_without_reading_mb']:.0f} MB; goal < 150 MB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
