"""Write tests/data/drive/: a 10-minute drive (speed at 1 Hz, status every 10 s) in MCL_LOG 1.0.

Run once; the log is committed with the example. Overspeed episodes (limit
30 m/s): 120-134 s and 450-469 s last long enough to raise an alert, 300-302 s
does not.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mcl

ORIGIN = dt.datetime(2024, 5, 1, 8, 0, 0, tzinfo=dt.timezone.utc)
EPISODES = [(120, 135, 33.0), (300, 303, 31.0), (450, 470, 36.0)]  # start s, end s (exclusive), speed m/s


def speed_at(t: int) -> float:
    for start, end, fast in EPISODES:
        if start <= t < end:
            return fast + (t - start) * 0.1
    return 25.0 + (t % 7) * 0.5  # cruising, below the limit


def main() -> None:
    out = Path(__file__).parent / "tests" / "data" / "drive"
    origin_ns = int(ORIGIN.timestamp()) * 1_000_000_000
    origin_s = origin_ns / 1e9
    with mcl.LogWriter(out, format="mcl1", origin_ns=origin_ns) as log:
        for t in range(600):
            ns = t * 1_000_000_000
            speed = {"name": "Speed", "timestamp": origin_s + t, "speed_mps": speed_at(t)}
            log.write("vehicle/speed", mcl.encode(speed), ns)
            if t % 10 == 0:
                status = {"name": "Status", "timestamp": origin_s + t, "gear": "D", "ok": True}
                log.write("vehicle/status", mcl.encode(status), ns)


if __name__ == "__main__":
    main()
