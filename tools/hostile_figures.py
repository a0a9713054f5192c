#!/usr/bin/env python3
"""Figures of docs/reliability.md section 3: hostile files against the mcl on the path.

    python3 tools/hostile_figures.py                       # this tree
    PYTHONPATH=/path/to/old/tree python3 tools/hostile_figures.py   # another version, to compare

Prints one line per figure: read time of an MCL_LOG 1.0 file with a line of
N MiB of NULs and no newline (what a power loss leaves), peak memory of
mcl-cat on a native log holding a 33 KB zstd chunk that claims a 1 GiB
record, and the records one flipped bit in the middle of sample_logs/vehicle
loses. Each case runs in a child process with a time limit, so a hang or a
crash is reported, not suffered.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_NUL_LINE = """
import sys, time, warnings
import mcl
from mcl.log import mcl1
path, mib = sys.argv[1], int(sys.argv[2])
with open(path, "w") as fp:
    fp.write(mcl1.format_header(0, "Thing") + mcl1.format_line(0, "t", mcl.encode({"i": 0})))
with open(path, "ab") as fp:
    for _ in range(mib):
        fp.write(bytes(1 << 20))
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with mcl.open_log(path) as log:
        n = sum(1 for _ in log)
print(f"{time.perf_counter() - t0:.2f} s, {n} record(s)")
"""

_BOMB = """
import io, struct, sys, zlib
from pathlib import Path
import zstandard
import mcl
from mcl.log.native import NativeSource, data_files
from mcl.log.native_layout import CHUNK_HEADER, CHUNK_MAGIC, ChunkTopic, encode_topic_table
log = sys.argv[1]
with mcl.LogWriter(log, origin_ns=0, chunk_size=4000) as writer:
    for i in range(300):
        writer.write("t", mcl.encode({"i": i}), i * 10_000_000)
data = data_files(Path(log))[0]
data.with_suffix(".mcli").unlink()
out = io.BytesIO()
with zstandard.ZstdCompressor(level=1).stream_writer(out, size=1 << 30, closefd=False) as w:
    for _ in range(1024):
        w.write(bytes(1 << 20))
frame = out.getvalue()
raw = (1 << 30) + 14
table = encode_topic_table([ChunkTopic("bomb", [], 1, raw - 14, 0, 0)])
rest = CHUNK_HEADER.pack(CHUNK_MAGIC, 0, zlib.crc32(frame), len(table), len(frame), raw, 1, 1, 0, 0)[8:]
bomb = CHUNK_MAGIC + struct.pack("<I", zlib.crc32(rest + table)) + rest + table + frame
with NativeSource(log) as source:
    second = source._files[0].scan.chunks[1].offset
blob = data.read_bytes()
data.write_bytes(blob[:second] + bomb + blob[second:])
print(f"bomb chunk of {len(bomb)} bytes claiming {raw} raw bytes", file=sys.stderr)
"""

_CAT_PEAK = """
import contextlib, io, resource, sys
from mcl.cli import cat
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
    status = cat.main([sys.argv[1]])
lines = len(out.getvalue().splitlines())
print(f"exit {status}, {lines} records printed, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
"""

_FLIP = """
import shutil, sys, warnings
from pathlib import Path
import mcl
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, dst)
data = sorted(dst.glob("*.mcln"))[0]
blob = bytearray(data.read_bytes())
blob[len(blob) // 2] ^= 0x10
data.write_bytes(bytes(blob))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with mcl.open_log(dst) as log:
        n = sum(1 for _ in log)
print(f"{1400 - n} of 1400 records lost")
"""


def _child(code: str, *args: str, timeout: float) -> str:
    try:
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"HANG (no answer in {timeout:.0f} s)"
    if proc.returncode != 0 and not proc.stdout:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"CRASH (exit {proc.returncode}: {last[:100]})"
    return proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nul-mib", type=int, nargs="+", default=[32, 128], help="sizes of the NUL line (MiB)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a case may take")
    args = parser.parse_args(argv)
    import mcl

    print(f"mcl from {Path(mcl.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        for mib in args.nul_mib:
            result = _child(_NUL_LINE, f"{tmp}/nul_{mib}.log", str(mib), timeout=args.timeout)
            print(f"MCL_LOG 1.0 line of {mib} MiB of NULs without newline: {result}")
        bomb_log = f"{tmp}/bomb"
        made = _child(_BOMB, bomb_log, timeout=args.timeout)
        if made.startswith(("HANG", "CRASH")):
            print(f"zstd bomb log: {made}")
        else:
            print(f"mcl-cat on a 33 KB zstd chunk claiming 1 GiB: {_child(_CAT_PEAK, bomb_log, timeout=args.timeout)}")
        result = _child(_FLIP, str(ROOT / "sample_logs" / "vehicle"), f"{tmp}/vehicle", timeout=args.timeout)
        print(f"sample_logs/vehicle, one bit flipped in the middle: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
