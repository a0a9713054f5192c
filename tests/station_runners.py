"""Runner classes the station tests start in child processes (imported there by name: tests/ is on python_path)."""

from __future__ import annotations

import time
from typing import Any

import mcl.station


class Flaky(mcl.station.Runner):
    """Publishes its iteration number on 'flaky'; every third iteration raises instead."""

    def setup(self) -> None:
        self.n = 0

    def iterate(self) -> None:
        self.n += 1
        if self.n % 3 == 0:
            raise ValueError(f"iteration {self.n} fails on purpose")
        self.publish("flaky", {"n": self.n})


class Ticker(mcl.station.Runner):
    """Publishes a counter on the topic named in its config (default 'tick')."""

    def setup(self) -> None:
        self.n = 0

    def iterate(self) -> None:
        self.n += 1
        self.publish(self.config.get("topic", "tick"), {"n": self.n, "tag": self.config.get("tag", "")})

    @mcl.station.command("count")
    def count(self, data: Any) -> Any:
        return {"n": self.n, "config": self.config}


class Calibrated(mcl.station.Runner):
    """Answers 'calibrate' with what it was given and how many iterations it made."""

    def setup(self) -> None:
        self.iterations = 0
        self.offset = 0.0

    def iterate(self) -> None:
        self.iterations += 1

    @mcl.station.command("calibrate")
    def calibrate(self, data: Any) -> Any:
        self.offset = float(data.get("offset", 0.0))
        return {"offset": self.offset, "iterations": self.iterations, "unit": self.name}

    @mcl.station.command("fail")
    def fail(self, data: Any) -> Any:
        raise RuntimeError("the handler failed on purpose")


class Stuck(mcl.station.Runner):
    """Its second iterate() never returns (no heartbeat)."""

    def setup(self) -> None:
        self.n = 0

    def iterate(self) -> None:
        self.n += 1
        self.publish("stuck", {"n": self.n})
        if self.n >= 2:
            time.sleep(3600)


class Gate(mcl.station.Runner):
    """Its 'wait' command touches PATH.waiting, then returns only once PATH exists (at most 60 s): a slow request."""

    @mcl.station.command("wait")
    def wait(self, data: Any) -> Any:
        from pathlib import Path

        flag = Path(data["path"])
        flag.with_name(flag.name + ".waiting").touch()  # the test knows the request is under way
        deadline = time.monotonic() + 60.0
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"waited_for": str(flag), "there": flag.exists()}

    @mcl.station.command("nan")
    def nan(self, data: Any) -> Any:
        return {"value": float("nan")}

    @mcl.station.command("object")
    def object(self, data: Any) -> Any:
        return {"value": object()}

    @mcl.station.command("exit")
    def exit(self, data: Any) -> Any:
        raise SystemExit(3)


class SlowStop(mcl.station.Runner):
    """Its teardown() touches PATH.stopping, then waits (at most 60 s) for the file PATH of its config: a slow stop."""

    def teardown(self) -> None:
        from pathlib import Path

        flag = Path(self.config["flag"])
        flag.with_name(flag.name + ".stopping").touch()
        deadline = time.monotonic() + 60.0
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


class Hang(mcl.station.Runner):
    """Its first iterate() touches the file named `flag` in its config, then blocks (at most 10 minutes)."""

    def iterate(self) -> None:
        from pathlib import Path

        Path(self.config["flag"]).touch()
        time.sleep(600)


class Unencodable(mcl.station.Runner):
    """Publishes a value msgpack cannot encode, every iteration."""

    def iterate(self) -> None:
        self.publish("bad", {"value": object()})


class BadSetup(mcl.station.Runner):
    """setup() raises."""

    def setup(self) -> None:
        raise OSError("no such device /dev/ttyUSB9")


class SlowSession(SlowStop):
    """Appends the time its process started to the file `starts` of its config; slow to stop (SlowStop)."""

    def setup(self) -> None:
        with open(self.config["starts"], "a") as fp:
            fp.write(f"{time.time_ns()}\n")
