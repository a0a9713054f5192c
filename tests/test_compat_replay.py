"""The original MCL's BufferData / ScheduleBroadcasts / Replay contract (bools, queue items, timing, unpicklable readers)."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import pickle
import queue as queue_module
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import receive, wait_until

import mcl
from mcl.exceptions import ReaderProtocolError
from mcl.message import encode


class GeneratorReader:
    """A reader with the original protocol that holds a generator: it cannot be pickled."""

    def __init__(self, count: int, step_s: float) -> None:
        self.count = count
        self.step_s = step_s
        self.resets = 0
        self.reset()

    def _items(self) -> Iterator[dict[str, Any]]:
        for i in range(self.count):
            yield {"elapsed_time": i * self.step_s, "topic": "t", "payload": {"name": "Counter", "i": i}}

    def reset(self) -> None:
        self.resets += 1
        self._it = self._items()
        self._next = next(self._it, None)

    def read(self) -> dict[str, Any] | None:
        item, self._next = self._next, next(self._it, None)
        return item

    def is_data_pending(self) -> bool:
        return self._next is not None


class Hook:
    """Collects what is published, with the arrival time; wait() blocks on an event, not a sleep loop."""

    def __init__(self) -> None:
        self.records: list[mcl.Record] = []
        self.times: list[float] = []
        self._cond = threading.Condition()

    def __call__(self, record: mcl.Record) -> None:
        with self._cond:
            self.records.append(record)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.records) >= count, timeout)

    def indices(self) -> list[int]:
        return [mcl.message.unpack(r.payload)["i"] for r in self.records]


@contextlib.contextmanager
def composed(reader: Any, length: int = 5000, **kwargs: Any) -> Iterator[tuple[mcl.BufferData, mcl.ScheduleBroadcasts]]:
    """BufferData(reader, length) and ScheduleBroadcasts(its queue, **kwargs), both stopped at the end."""
    buffer = mcl.BufferData(reader, length=length)
    scheduler = mcl.ScheduleBroadcasts(buffer.queue, **kwargs)
    try:
        yield buffer, scheduler
    finally:
        scheduler.stop()
        buffer.stop()


def _drain(q: Any, count: int, timeout: float = 30.0) -> list[Any]:
    return [q.get(timeout=timeout) for _ in range(count)]


def test_buffer_data_argument_checks(reference_dir: Path) -> None:
    """Not a reader: NameError (the original's) and TypeError; a bad length: TypeError."""
    for bad in (object(), 42, {"read": 1}):
        with pytest.raises(NameError) as info:
            mcl.BufferData(bad)
        assert isinstance(info.value, TypeError) and isinstance(info.value, ReaderProtocolError)
    reader = GeneratorReader(3, 0.1)
    for length in (0, -5):
        with pytest.raises(TypeError, match="length must be an int > 0"):
            mcl.BufferData(reader, length=length)
        with pytest.raises(ValueError):
            mcl.BufferData(reader, length=length)
    with pytest.raises(TypeError, match="length"):
        mcl.BufferData(reader, length=2.5)  # type: ignore[arg-type]


@pytest.mark.usefixtures("original_types")
def test_buffer_data_fills_its_queue_with_original_items(reference_dir: Path) -> None:
    """An unpicklable ReadDirectory(ignore_raw=True): items as read(), queue bounded by length, is_ready, bools."""
    reader = mcl.ReadDirectory(str(reference_dir / "dataset"), message=True, ignore_raw=True)
    with pytest.raises(Exception, match="pickle"):
        pickle.dumps(reader)  # the recipe that failed with "cannot pickle 'generator' object"
    buffer = mcl.BufferData(reader, length=4)
    try:
        assert isinstance(buffer.queue, multiprocessing.queues.Queue) and buffer.length == 4
        assert (buffer.is_alive(), buffer.is_ready(), buffer.is_data_pending()) == (False, False, True)
        assert buffer.stop() is False
        assert buffer.start() is True and buffer.start() is False and buffer.is_alive()
        wait_until(buffer.is_ready, 30)  # the queue is full
        wait_until(lambda: buffer.queue.qsize() == 4, 30)
        assert buffer.is_data_pending()
        time.sleep(0.3)
        assert buffer.queue.qsize() == 4  # bounded in items
        items = _drain(buffer.queue, 20)
        wait_until(lambda: not buffer.is_alive(), 30)
        assert not buffer.is_data_pending() and buffer.is_ready() and buffer.stop() is False
    finally:
        buffer.stop()
        reader.close()
    assert all(set(item) == {"elapsed_time", "topic", "payload"} for item in items)
    assert [item["elapsed_time"] for item in items] == [i / 100 for i in range(10)] + [i / 10 for i in range(1, 11)]
    assert [item["payload"].name for item in items] == ["UnitTestMessageA"] * 10 + ["UnitTestMessageB"] * 10
    with pytest.raises(queue_module.Empty):
        buffer.queue.get(timeout=0.2)  # nothing else: the end mark is not an item


def test_buffer_stop_start_resumes_and_reset_restarts() -> None:
    """stop(); start() goes on where it stopped (nothing lost or repeated); reset() empties the queue, restarts the reader."""
    reader = GeneratorReader(12, 0.01)
    buffer = mcl.BufferData(reader, length=3)
    try:
        buffer.start()
        first = _drain(buffer.queue, 2)
        assert buffer.stop() is True and not buffer.is_alive() and buffer.is_data_pending()
        assert buffer.start() is True
        rest = _drain(buffer.queue, 10)
        assert [i["payload"]["i"] for i in first + rest] == list(range(12))
        buffer.reset()
        assert reader.resets == 2 and buffer.is_data_pending() and not buffer.is_ready()
        buffer.start()
        again = _drain(buffer.queue, 12)
        assert [i["payload"]["i"] for i in again] == list(range(12))
        buffer.stop()
        queue_before = buffer.queue
        buffer.reset()
        assert buffer.queue is queue_before  # the same queue, emptied
        with pytest.raises(queue_module.Empty):
            buffer.queue.get(timeout=0.2)
    finally:
        buffer.stop()


def test_schedule_broadcasts_argument_checks() -> None:
    """A queue that is not a multiprocessing queue, or a speed that is not > 0, is a TypeError."""
    for bad in (queue_module.Queue(), [], None):
        with pytest.raises(TypeError, match="multiprocessing.Queue"):
            mcl.ScheduleBroadcasts(bad)
    q = multiprocessing.get_context("spawn").Queue()
    for speed in (0, -1.0, math.nan, "fast", None):
        with pytest.raises(TypeError, match="speed"):
            mcl.ScheduleBroadcasts(q, speed=speed)  # type: ignore[arg-type]
    scheduler = mcl.ScheduleBroadcasts(q, speed=2)
    assert scheduler.speed == 2.0 and scheduler.queue is q and not scheduler.is_alive() and scheduler.stop() is False


def test_schedule_broadcasts_keeps_time_and_ends_by_itself() -> None:
    """Items go out at their recorded spacing / speed, in order; is_alive() turns False at the end of the data."""
    reader = GeneratorReader(6, 0.2)  # 1.0 s of log
    hook = Hook()
    with composed(reader, length=2, speed=2.0, hooks=[hook]) as (buffer, scheduler):
        buffer.start()
        began = time.monotonic()
        assert scheduler.start() is True and scheduler.start() is False and scheduler.is_alive()
        assert hook.wait(6)
        wait_until(lambda: not scheduler.is_alive(), 30)
    assert hook.indices() == list(range(6)) and scheduler.error is None and scheduler.sent == 6
    assert [r.elapsed_ns for r in hook.records] == [i * 200_000_000 for i in range(6)]
    spread = hook.times[-1] - hook.times[0]
    assert 0.45 <= spread <= 1.5  # 1.0 s of log at speed 2: 0.5 s (generous upper bound: a loaded machine)
    assert hook.times[0] - began < 5.0


def test_schedule_broadcasts_stop_keeps_the_waiting_item() -> None:
    """stop() while an item waits its time, then start(): every item exactly once, in order (the original dropped it)."""
    reader = GeneratorReader(4, 0.4)
    hook = Hook()
    with composed(reader, hooks=[hook]) as (buffer, scheduler):
        buffer.start()
        scheduler.start()
        assert hook.wait(1)
        assert scheduler.stop() is True and scheduler.stop() is False
        assert len(hook.records) == 1
        scheduler.speed = math.inf
        assert scheduler.start() is True
        assert hook.wait(4)
        wait_until(lambda: not scheduler.is_alive(), 30)
    assert hook.indices() == [0, 1, 2, 3]


@pytest.mark.slow  # over a second: not in the fast lane
def test_schedule_broadcasts_speed_change_keeps_the_spacing() -> None:
    """A new speed while broadcasting applies from the current position: no burst of the items already due."""
    reader = GeneratorReader(6, 0.5)
    hook = Hook()
    with composed(reader, hooks=[hook]) as (buffer, scheduler):
        buffer.start()
        scheduler.start()
        assert hook.wait(3)  # items 0, 1, 2 out (1.0 s); 3 is due at 1.5 s
        time.sleep(0.1)
        assert len(hook.records) == 3
        scheduler.speed = 10.0
        assert hook.wait(6)
    assert hook.indices() == list(range(6))
    assert hook.times[5] - hook.times[3] >= 0.06  # 1.0 s of log at speed 10: 0.1 s (a burst would take ~0)
    assert hook.times[5] - hook.times[0] < 1.2 + 1.0


@pytest.mark.slow  # over a second: not in the fast lane
def test_schedule_broadcasts_follows_a_reset_and_a_plain_queue() -> None:
    """After BufferData.reset() the same scheduler plays from the start; a plain multiprocessing queue ends when idle."""
    reader = GeneratorReader(5, 0.0)
    hook = Hook()
    with composed(reader, length=2, speed=math.inf, hooks=[hook]) as (buffer, scheduler):
        buffer.start()
        scheduler.start()
        assert hook.wait(5)
        wait_until(lambda: not scheduler.is_alive(), 30)
        buffer.reset()
        buffer.start()
        scheduler.start()
        assert hook.wait(10)
        wait_until(lambda: not scheduler.is_alive(), 30)
    assert hook.indices() == list(range(5)) * 2

    plain = multiprocessing.Queue()  # the default context, as an original user would make it
    for i in range(3):
        plain.put({"elapsed_time": i * 0.01, "topic": None, "payload": encode({"name": "Counter", "i": i})})
    other = Hook()
    with mcl.ScheduleBroadcasts(plain, speed=1.0, hooks=[other]) as scheduler:
        scheduler.start()
        assert other.wait(3)
        wait_until(lambda: not scheduler.is_alive(), 10.0)  # empty for IDLE_END_S
    assert other.indices() == [0, 1, 2] and {r.topic for r in other.records} == {""}
    plain.close()
    plain.join_thread()


def test_reset_while_broadcasting_drops_what_was_read_before() -> None:
    """BufferData.reset() under a running scheduler: the item it waited on and the queued ones are never published."""
    reader = GeneratorReader(5, 1.0)
    hook = Hook()
    with composed(reader, length=3, hooks=[hook]) as (buffer, scheduler):
        buffer.start()
        scheduler.start()
        assert hook.wait(1)  # item 0 at once; item 1 waits its second
        wait_until(lambda: buffer.queue.qsize() >= 2, 30)
        began = time.monotonic()
        buffer.reset()  # the queue is full: its end mark waits for room, and must not hold stop() up
        assert time.monotonic() - began < 0.9
        scheduler.speed = math.inf
        buffer.start()
        assert hook.wait(6)
        wait_until(lambda: not scheduler.is_alive(), 30)
    assert hook.indices() == [0, 0, 1, 2, 3, 4]


def test_an_item_that_cannot_be_queued_is_reported() -> None:
    """A payload that cannot be pickled stops the buffering with a reason (the original's feeder thread dropped it)."""

    class Local(mcl.Message):  # a class defined in a function cannot be pickled
        fields = ("v",)

    class OneItem(GeneratorReader):
        def _items(self) -> Iterator[dict[str, Any]]:
            yield {"elapsed_time": 0.0, "topic": "t", "payload": Local(v=1)}

    buffer = mcl.BufferData(OneItem(1, 0.0))
    try:
        buffer.start()
        wait_until(lambda: not buffer.is_alive(), 30)
    finally:
        buffer.stop()
    assert buffer.error is not None and "cannot go through the queue" in buffer.error and "Local" in buffer.error
    assert buffer.is_data_pending()  # the item was not lost: start() after a fix would try it again


def test_schedule_broadcasts_reports_a_failing_hook() -> None:
    """A hook that raises ends the broadcasts; error says why (no thread traceback)."""

    def broken(record: mcl.Record) -> None:
        raise RuntimeError("boom")

    with composed(GeneratorReader(3, 0.0), speed=math.inf, hooks=[broken]) as (buffer, scheduler):
        buffer.start()
        scheduler.start()
        wait_until(lambda: not scheduler.is_alive(), 30)
    assert scheduler.error == "RuntimeError: boom"

    bad_bus = mcl.ScheduleBroadcasts(buffer.queue, bus="tcp://no such host:nonsense")
    with pytest.raises(mcl.ReplayError, match="could not start"):
        bad_bus.start()
    assert not bad_bus.is_alive()


@pytest.mark.slow
@pytest.mark.usefixtures("original_types")
def test_schedule_broadcasts_publishes_on_the_bus(mcl_bus: str, reference_dir: Path) -> None:
    """The original composition publishes every message of the original dataset to a real subscriber, bytes encoded."""
    from mcl.network import Subscriber

    reader = mcl.ReadDirectory(str(reference_dir / "dataset"), message=True, ignore_raw=True)
    with (
        reader,
        Subscriber(bus=mcl_bus) as sub,
        composed(reader, length=5, speed=10.0, bus=mcl_bus, wait_for_subscribers=1) as (buffer, scheduler),
    ):
        buffer.start()
        scheduler.start()
        got = receive(sub, 20, 30)
        wait_until(lambda: not scheduler.is_alive(), 30)
        assert sub.lost == 0
    with mcl.open_log(reference_dir / "dataset") as log:
        expected = [r.payload for r in log if mcl.message.type_name_of(r.payload) is not None]
    assert [mcl.message.unpack(r.payload) for r in got] == [mcl.message.unpack(p) for p in expected]
    assert {r.topic for r in got} == {""}


@pytest.mark.slow
@pytest.mark.usefixtures("original_types")
def test_replay_original_controls_return_bools(reference_dir: Path) -> None:
    """Replay(reader, speed): start / pause / stop return bools, stop() goes back to the start, is_alive, speed."""
    hook = Hook()
    reader = mcl.ReadDirectory(str(reference_dir / "dataset"), message=True, ignore_raw=True)
    with pytest.raises(TypeError, match="speed"):
        mcl.Replay(reader, speed=0)
    with pytest.raises(TypeError, match="speed"):
        mcl.Replay(reader, speed="1")  # type: ignore[arg-type]
    with mcl.Replay(reader, speed=0.25, hooks=[hook]) as replay:  # the 1 s log lasts 4 s: time to pause
        assert replay.speed == 0.25 and not replay.is_alive()
        assert replay.stop() is False  # nothing to stop yet
        assert replay.start() is True and replay.start() is False
        assert replay.is_alive() and replay.is_data_pending()
        assert hook.wait(12)  # A at 0.00..0.09, then B every 0.1 s: about 0.4 s of wall time in
        assert replay.pause() is True and replay.pause() is False and not replay.is_alive()
        paused_at = len(hook.records)
        assert replay.start() is True
        assert hook.wait(paused_at + 1)
        assert replay.stop() is True and replay.stop() is False and not replay.is_alive()
        first_pass = len(hook.records)
        replay.speed = math.inf
        assert replay.start() is True
        assert replay.wait(30)
        assert not replay.is_alive() and not replay.is_data_pending()
    names = [mcl.message.type_name_of(r.payload) for r in hook.records]
    assert len(names) == first_pass + 20 and None not in names  # ignore_raw=True: 20 records per full pass
    assert [r.elapsed_ns for r in hook.records[first_pass:]] == sorted(r.elapsed_ns for r in hook.records[first_pass:])
    assert hook.records[first_pass].elapsed_ns == 0  # stop() went back to the beginning


@pytest.mark.slow
def test_replay_reads_an_unpicklable_reader_in_this_process() -> None:
    """A reader object that cannot be pickled replays (read by a thread here), reset() at each pass."""
    reader = GeneratorReader(30, 0.001)
    hook = Hook()
    with mcl.Replay(reader, speed=math.inf, hooks=[hook]) as replay:
        assert replay.start() is True
        assert replay.wait(30)
        assert replay.start() is True  # after the end: from the beginning
        assert replay.wait(30)
    assert hook.indices() == list(range(30)) * 2
    assert reader.resets >= 3  # construction, then every pass


class NoReset:
    """The original BufferData's minimum: read() and is_data_pending(), no reset()."""

    def __init__(self, count: int) -> None:
        self.left = list(range(count))

    def read(self) -> dict[str, Any] | None:
        if not self.left:
            return None
        i = self.left.pop(0)
        return {"elapsed_time": i * 0.001, "topic": "n", "payload": {"name": "Counter", "i": i}}

    def is_data_pending(self) -> bool:
        return bool(self.left)


@pytest.mark.slow
def test_a_reader_without_reset_plays_once(tmp_path: Path) -> None:
    """read() / is_data_pending() suffice for one pass; playing again needs reset() (a ReplayError says so)."""
    hook = Hook()
    with mcl.Replay(NoReset(5), speed=math.inf, hooks=[hook]) as replay:
        assert replay.start() is True
        assert replay.wait(30)
        replay.start()
        with pytest.raises(mcl.ReplayError, match="has no reset"):
            replay.wait(30)
    assert hook.indices() == list(range(5))
    buffer = mcl.BufferData(NoReset(2))
    with pytest.raises(NameError, match="reset"):
        buffer.reset()
    with pytest.raises(NameError, match="read"):
        mcl.Replay(object())


class Failing(GeneratorReader):
    """A reader whose read() raises after three items."""

    def read(self) -> dict[str, Any] | None:
        item = super().read()
        if item is not None and item["payload"]["i"] == 3:
            raise OSError("disk gone")
        return item


@pytest.mark.slow
def test_a_failing_reader_fails_the_replay() -> None:
    """A reader read by a thread of this process that raises fails the replay with its error (a ReplayError)."""
    hook = Hook()
    with mcl.Replay(Failing(10, 0.0), speed=math.inf, hooks=[hook]) as replay:
        replay.start()
        with pytest.raises(mcl.ReplayError, match="the reader raised OSError: disk gone"):
            replay.wait(30)
        assert replay.status().state == "failed"
    assert len(hook.records) <= 3


_FULL_AT_EXIT = """
import time, mcl

class Endless:
    def read(self):
        return {"elapsed_time": 0.0, "topic": "t", "payload": b"x" * 1000}

    def is_data_pending(self):
        return True

buffer = mcl.BufferData(Endless(), length=500)  # 500 kB queued: more than a pipe holds
scheduler = mcl.ScheduleBroadcasts(buffer.queue, speed=1.0, hooks=[lambda record: time.sleep(1)])
buffer.start()
while not buffer.is_ready():
    time.sleep(0.01)
scheduler.start()
print("full", flush=True)
"""


@pytest.mark.slow
def test_a_program_exits_with_a_full_buffer(tmp_path: Path) -> None:
    """Leaving with items still queued (and a scheduler in a hook) ends the program at once (multiprocessing would wait)."""
    import subprocess
    import sys

    script = tmp_path / "full_at_exit.py"
    script.write_text(_FULL_AT_EXIT)
    began = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "full\n", done.stderr
    assert time.monotonic() - began < 30
