"""overspeed: raise an alert when a vehicle stays above a speed limit (an example project using mcl).

The detector is plain logic; the service connects it to an mcl bus: it reads
``Speed`` messages on ``vehicle/speed`` and publishes ``OverspeedAlert``
messages on ``alerts/overspeed``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import mcl

SPEED_TOPIC = "vehicle/speed"
ALERT_TOPIC = "alerts/overspeed"


class Speed(mcl.Message):
    """Vehicle speed, as recorded by the drive logs."""

    fields = ("speed_mps",)


class OverspeedAlert(mcl.Message):
    """The vehicle stayed above the limit for `hold_s` seconds, from `since` (message time)."""

    fields = ("since", "speed_mps", "detected_at")


class OverspeedDetector:
    """Calls `emit(alert)` once per episode above `limit_mps` that lasts `hold_s` seconds.

    Episodes are timed with the messages' own timestamps, so the result does
    not depend on how fast the messages arrive. `clock` stamps
    ``detected_at`` (wall time by default).
    """

    def __init__(
        self,
        limit_mps: float,
        hold_s: float,
        emit: Callable[[OverspeedAlert], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit_mps = limit_mps
        self.hold_s = hold_s
        self.emit = emit
        self.clock = clock
        self._since: float | None = None
        self._alerted = False

    def on_speed(self, speed: Any) -> None:
        """Feed one Speed message (anything with speed_mps and timestamp)."""
        if speed.speed_mps <= self.limit_mps:
            self._since = None
            self._alerted = False
            return
        if self._since is None:
            self._since = speed.timestamp
        if not self._alerted and speed.timestamp - self._since >= self.hold_s:
            self._alerted = True
            self.emit(OverspeedAlert(since=self._since, speed_mps=speed.speed_mps, detected_at=self.clock()))


class OverspeedService:
    """Runs a detector on a bus in a thread: Speed in on vehicle/speed, alerts out on alerts/overspeed.

    `bus` None means the default bus (``$MCL_BUS`` when set).
    """

    def __init__(self, limit_mps: float = 30.0, hold_s: float = 5.0, bus: str | None = None) -> None:
        self.bus = bus
        self.detector = OverspeedDetector(limit_mps, hold_s, self._publish)
        self.received = 0
        self._publisher: Any = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="overspeed", daemon=True)

    def _publish(self, alert: OverspeedAlert) -> None:
        self._publisher.publish(ALERT_TOPIC, alert)

    def _run(self) -> None:
        with mcl.Publisher(bus=self.bus) as pub, mcl.Subscriber([SPEED_TOPIC], bus=self.bus, exact=True) as sub:
            self._publisher = pub
            self._ready.set()
            while not self._stop.is_set():
                received = sub.recv(timeout=0.05)
                if received is not None:
                    self.received += 1
                    self.detector.on_speed(received.message)

    def start(self) -> OverspeedService:
        """Start listening; returns once subscribed."""
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("overspeed service did not start within 10 s")
        return self

    def stop(self) -> None:
        """Stop and close the sockets."""
        self._stop.set()
        self._thread.join(10.0)

    def __enter__(self) -> OverspeedService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
