#!/usr/bin/env python3
"""Generate sample_logs/vehicle: 10 s of a small vehicle (imu 100 Hz, gps 10 Hz, camera metadata 30 Hz).

Deterministic: the same seed gives the same records (times, topics and
payload bytes). Written in the native format when mcl has it, else in
MCL_LOG 1.0; ``--format`` chooses. Message types: ``mcl.examples.vehicle``.

    python3 tools/make_sample_logs.py            # refuses to replace an existing log
    python3 tools/make_sample_logs.py --force    # regenerate sample_logs/vehicle
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mcl  # noqa: E402
from mcl.examples.vehicle import CameraFrame, GpsFix, ImuSample  # noqa: E402
from mcl.log.record import datetime_to_ns  # noqa: E402

import datetime as _dt  # noqa: E402

NS = 1_000_000_000
ORIGIN_NS = datetime_to_ns(_dt.datetime(2024, 5, 1, 9, 30, 0, tzinfo=_dt.timezone.utc))
DURATION_S = 10.0
EARTH_M_PER_DEG = 111_320.0
START_LAT, START_LON = -33.8886, 151.1873  # Sydney (ACFR)


def _speed(t: float) -> float:
    """Vehicle speed in m/s: accelerate to 8 m/s, cruise, slow down at the end."""
    return 8.0 * min(1.0, t / 3.0) * min(1.0, (DURATION_S + 0.5 - t) / 2.0)


def _heading(t: float) -> float:
    """Heading in degrees: a gentle left turn in the middle."""
    return (90.0 - 30.0 * (1 - math.cos(math.pi * min(max(t - 3.0, 0.0), 4.0) / 4.0)) / 2) % 360


def make_records(seed: int = 7) -> list[tuple[int, str, bytes]]:
    """(elapsed ns, topic, payload) of the whole log, in time order."""
    rng = np.random.default_rng(seed)
    events: list[tuple[int, int, str, bytes]] = []

    def add(t: float, order: int, topic: str, msg: mcl.Message) -> None:
        # Reception jitter of up to 0.4 ms after the sample time.
        elapsed = round((t + float(rng.uniform(0, 0.0004))) * NS)
        events.append((elapsed, order, topic, msg.encode()))

    x = y = 0.0
    for i in range(int(DURATION_S * 100)):
        t = i / 100
        yaw = math.radians(90.0 - _heading(t))
        accel = np.array([(_speed(t + 0.01) - _speed(t)) * 100, 0.0, 9.81]) + rng.normal(0, 0.05, 3)
        gyro = np.array([0.0, 0.0, math.radians(_heading(t) - _heading(t + 0.01)) * 100]) + rng.normal(0, 0.002, 3)
        quat = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        add(t, 0, "imu", ImuSample(accel, gyro, quat, round(24.0 + t * 0.05, 3), timestamp=(ORIGIN_NS / NS) + t))
        x += _speed(t) * math.cos(yaw) * 0.01
        y += _speed(t) * math.sin(yaw) * 0.01
        if i % 10 == 0:
            noise = rng.normal(0, 0.3, 3)
            cov = np.diag([0.09, 0.09, 0.36]) + np.full((3, 3), 0.01)
            fix = GpsFix(
                latitude=START_LAT + (y + noise[1]) / EARTH_M_PER_DEG,
                longitude=START_LON + (x + noise[0]) / (EARTH_M_PER_DEG * math.cos(math.radians(START_LAT))),
                altitude=round(42.0 + noise[2], 3),
                speed=round(_speed(t) + float(rng.normal(0, 0.05)), 3),
                heading=round(_heading(t), 2),
                satellites=int(rng.integers(9, 13)),
                fix="3d" if t < 1.0 else "rtk",
                covariance=cov,
                timestamp=(ORIGIN_NS / NS) + t,
            )
            add(t + 0.002, 1, "gps", fix)
    for frame in range(int(DURATION_S * 30)):
        t = frame / 30
        exposure = int(4000 + 1500 * math.sin(t / 2))
        histogram = rng.multinomial(1920 * 1080, np.full(16, 1 / 16)).astype(np.uint32)
        meta = CameraFrame(
            frame_id=frame,
            width=1920,
            height=1080,
            encoding="bayer_rggb8",
            exposure_us=exposure,
            gain_db=round(6.0 + float(rng.normal(0, 0.2)), 2),
            size_bytes=1920 * 1080,
            histogram=histogram,
            timestamp=(ORIGIN_NS / NS) + t,
        )
        add(t + 0.005, 2, "camera/front", meta)
    events.sort()
    return [(elapsed, topic, payload) for elapsed, _, topic, payload in events]


def main(argv: list[str] | None = None) -> int:
    """Write the vehicle sample log."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sample_logs" / "vehicle", help="log directory to create")
    default_format = "native" if importlib.util.find_spec("mcl.log.native") else "mcl1"
    parser.add_argument("--format", choices=["native", "mcl1"], default=default_format, help="log format")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--force", action="store_true", help="replace the log if it exists")
    args = parser.parse_args(argv)
    if args.out.exists() and args.force:
        shutil.rmtree(args.out)
    records = make_records(args.seed)
    try:
        with mcl.LogWriter(
            args.out,
            format=args.format,
            origin_ns=ORIGIN_NS,
            metadata={"host": "sample-vehicle", "generator": "tools/make_sample_logs.py", "seed": str(args.seed)},
        ) as writer:
            for elapsed, topic, payload in records:
                writer.write(topic, payload, elapsed)
    except mcl.LogExistsError as exc:
        print(f"error: {exc} (use --force to regenerate it)", file=sys.stderr)
        return 1
    print(f"{len(records)} records written to {args.out} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
