"""Measure: time from SIGKILL of a recorder unit to its next log recording (run from the repository root: python tests/station_restart_time.py)."""
import os, signal, sys, tempfile, time
sys.path.insert(0, "tests")
from mcl.network.forwarder import Forwarder
from mcl.station import Station

with tempfile.TemporaryDirectory() as d, Forwarder("tcp://127.0.0.1:0") as bus:
    cfg = {"station": {"bus": bus.address}, "units": {
        "tick": {"kind": "runner", "class": "station_runners:Ticker", "python_path": [os.path.abspath("tests")], "period": 0.01},
        "rec": {"kind": "recorder", "out": "logs", "topics": ["tick"]}}}
    t0 = time.monotonic()
    with Station(cfg, base_dir=d) as s:
        def rec():
            return next(u for u in s.status()["units"] if u["name"] == "rec")
        while not rec()["messages"]:
            time.sleep(0.01)
        print(f"start to first recorded message: {time.monotonic() - t0:.2f} s")
        for i in range(3):
            u = rec()
            os.kill(u["pid"], signal.SIGKILL)
            t1 = time.monotonic()
            while not ((v := rec())["pid"] not in (None, u["pid"]) and v["messages"] > u["messages"] + 5):
                time.sleep(0.01)
            print(f"kill -9 #{i+1} to the new log recording: {time.monotonic() - t1:.2f} s (back-off {2**i} s)")
