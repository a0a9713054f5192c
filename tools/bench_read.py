#!/usr/bin/env python3
"""MCL_LOG 1.0 read rate: records/s through mcl.open_log vs iterating the file's lines, same run.

Generates an N-record MCL_LOG 1.0 log (default 1 000 000 records, payloads
like the original dataset's: a 56-byte msgpack message, one topic) in a
temporary directory, then times:

- raw:      ``for line in open(path)`` (the floor any reader of this text format pays)
- open_log: ``for record in mcl.open_log(path)`` (parse time, topic, hex payload)
- filtered: ``open_log(path, topics=[...], start=..., end=...)`` over half the log

Each is the best of --repeat runs. Target: open_log >= 1 M records/s.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mcl  # noqa: E402
from mcl.message import encode  # noqa: E402

NS = 1_000_000_000


def make_log(path: Path, count: int) -> Path:
    """An MCL_LOG 1.0 log of `count` records, 1 ms apart, on topics 'imu' and 'gps'."""
    with mcl.LogWriter(path, format="mcl1", origin_ns=0) as writer:
        for i in range(count):
            t = i / 1000
            payload = encode({"timestamp": t, "data": t, "name": "UnitTestMessageA"})
            writer.write("imu" if i % 10 else "gps", payload, i * 1_000_000)
    return path


def best_of(repeat: int, fn: object) -> tuple[float, int]:
    """(best seconds, count) of `repeat` runs of fn() -> count."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best, count


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the generated log")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is kept")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        log = make_log(Path(tmp) / "log", args.records)
        (data_file,) = log.iterdir()
        print(f"generated {args.records} records ({data_file.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")

        def raw() -> int:
            n = 0
            with open(data_file, encoding="latin-1", newline="") as fp:
                for _ in fp:
                    n += 1
            return n

        def through_open_log() -> int:
            n = 0
            with mcl.open_log(log) as reader:
                for _ in reader:
                    n += 1
            return n

        half = args.records / 2000

        def filtered() -> int:
            n = 0
            with mcl.open_log(log, topics=["imu"], start=half / 2, end=half * 1.5) as reader:
                for _ in reader:
                    n += 1
            return n

        raw_s, raw_n = best_of(args.repeat, raw)
        log_s, log_n = best_of(args.repeat, through_open_log)
        flt_s, _ = best_of(args.repeat, filtered)
    assert log_n == args.records, (log_n, args.records)
    raw_rate, log_rate = raw_n / raw_s, log_n / log_s
    flt_rate = args.records / flt_s  # records scanned per second
    print(f"python {platform.python_version()} on {platform.machine()}, {args.repeat} runs, best kept")
    print(f"raw line iteration : {raw_rate / 1e6:6.2f} M lines/s")
    print(f"open_log           : {log_rate / 1e6:6.2f} M records/s  ({log_rate / raw_rate:.2f} x raw)")
    print(f"open_log filtered  : {flt_rate / 1e6:6.2f} M records scanned/s  (topic + window on half the log)")
    print(f"target >= 1 M records/s: {'met' if log_rate >= 1e6 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
