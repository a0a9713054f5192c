"""Tests of the overspeed example: they use only mcl's pytest fixtures (no set-up code)."""

from __future__ import annotations

import time
from pathlib import Path

from mcl import decode
from overspeed import ALERT_TOPIC, OverspeedDetector, OverspeedService

DRIVE = Path(__file__).parent / "data" / "drive"  # 10 minutes: speed at 1 Hz, status every 10 s
ORIGIN = 1714550400.0  # 2024-05-01 08:00:00 UTC, the drive's time origin
# Episodes above 30 m/s: 120-134 s and 450-469 s (alerts after 5 s), 300-302 s (too short).
EXPECTED_SINCE = [ORIGIN + 120, ORIGIN + 450]


def test_instant_replay_into_the_detector_sees_recorded_times(mcl_replay):
    """A 10-minute drive replayed instantly through a hook: alerts at the recorded times, in well under a second."""
    alerts = []
    detector = OverspeedDetector(limit_mps=30.0, hold_s=5.0, emit=alerts.append, clock=mcl_replay.clock)
    started = time.monotonic()
    replay = mcl_replay(DRIVE, instant=True, topics=["vehicle/speed"], hooks=[lambda record: detector.on_speed(decode(record.payload))])
    assert time.monotonic() - started < 1.0
    assert replay.sent == 600
    assert [a.since for a in alerts] == EXPECTED_SINCE
    # detected_at came from the virtual clock: the recorded time of the record that raised it
    assert [a.detected_at for a in alerts] == [ORIGIN + 125, ORIGIN + 455]


def test_instant_replay_on_the_bus_and_capture(mcl_replay, mcl_capture):
    """The service on the private bus (default bus, no address given) publishes two alerts from an instant replay."""
    with OverspeedService(limit_mps=30.0, hold_s=5.0) as service:
        mcl_replay(DRIVE, instant=True, wait_for_subscribers=2)  # the service and the capture
        alerts = mcl_capture.wait_for(ALERT_TOPIC, count=2, timeout=10.0)
        mcl_capture.wait_for("vehicle/speed", count=600, timeout=10.0)
    assert service.received == 600
    assert [a.message.since for a in alerts] == EXPECTED_SINCE
    assert all(a.message.name == "OverspeedAlert" for a in alerts)
    assert mcl_capture.counts() == {"vehicle/speed": 600, "vehicle/status": 60, ALERT_TOPIC: 2}


def test_timed_replay_gives_the_same_alerts(mcl_bus, mcl_replay, mcl_capture):
    """A timed replay (600x: 10 minutes in 1 s) on the bus gives the same alerts as the instant one."""
    with OverspeedService(limit_mps=30.0, hold_s=5.0, bus=mcl_bus):
        replay = mcl_replay(DRIVE, speed=600.0, topics=["vehicle/speed"], wait_for_subscribers=2)
        assert replay.wait(timeout=30.0)
        alerts = mcl_capture.wait_for(ALERT_TOPIC, count=2, timeout=10.0)
    assert [a.message.since for a in alerts] == EXPECTED_SINCE
    mcl_capture.assert_count(ALERT_TOPIC, 2)
    mcl_capture.assert_no_messages("vehicle/status")
