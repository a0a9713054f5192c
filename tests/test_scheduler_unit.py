"""The broadcast worker's state machine, driven in this process with a fake clock: no processes, no sleeping.

`FakeClock.now` advances only when the scheduler waits (by the whole
timeout, or until the next queued command is due), so every publish time is
exact and each test runs in milliseconds.
"""

from __future__ import annotations

import math
import queue as queue_module
from typing import Any

import pytest

from mcl.replay.options import ReplayOptions
from mcl.replay.protocol import (
    Command,
    Finished,
    GetStatus,
    PassEnded,
    Pause,
    Published,
    Resume,
    Seek,
    SetSpeed,
    State,
    Step,
    WorkerStatus,
)
from mcl.replay.scheduler import _Scheduler

MS = 1_000_000
S = 1_000_000_000
T0 = 1_000 * S  # the fake monotonic clock starts here


class FakeClock:
    def __init__(self) -> None:
        self.ns = T0

    def now(self) -> int:
        return self.ns


class FakeControl:
    """The control pipe: commands in, replies out."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.inbox: list[Command] = []
        self.replies: list[WorkerStatus] = []
        self.replied_at = 0  # fake time of the last reply

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.inbox)

    def recv(self) -> Command:
        return self.inbox.pop(0)

    def send(self, reply: WorkerStatus) -> None:
        self.replies.append(reply)
        self.replied_at = self.clock.ns


class FakeQueue:
    def __init__(self) -> None:
        self.items: list[tuple[int, list[tuple[int, str, bytes]], bool]] = []

    def get_nowait(self) -> Any:
        if not self.items:
            raise queue_module.Empty
        return self.items.pop(0)


class FakeEvents:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, event: Any) -> None:
        self.items.append(event)


class FakePublisher:
    bus = "tcp://127.0.0.1:1"
    subscribers = peak_subscribers = dropped = 0

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[int, str, int]] = []  # (fake now, topic, record index)
        self.times: list[tuple[int, float]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.sent.append((self.clock.ns, topic, int.from_bytes(payload, "big")))

    def publish_many(self, items: Any) -> None:
        for topic, payload in items:
            self.publish(topic, payload)

    def publish_time(self, time_ns: int, speed: float) -> None:
        self.times.append((time_ns, speed))

    def wait_for_subscribers(self, count: int, timeout: float) -> bool:
        return True


class Harness:
    """A _Scheduler with fakes all round; `wait` advances the fake clock."""

    def __init__(self, options: ReplayOptions, *, paused: bool = True) -> None:
        self.clock = FakeClock()
        self.control = FakeControl(self.clock)
        self.queue = FakeQueue()
        self.events = FakeEvents()
        self.publisher = FakePublisher(self.clock)
        self.waits = 0
        heartbeat = type("Heartbeat", (), {"value": 0.0})()
        self.scheduler = _Scheduler(
            None,
            options,
            self.queue,  # type: ignore[arg-type]
            self.control,  # type: ignore[arg-type]
            self.events,  # type: ignore[arg-type]
            heartbeat,
            self.publisher,
            True,
            paused,
            now=self.clock.now,
            wait=self.wait,
        )

    def wait(self, timeout_s: float, batches: bool) -> tuple[bool, bool]:
        self.waits += 1
        command, batch = bool(self.control.inbox), batches and bool(self.queue.items)
        if not (command or batch):  # nothing to wake it: the whole timeout passes
            self.clock.ns += round(timeout_s * S)
        return command, batch

    def batch(self, generation: int, times_ns: list[int], first: int = 0, end: bool = True) -> None:
        records = [(t, "t", (first + i).to_bytes(4, "big")) for i, t in enumerate(times_ns)]
        self.queue.items.append((generation, records, end))

    def command(self, command: Command) -> WorkerStatus:
        """Send `command`, run until it is answered."""
        self.control.inbox.append(command)
        before = len(self.control.replies)
        self.run(lambda: len(self.control.replies) > before)
        return self.control.replies[-1]

    def run(self, until: Any, turns: int = 10_000) -> None:
        for _ in range(turns):
            if until():
                return
            assert self.scheduler.tick()
        raise AssertionError(f"not reached in {turns} turns")

    def later(self, seconds: float) -> None:
        """Let `seconds` pass while the scheduler sleeps (the next command arrives then)."""
        self.clock.ns += round(seconds * S)

    def run_for(self, seconds: float) -> None:
        end = self.clock.ns + round(seconds * S)
        self.run(lambda: self.clock.ns >= end)

    @property
    def sent(self) -> list[tuple[int, str, int]]:
        return self.publisher.sent


def options(**fields: Any) -> ReplayOptions:
    return ReplayOptions(spin_ns=0, **fields)  # a fake clock cannot be spun on


def test_plays_at_the_recorded_times() -> None:
    h = Harness(options(speed=2.0))
    h.batch(0, [0, 100 * MS, 300 * MS])
    h.command(Resume())
    h.run(lambda: len(h.sent) == 3)
    assert [t - T0 for t, _, _ in h.sent] == [0, 50 * MS, 150 * MS]  # half the spacing at speed 2
    assert h.scheduler.lateness.report().samples == (0, 0, 0)


def test_pause_and_resume_keep_the_spacing() -> None:
    h = Harness(options())
    h.batch(0, [0, 100 * MS, 200 * MS])
    h.command(Resume())
    h.run(lambda: len(h.sent) == 1)
    h.later(0.04)
    assert h.command(Pause()).state == State.PAUSED
    paused_at = h.control.replied_at
    h.run_for(5.0)  # a long pause: nothing is published
    assert len(h.sent) == 1
    status = h.command(Resume())
    assert status.state == State.PLAYING and status.position_ns == 40 * MS  # the position was frozen
    resumed_at = h.control.replied_at
    assert resumed_at >= paused_at + 5 * S
    h.run(lambda: len(h.sent) == 3)
    # 60 ms were left before record 1 when paused: no burst, no drift
    assert [t - resumed_at for t, _, _ in h.sent[1:]] == [60 * MS, 160 * MS]


def test_seek_drops_older_generations_and_anchors_on_the_position() -> None:
    h = Harness(options())
    h.batch(0, [0, 100 * MS, 200 * MS, 300 * MS])
    h.command(Resume())
    h.run(lambda: len(h.sent) == 1)
    h.batch(0, [400 * MS], first=4)  # read before the seek: stale
    status = h.command(Seek(1, 250 * MS))
    assert status.generation == 1 and status.position_ns == 250 * MS and status.state == State.PLAYING
    seek_at = h.control.replied_at
    h.batch(1, [300 * MS, 400 * MS], first=3)
    h.run(lambda: len(h.sent) == 3)
    assert [i for _, _, i in h.sent] == [0, 3, 4]
    assert [t - seek_at for t, _, _ in h.sent[1:]] == [50 * MS, 150 * MS]


def test_step_publishes_the_next_record_at_once_and_stays_paused() -> None:
    h = Harness(options())
    h.batch(0, [0, 5 * S])
    before = h.clock.ns
    reply = h.command(Step())
    assert reply.stepped and reply.elapsed_ns == 0 and reply.topic == "t" and reply.state == State.PAUSED
    reply = h.command(Step())  # 5 s of log time later, published now
    assert reply.stepped and reply.elapsed_ns == 5 * S and reply.position_ns == 5 * S
    assert [i for _, _, i in h.sent] == [0, 1] and h.sent[1][0] - before < S
    reply = h.command(Step())  # the end of the pass
    assert not reply.stepped and reply.state == State.FINISHED
    assert Finished(0) in h.events.items


def test_speed_change_mid_run_re_anchors_at_the_position() -> None:
    h = Harness(options())
    h.batch(0, [0, 1 * S, 2 * S])
    h.command(Resume())
    h.run(lambda: len(h.sent) == 1)
    h.later(0.5)
    status = h.command(SetSpeed(2.0))
    assert status.speed == 2.0 and status.position_ns == 500 * MS
    changed_at = h.control.replied_at
    h.run(lambda: len(h.sent) == 3)
    assert [t - changed_at for t, _, _ in h.sent[1:]] == [250 * MS, 750 * MS]
    h.command(SetSpeed(math.inf))
    assert h.command(GetStatus()).state == State.FINISHED


def test_loop_starts_a_new_pass_anchored_on_its_first_record() -> None:
    h = Harness(options(loop=True, delay_ns=30 * MS))
    h.batch(0, [10 * MS, 20 * MS])
    h.command(Resume())
    h.run(lambda: len(h.sent) == 2)
    first_pass_end = h.sent[-1][0]
    h.batch(0, [10 * MS, 20 * MS])  # the buffer's next pass (same generation)
    h.run(lambda: len(h.sent) == 4)
    assert PassEnded(1) in h.events.items and h.scheduler.passes == 1
    assert h.sent[2][0] - first_pass_end == 30 * MS  # the delay again, not the gap to time 0
    assert h.sent[3][0] - h.sent[2][0] == 10 * MS
    assert h.command(GetStatus()).sent == 2  # counts of this pass
    assert not any(isinstance(e, Finished) for e in h.events.items)


def test_end_of_pass_finishes_and_resume_does_not_restart() -> None:
    h = Harness(options())
    h.batch(0, [0, 10 * MS])
    h.command(Resume())
    h.run(lambda: any(isinstance(e, Finished) for e in h.events.items))
    status = h.command(GetStatus())
    assert status.state == State.FINISHED and status.sent == 2 and status.position_ns == 10 * MS
    assert h.command(Resume()).state == State.FINISHED  # Replay seeks to start a new pass
    published = [e for e in h.events.items if isinstance(e, Published)]
    assert [i for e in published for i in (int.from_bytes(r[2], "big") for r in e.records)] == [0, 1]
    assert h.publisher.times[-1] == (10 * MS, 0.0)  # the final position, speed 0: stopped


def test_paused_worker_sleeps_in_waits_not_spins() -> None:
    h = Harness(options())
    h.batch(0, [0])
    h.run_for(1.0)  # paused from the start
    assert h.sent == [] and h.waits <= 11  # about one wait per _POLL_S (0.1 s)


@pytest.mark.parametrize("reset", [True, False])
def test_seek_to_the_start_is_a_fresh_pass(reset: bool) -> None:
    h = Harness(options(delay_ns=20 * MS))
    h.batch(0, [0, 10 * MS])
    h.command(Resume())
    h.run(lambda: len(h.sent) == 2)
    h.batch(1, [0, 10 * MS])  # the buffer's first batch of the new generation is there at once
    status = h.command(Seek(1, None, reset))
    assert status.state == State.PLAYING and status.sent == (0 if reset else 2) and status.total == 2
    seek_at = h.control.replied_at
    h.run(lambda: len(h.sent) == 4)
    assert [t - seek_at for t, _, _ in h.sent[2:]] == [20 * MS, 30 * MS]


def test_state_is_the_phase_unless_paused_and_a_seek_returns_to_the_phase_before_the_end() -> None:
    """Phase (waiting, playing, finished) and pause are two things: a finished pass stays finished when paused,
    a seek after the end goes back to the phase it ended in (still waiting for subscribers if none came)."""
    h = Harness(options(wait_for_subscribers=1))
    h.publisher.wait_for_subscribers = lambda count, timeout: False  # type: ignore[method-assign]
    assert h.command(GetStatus()).state == State.PAUSED  # made paused, waiting underneath
    h.batch(0, [], end=True)  # an empty pass: it ends before any subscriber came
    assert h.command(Resume()).state == State.WAITING
    h.run(lambda: h.scheduler.state() == State.FINISHED)
    assert h.command(Pause()).state == State.FINISHED  # the end is not hidden by a pause
    assert h.command(Resume()).state == State.FINISHED  # nor undone by a resume (which keeps the pause)
    assert h.command(Seek(1, 0, False)).state == State.PAUSED  # the pause made while finished holds
    assert h.command(Resume()).state == State.WAITING  # still no subscriber: waiting again
    h.publisher.wait_for_subscribers = lambda count, timeout: True  # type: ignore[method-assign]
    h.batch(1, [0, 10 * MS], end=True)
    h.run(lambda: len(h.sent) == 2)
    h.run(lambda: h.scheduler.state() == State.FINISHED)
    assert h.command(Pause()).state == State.FINISHED
    assert h.command(Seek(2, 0, False)).state == State.PAUSED  # paused before the seek: paused after it
    assert h.command(Resume()).state == State.PLAYING  # the subscriber came: no waiting any more
