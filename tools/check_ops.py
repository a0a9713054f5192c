#!/usr/bin/env python3
"""Reliability figures of docs/reliability.md section 4: disk full, SIGHUP, an empty --loop.

Runs the real programs (mcl-dump, mcl-replay) as a user would, on a private
bus (a forwarder in this process, free loopback ports):

1. disk full (needs root: a 5 MiB tmpfs is mounted in a temporary directory
   and unmounted at the end): RUNS recordings per format of 8,000 messages of
   1 kB published at about 10,000 msg/s; for each, the messages the summary
   says were recorded, the records that read back, what is reported lost,
   whether the error line is the first error (not "index"), and leftover
   temporary files.
2. SIGHUP: RUNS replays (``--dry-run``) in their own session, SIGHUP to the
   process group after 2 s (what closing a terminal does); exit status and
   the named semaphores left in /dev/shm that no process uses.
3. an empty selection with --loop: the CPU time of mcl-replay and its
   workers over 2 s, and the exit status.

Usage: python3 tools/check_ops.py [--runs 5]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mcl  # noqa: E402
from mcl.exceptions import LogDamageWarning  # noqa: E402
from mcl.network.forwarder import Forwarder  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from test_signals import SemaphoreWatch  # noqa: E402  (the test suite's own check)

SAMPLE = ROOT / "sample_logs" / "vehicle"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))


def disk_full(fmt: str, work: Path) -> dict[str, object]:
    mnt = work / f"disk-{fmt}-{time.monotonic_ns()}"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mnt)], check=True)
    try:
        with Forwarder("tcp://127.0.0.1:0") as forwarder:
            dump = subprocess.Popen(
                [sys.executable, "-m", "mcl.cli.dump", "--bus", forwarder.address, "-o", str(mnt), "--format", fmt, "--status-interval", "100"],
                stderr=subprocess.PIPE, text=True, env=_env(),
            )
            with mcl.Publisher(forwarder.address) as pub:
                if not pub.wait_for_subscribers(1, 20):
                    raise SystemExit("mcl-dump did not subscribe within 20 s")
                for i in range(8000):
                    pub.publish("t", mcl.encode({"i": i, "p": b"x" * 1000}))
                    if i % 100 == 99:
                        time.sleep(0.01)
                        if dump.poll() is not None:
                            break
            time.sleep(1.0)
            if dump.poll() is None:
                dump.send_signal(signal.SIGINT)
            _, err = dump.communicate(timeout=60)
        (log,) = mnt.iterdir()
        with warnings.catch_warnings(record=True) as damage:
            warnings.simplefilter("always", LogDamageWarning)
            with mcl.open_log(log) as reader:
                on_disk = sum(1 for _ in reader)
        head = re.search(r"recorded .*?: ([\d,]+) messages in .* lost ([\d,]+)", err)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        return {
            "exit": dump.returncode,
            "summary": int(head.group(1).replace(",", "")) if head else None,
            "on_disk": on_disk,
            "lost": int(head.group(2).replace(",", "")) if head else None,
            "first_error": bool(errors) and "index" not in errors[0] and "No space left" in errors[0],
            "temporary": len([p for p in log.iterdir() if p.name.endswith(".tmp")]),
            "damage_warnings": len(damage),
        }
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def sighup() -> tuple[int, int]:
    with SemaphoreWatch() as shm:
        proc = subprocess.Popen(
            shm.command([sys.executable, "-m", "mcl.cli.replay", str(SAMPLE), "--dry-run"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True, env=_env(),
        )
        time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGHUP)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        time.sleep(2.0)  # time for multiprocessing's resource tracker, if it survived
        leaked = len(shm.leaked())
        shm.remove_leaked()
    return code, leaked


def _cpu(pid: int) -> float:
    ticks = 0
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(stat.split("/")[2]) == pid or int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def empty_loop() -> tuple[float, int | None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcl.cli.replay", str(SAMPLE), "--loop", "--dry-run", "--exclude", ".*"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True, env=_env(),
    )
    time.sleep(3.0)
    before = _cpu(proc.pid)
    time.sleep(2.0)
    used = _cpu(proc.pid) - before
    code = proc.poll()
    if code is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    return used, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() == 0:
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("native", "mcl1"):
                for _ in range(args.runs):
                    print(f"disk full {fmt}: {disk_full(fmt, Path(tmp))}", flush=True)
    else:
        print("disk full: skipped (mounting a tmpfs needs root)")
    for _ in range(args.runs):
        code, leaked = sighup()
        print(f"SIGHUP to mcl-replay: exit {code}, semaphores left in /dev/shm: {leaked}", flush=True)
    used, code = empty_loop()
    print(f"--loop over an empty selection: CPU {used:.2f} s in 2 s, exit {code}")


if __name__ == "__main__":
    main()
