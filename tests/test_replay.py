"""Replay engine: exact delivery, controls, timing, filters, sources (hooks, real worker processes)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
from conftest import numbered_log, receive, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcl
from mcl.replay.buffer import BatchBuffer
from mcl.replay.clock import LatenessStats, ReplayClock
from mcl.replay.options import ReplayOptions
from mcl.replay.protocol import LatenessReport, Seek
from mcl.replay.scheduler import BatchScheduler

MS = 1_000_000


def indices(records: list[mcl.Record]) -> list[int]:
    return [int.from_bytes(r.payload, "big") for r in records]


class Collector:
    """A hook that keeps what it is given, with its arrival time."""

    def __init__(self) -> None:
        self.records: list[mcl.Record] = []
        self.times: list[float] = []

    def __call__(self, record: mcl.Record) -> None:
        self.times.append(time.monotonic())
        self.records.append(record)

    def wait_count(self, n: int, timeout: float = 30.0) -> bool:
        """True once `n` records arrived (AssertionError after `timeout` s)."""
        return wait_until(lambda: len(self.records) >= n, timeout, 0.005, lambda: f"{len(self.records)} of {n} records")


@pytest.mark.slow
def test_replays_every_record_in_order(sample_logs: Path) -> None:
    """The original MCL dataset replays into a hook: 30 records, same order and bytes as open_log."""
    log = sample_logs / "mcl-v1-dataset"
    with mcl.open_log(log) as reader:
        expected = list(reader)
    got = Collector()
    with mcl.Replay(log, speed=math.inf, hooks=[got]) as replay:
        replay.start()
        assert replay.wait(30)
        status = replay.status()
    assert got.records == expected
    assert status.state == "finished" and status.sent == 30


@pytest.mark.slow
def test_start_after_end_replays_from_beginning(tmp_path: Path) -> None:
    """start() after a finished pass plays the whole log again (the original sent nothing)."""
    log = numbered_log(tmp_path / "log", 20, 1 * MS)
    got = Collector()
    with mcl.Replay(log, speed=50, hooks=[got]) as replay:
        replay.start()
        assert replay.wait(30)
        replay.start()
        assert replay.wait(30)
    assert indices(got.records) == list(range(20)) * 2


@pytest.mark.slow
def test_pause_stops_the_clock_and_keeps_spacing(tmp_path: Path) -> None:
    """After a pause, the next record waits its remaining time and the following keep their spacing.

    Records are 1.5 s apart so that a loaded machine cannot reach the second
    before the pause lands; the bounds leave 0.4 s for hook latency.
    """
    spacing = 1.5
    log = numbered_log(tmp_path / "log", 3, int(spacing * 1000) * MS)
    got = Collector()
    with mcl.Replay(log, hooks=[got]) as replay:
        replay.start()
        assert got.wait_count(1)
        time.sleep(0.1)
        replay.pause()
        paused_at = time.monotonic()
        assert len(got.records) == 1
        time.sleep(0.5)
        resumed_at = time.monotonic()
        replay.start()
        assert replay.wait(30)
    gap1 = got.times[1] - got.times[0]
    gap2 = got.times[2] - got.times[1]
    # The paused time is added to the spacing (not lost, not replayed at once)...
    assert gap1 >= spacing + (resumed_at - paused_at) - 0.4, (gap1, resumed_at - paused_at)
    # ... and the next record keeps its recorded spacing: no burst.
    assert spacing - 0.4 <= gap2 <= spacing + 0.4, gap2


@pytest.mark.slow
def test_seek_plays_from_the_first_record_at_or_after(tmp_path: Path) -> None:
    """seek(t) while paused, then start(): records from the first at or after t, to the end."""
    log = numbered_log(tmp_path / "log", 50, 10 * MS)
    got = Collector()
    with mcl.Replay(log, speed=math.inf, hooks=[got]) as replay:
        replay.seek(0.2051)
        assert replay.status().state == "paused"
        replay.start()
        assert replay.wait(30)
    assert indices(got.records) == list(range(21, 50))


@pytest.mark.slow
def test_step_sends_exactly_one_record(tmp_path: Path) -> None:
    """step() pauses and publishes the next record only; False at the end."""
    log = numbered_log(tmp_path / "log", 3, 1000 * MS)
    got = Collector()
    with mcl.Replay(log, hooks=[got]) as replay:
        assert replay.step() is True
        assert indices(got.records) == [0]
        assert replay.step() is True
        assert indices(got.records) == [0, 1]
        status = replay.status()
        assert status.state == "paused" and status.position_ns == 1000 * MS
        assert replay.step() is True
        assert replay.step() is False
    assert indices(got.records) == [0, 1, 2]


@pytest.mark.slow
def test_speed_change_while_playing(tmp_path: Path) -> None:
    """Raising the speed while playing finishes the rest at once; status reports the speed."""
    log = numbered_log(tmp_path / "log", 30, 1000 * MS)  # 29 s at speed 1
    got = Collector()
    with mcl.Replay(log, hooks=[got]) as replay:
        replay.start()
        assert got.wait_count(2)
        began = time.monotonic()
        replay.speed = math.inf
        assert replay.wait(30)
        assert time.monotonic() - began < 10.0  # the 27 s left at speed 1, in a moment
        assert replay.speed == math.inf
    assert indices(got.records) == list(range(30))


@pytest.mark.slow
def test_stop_goes_back_to_the_beginning(tmp_path: Path) -> None:
    """stop() pauses at the start with counts reset; start() replays everything."""
    log = numbered_log(tmp_path / "log", 40, 50 * MS)
    got = Collector()
    with mcl.Replay(log, speed=4, hooks=[got]) as replay:
        replay.start()
        assert got.wait_count(3)
        replay.stop()
        status = replay.status()
        assert status.state == "paused" and status.sent == 0 and status.position_ns == 0
        first_pass = len(got.records)
        replay.speed = math.inf
        replay.start()
        assert replay.wait(30)
    assert indices(got.records) == list(range(first_pass)) + list(range(40))


@pytest.mark.slow
def test_status_reports_progress_and_lateness(tmp_path: Path) -> None:
    """status(): window, position, sent, paused state and lateness statistics."""
    log = numbered_log(tmp_path / "log", 21, 10 * MS, start_ns=100 * MS)
    with mcl.Replay(log, speed=5, hooks=[lambda r: None]) as replay:
        idle = replay.status()
        assert idle.state == "idle" and idle.start_ns == 100 * MS and idle.end_ns == 300 * MS
        assert idle.duration_ns == 200 * MS
        replay.start()
        assert replay.wait(30)
        done = replay.status()
    assert done.state == "finished" and done.sent == 21 and done.progress == 1.0
    assert done.lateness["count"] == 21
    assert 0 <= done.lateness["p50_ns"] <= done.lateness["p99_ns"] <= done.lateness["max_ns"]
    assert done.lateness["p50_ns"] < 250 * MS  # generous: a loaded machine (precise figures: tools/)
    assert done.to_dict()["duration"] == pytest.approx(0.2)


@pytest.mark.slow
def test_loop_plays_again_until_stopped(tmp_path: Path) -> None:
    """loop=True starts over at the end; every pass is complete and in order."""
    log = numbered_log(tmp_path / "log", 10, 1 * MS)
    got = Collector()
    with mcl.Replay(log, speed=math.inf, hooks=[got], loop=True) as replay:
        replay.start()
        assert got.wait_count(35)
        replay.pause()
        passes = replay.status().passes
    seen = indices(got.records)
    assert passes >= 3
    assert seen == [i % 10 for i in range(len(seen))]


@pytest.mark.slow
def test_selection_topics_exclude_remap_window(tmp_path: Path) -> None:
    """topics, exclude, remap and the start/end window select and rename records."""
    log = numbered_log(tmp_path / "log", 30, 10 * MS, topics=("a", "b", "c"))
    got = Collector()
    with mcl.Replay(
        log, speed=math.inf, hooks=[got], topics=["a", "b"], exclude="^b$", remap=["a:=/x/a"], start=0.05, end=0.2
    ) as replay:
        replay.start()
        assert replay.wait(30)
    assert [(r.topic, int.from_bytes(r.payload, "big")) for r in got.records] == [
        ("/x/a", i) for i in range(6, 21, 3)
    ]


class ListReader:
    """A reader with the original protocol over a list (picklable, defined at module level)."""

    def __init__(self, items: list[tuple[float, str, object]]) -> None:
        self.items = items
        self.index = 0

    def read(self) -> dict[str, object] | None:
        if self.index >= len(self.items):
            return None
        elapsed, topic, payload = self.items[self.index]
        self.index += 1
        return {"elapsed_time": elapsed, "topic": topic, "payload": payload}

    def is_data_pending(self) -> bool:
        return self.index < len(self.items)

    def reset(self) -> None:
        self.index = 0


@pytest.mark.slow
def test_sources_reader_protocol_and_read_directory(sample_logs: Path) -> None:
    """A reader object (payloads encoded if not bytes) and mcl.ReadDirectory are replay sources."""
    got = Collector()
    reader = ListReader([(0.0, "x", b"raw"), (0.01, "y", {"name": "M", "v": 1})])
    with mcl.Replay(reader, speed=math.inf, hooks=[got]) as replay:
        replay.start()
        assert replay.wait(30)
    assert [(r.elapsed_ns, r.topic) for r in got.records] == [(0, "x"), (10 * MS, "y")]
    assert got.records[0].payload == b"raw"
    assert mcl.message.unpack(got.records[1].payload) == {"name": "M", "v": 1}

    got2 = Collector()
    with mcl.ReadDirectory(sample_logs / "mcl-v1-dataset", raw=True) as directory:
        with mcl.Replay(directory, speed=math.inf, hooks=[got2]) as replay:
            replay.start()
            assert replay.wait(30)
    assert len(got2.records) == 30


def test_bad_sources_and_arguments(tmp_path: Path) -> None:
    """A missing log, a non-reader object, a bad speed or hook fail at once with a clear error."""
    with pytest.raises(mcl.LogNotFound):
        mcl.Replay(tmp_path / "missing")
    with pytest.raises(TypeError, match="replay source"):
        mcl.Replay(42)
    log = numbered_log(tmp_path / "log", 2, MS)
    with pytest.raises(ValueError, match="speed"):
        mcl.Replay(log, speed=0)
    with pytest.raises(TypeError, match="callable"):
        mcl.Replay(log, hooks=["not callable"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="remap"):
        mcl.Replay(log, remap=["nonsense"])
    replay = mcl.Replay(log, hooks=[print])
    with pytest.raises(RuntimeError, match="never started"):
        replay.wait(0.1)
    replay.close()
    with pytest.raises(RuntimeError, match="closed"):
        replay.start()


@pytest.mark.slow
def test_hook_error_fails_the_replay(tmp_path: Path) -> None:
    """A hook that raises stops the replay: wait() raises ReplayError naming the hook."""
    log = numbered_log(tmp_path / "log", 5, MS)

    def broken(record: mcl.Record) -> None:
        raise KeyError("boom")

    with mcl.Replay(log, speed=math.inf, hooks=[broken]) as replay:
        replay.start()
        with pytest.raises(mcl.ReplayError, match="broken.*KeyError"):
            replay.wait(30)
        assert replay.status().state == "failed"


@pytest.mark.slow
def test_batch_buffer_and_scheduler_compose(tmp_path: Path) -> None:
    """BatchBuffer(source, options) + BatchScheduler(queue, options), Replay's fast path, compose by hand."""
    log = numbered_log(tmp_path / "log", 25, MS)
    got = Collector()
    with BatchBuffer(str(log), ReplayOptions(batch_records=4, read_ahead=8)) as buffer:
        with BatchScheduler(buffer.queue, ReplayOptions(speed=100, publish=False), hooks=[got]) as scheduler:
            buffer.start()
            scheduler.start()
            assert scheduler.wait_finished(0, 30)
    assert indices(got.records) == list(range(25))


@pytest.mark.slow
def test_buffer_batches_are_bounded(tmp_path: Path) -> None:
    """Queue items are batches bounded by record count and bytes; the pass ends with an end mark."""
    with mcl.LogWriter(tmp_path / "log", format="mcl1") as writer:
        for i in range(20):
            writer.write("t", bytes(100 if i != 7 else 5000), i * MS)
    options = ReplayOptions(batch_records=6, batch_bytes=1000, read_ahead=12)
    with BatchBuffer(str(tmp_path / "log"), options) as buffer:
        buffer.start()
        batches = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            generation, records, end = buffer.queue.get(timeout=30)
            batches.append(records)
            if end:
                break
    assert sum(len(b) for b in batches) == 20
    for batch in batches:
        assert len(batch) <= 6
        assert sum(len(r[2]) for r in batch) < 1000 + 5000
        assert len(batch) == 1 or sum(len(r[2]) for r in batch[:-1]) < 1000


def test_clock_pause_resume_speed_seek() -> None:
    """ReplayClock maps log time to wall time through pause, resume, speed change and seek."""
    now = [1_000]
    clock = ReplayClock(2.0, paused=False, now=lambda: now[0])
    assert clock.position_ns is None
    clock.anchor(500)
    assert clock.due_ns(700) == 1_100  # 200 log ns at speed 2
    now[0] = 1_050
    assert clock.position_ns == 600
    clock.pause()
    now[0] = 9_000
    assert clock.position_ns == 600  # frozen
    clock.resume()
    assert clock.due_ns(700) == 9_050  # 100 log ns left at speed 2
    clock.set_speed(1.0)
    assert clock.due_ns(700) == 9_100
    clock.set_position(10_000)
    assert clock.position_ns == 10_000 and clock.due_ns(10_010) == 9_010
    clock.set_speed(math.inf)
    assert clock.due_ns(99_999) <= now[0]
    with pytest.raises(ValueError):
        clock.set_speed(-1)


def test_lateness_stats() -> None:
    """Lateness statistics: count, mean, percentiles and max; early counts as 0."""
    stats = LatenessStats(window=100)
    for late in range(-5, 100):
        stats.add(late)
    snap = stats.snapshot()
    assert snap["count"] == 105 and snap["max_ns"] == 99
    assert snap["p50_ns"] == 49 and snap["p99_ns"] == 98


# -- property: exactly once, in order, whatever the controls -------------------------------

N_RECORDS = 30
STEP_NS = 5 * MS

operations = st.lists(
    st.one_of(
        st.tuples(st.just("start")),
        st.tuples(st.just("pause")),
        st.tuples(st.just("stop")),
        st.tuples(st.just("step")),
        st.tuples(st.just("seek"), st.integers(0, N_RECORDS + 2)),
        st.tuples(st.just("speed"), st.sampled_from([2.0, 10.0, 50.0, math.inf])),
        st.tuples(st.just("sleep"), st.floats(0, 0.03)),
    ),
    max_size=10,
)


def explains(delivered: list[int], segments: list[tuple[str, int]], n: int) -> bool:
    """True if `delivered` is a concatenation of runs, one per segment, the last one complete.

    A segment ("seek", s) is a run s, s+1, ... of any length; ("restart", 0)
    happens only if the run before it had reached the end (start() after the
    end); the final run must reach the end (the final start() + wait()).
    """
    states = {(0, 0, segments[0][1])}  # (index in delivered, segment, next expected record)
    seen = set()
    while states:
        i, k, nxt = states.pop()
        if (i, k, nxt) in seen:
            continue
        seen.add((i, k, nxt))
        if i == len(delivered) and k == len(segments) - 1 and nxt >= n:
            return True
        if i < len(delivered) and delivered[i] == nxt and nxt < n:
            states.add((i + 1, k, nxt + 1))
        if k + 1 < len(segments):
            kind, target = segments[k + 1]
            if kind == "seek" or nxt >= n:
                states.add((i, k + 1, target))
            if kind == "restart":
                states.add((i, k + 1, nxt))  # start() on an unfinished pass resumes it
    return False


@pytest.fixture(scope="module")
def control_replay(tmp_path_factory: pytest.TempPathFactory):
    """One replay reused by every example (stop() between them), with its collector."""
    log = numbered_log(tmp_path_factory.mktemp("control") / "log", N_RECORDS, STEP_NS)
    got = Collector()
    replay = mcl.Replay(log, hooks=[got], stuck_timeout=30)
    yield replay, got
    replay.close()


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_exactly_once_in_order_under_any_controls(control_replay, ops) -> None:
    """Random start/pause/stop/step/seek/speed sequences: delivery is exactly the model's runs."""
    replay, got = control_replay
    replay.stop()
    replay.speed = 10.0
    got.records.clear()
    segments: list[tuple[str, int]] = [("seek", 0)]
    paused = True  # known to be paused (so nothing is in flight towards the hooks)
    for op in ops:
        if op[0] == "start":
            replay.start()
            segments.append(("restart", 0))
            paused = False
        elif op[0] == "pause":
            replay.pause()
            paused = True
        elif op[0] == "stop":
            replay.stop()
            segments.append(("seek", 0))
            paused = True
        elif op[0] == "step":
            before = len(got.records)
            stepped = replay.step()
            if paused:  # exactly one record, delivered before step() returns
                assert len(got.records) == before + (1 if stepped else 0)
            paused = True
        elif op[0] == "seek":
            replay.seek(max(0.0, op[1] * STEP_NS / 1e9 - 0.001))
            segments.append(("seek", min(op[1], N_RECORDS)))
        elif op[0] == "speed":
            replay.speed = op[1]
        else:
            time.sleep(op[1])
        if paused:
            count = len(got.records)
            time.sleep(0.002)
            assert len(got.records) == count  # paused means nothing more arrives
    replay.speed = 50.0
    replay.start()
    segments.append(("restart", 0))
    assert replay.wait(30)
    delivered = indices(got.records)
    assert explains(delivered, segments, N_RECORDS), (ops, delivered)


def test_model_rejects_loss_duplicates_and_disorder() -> None:
    """The exactness model itself: it rejects a gap, a duplicate, a reorder and an unfinished pass."""
    segs = [("seek", 0), ("restart", 0)]
    assert explains([0, 1, 2, 3], segs, 4)
    assert explains([0, 1, 2, 3, 0, 1, 2, 3], segs, 4)
    assert not explains([0, 2, 3], segs, 4)
    assert not explains([0, 1, 1, 2, 3], segs, 4)
    assert not explains([0, 2, 1, 3], segs, 4)
    assert not explains([0, 1, 2], segs, 4)
    assert not explains([0, 1, 0, 1, 2, 3], segs, 4)  # restart before the end
    assert explains([0, 1, 3], [("seek", 0), ("seek", 3)], 4)


@pytest.mark.slow
def test_replay_onto_the_bus_reaches_a_subscriber(mcl_bus: str, tmp_path: Path) -> None:
    """Bus replay: a real Subscriber on a private bus gets every record, in order, bytes intact."""
    from mcl.network import Subscriber

    log = numbered_log(tmp_path / "log", 200, 100_000, topics=("x/a", "x/b"))
    with Subscriber(bus=mcl_bus) as sub:
        with mcl.Replay(log, speed=20, bus=mcl_bus, wait_for_subscribers=1) as replay:
            replay.start()
            got = [(r.topic, int.from_bytes(r.payload, "big")) for r in receive(sub, 200, 30)]
            assert replay.wait(30)
            assert replay.status().sent == 200
        assert sub.lost == 0
    assert got == [(("x/a", "x/b")[i % 2], i) for i in range(200)]


def test_options_are_the_one_input(tmp_path: Path) -> None:
    """Replay(source, options): keywords build the same options; the speed setter replaces them (no process started)."""
    log = numbered_log(tmp_path / "log", 5, 10 * MS)
    options = ReplayOptions(speed=2.0, start_ns=10 * MS, end_ns=30 * MS, topics=("t",), publish=False)
    by_keywords = mcl.Replay(log, 2, start=0.01, end=0.03, topics="t", publish=False)
    by_options = mcl.Replay(log, options)
    try:
        assert by_keywords.options == by_options.options
        assert by_options.options.start_ns == 10 * MS and by_options.options.origin_ns is not None
        by_options.speed = 8
        assert by_options.options.speed == 8.0 and by_options.speed == 8.0 and isinstance(by_options.options.speed, float)
        assert by_options.status().speed == 8.0
        with pytest.raises(ValueError, match="speed"):
            by_options.speed = -1
        assert by_options.options.speed == 8.0  # a refused value changes nothing
        with pytest.raises(TypeError, match="speed"):
            by_options.speed = "fast"
        with pytest.raises(TypeError, match="either a ReplayOptions or keywords"):
            mcl.Replay(log, options, loop=True)
        with pytest.raises(ValueError, match="after end"):
            ReplayOptions(start_ns=2, end_ns=1)
    finally:
        by_keywords.close()
        by_options.close()


def test_window_is_one_intersection() -> None:
    """The source's window, the options' window and a seek position intersect in one place."""
    options = ReplayOptions(start_ns=100, end_ns=900)
    assert options.window() == (100, 900)
    assert options.window(200, 800) == (200, 800)
    assert options.window(50, 950, from_ns=300) == (300, 900)
    assert ReplayOptions().window(None, None, None) == (None, None)
    assert ReplayOptions().window(None, 5) == (None, 5)


class OpenCounter:
    """Counts mcl.open_log calls and summary reads (a full scan of an MCL_LOG 1.0 log)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import mcl.log.reader as reader

        self.opens = 0
        self.summaries = 0
        real_open, real_summaries = reader.open_log, reader.LogReader.summaries

        def open_log(*args: object, **kwargs: object) -> object:
            self.opens += 1
            return real_open(*args, **kwargs)  # type: ignore[arg-type]

        def summaries(log: object) -> object:
            self.summaries += 1
            return real_summaries(log)  # type: ignore[arg-type]

        monkeypatch.setattr(reader, "open_log", open_log)
        monkeypatch.setattr(reader.LogReader, "summaries", summaries)


def test_construction_opens_the_log_once_without_a_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay(...) on an MCL_LOG 1.0 log: one open, no summary scan; the first status() scans once."""
    log = numbered_log(tmp_path / "log", 30, 10 * MS)
    counter = OpenCounter(monkeypatch)
    replay = mcl.Replay(log, speed=math.inf, hooks=[lambda r: None], start=0.05)
    try:
        assert (counter.opens, counter.summaries) == (1, 0)
        assert replay.status().end_ns == 290 * MS and replay.status().start_ns == 50 * MS
        assert replay.status().end_ns == 290 * MS
        assert (counter.opens, counter.summaries) == (1, 1)
    finally:
        replay.close()
    empty = mcl.Replay(log, speed=math.inf, hooks=[lambda r: None], start=5.0)  # an empty window: no scan at all
    empty.close()
    assert empty.status().end_ns == 5 * 1_000_000_000
    assert (counter.opens, counter.summaries) == (2, 1)


def test_buffer_worker_opens_the_log_once_for_seeks_and_loops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The buffer worker keeps its log open across seeks and loop passes (run in this process, no spawn)."""
    import multiprocessing
    import queue as queue_module

    from mcl.replay.buffer import _BufferWorker, make_source_spec

    log = numbered_log(tmp_path / "log", 10, MS)
    counter = OpenCounter(monkeypatch)
    receive, send = multiprocessing.Pipe(duplex=False)
    options = ReplayOptions(loop=True, batch_records=100)
    worker = _BufferWorker(None, make_source_spec(str(log)), options, queue_module.Queue(), receive, multiprocessing.Value("d", 0.0))  # type: ignore[arg-type]
    try:
        first = worker.read_batch()
        second = worker.read_batch()  # the next pass of the loop
        worker.handle(Seek(1, 5 * MS))
        seeked = worker.read_batch()
    finally:
        worker.close_records()
        worker.source.close()
        receive.close()
        send.close()
    assert [indices([mcl.Record(*r) for r in b[1]]) for b in (first, second, seeked)] == [list(range(10)), list(range(10)), list(range(5, 10))]
    assert seeked[0] == 1 and first[2] is True
    assert counter.opens == 1 and worker.source.opened == 1 and counter.summaries == 0


def test_lateness_percentiles_are_computed_outside_the_worker() -> None:
    """The worker keeps counters and raw samples (O(1) per record); the parent merges them and sorts."""
    from mcl.replay.protocol import LatenessSamples

    worker = LatenessSamples(window=4)
    parent = BatchScheduler.__new__(BatchScheduler)  # only its lateness merge: no pipes, no process
    parent._lateness, parent._lateness_report = LatenessStats(), LatenessReport()
    parent._lock = threading.Lock()
    for late in (5, -3, 7):
        worker.add(late)
    report = worker.report()
    assert report.samples == (5, 0, 7) and report.count == 3 and worker.report().samples == ()  # handed over once
    parent._take_lateness(report)
    for late in range(100, 110):  # more than the window between two reports: counters see all of them
        worker.add(late)
    parent._take_lateness(worker.report())
    snapshot = parent.lateness()
    assert snapshot["count"] == 13 and snapshot["max_ns"] == 109 and snapshot["mean_ns"] == (12 + sum(range(100, 110))) // 13
    assert snapshot["p99_ns"] == 109 and snapshot["p50_ns"] == 106  # nearest rank over 0, 5, 7, 106, 107, 108, 109
    worker.reset()  # a stop(): a new epoch drops the parent's window
    worker.add(42)
    parent._take_lateness(worker.report())
    assert parent.lateness() == {"count": 1, "mean_ns": 42, "p50_ns": 42, "p99_ns": 42, "max_ns": 42}


@pytest.mark.parametrize("fmt", ["native", "mcl1"])
def test_status_end_is_the_end_of_the_selected_topics(tmp_path: Path, fmt: str) -> None:
    """With a topic selection, status().end_ns is the last record of those topics, not of the whole log."""
    log = tmp_path / "log"
    with mcl.LogWriter(log, format=fmt) as writer:
        for i in range(11):
            writer.write("often", i.to_bytes(4, "big"), i * 1000 * MS)  # 0 .. 10 s
        writer.write("early", b"x", 1500 * MS)  # once, at 1.5 s
    with mcl.Replay(str(log), topics=["early"], publish=False) as replay:
        assert replay.status().end_ns == 1500 * MS
    with mcl.Replay(str(log), topics=["often"], end=7.5, publish=False) as replay:
        assert replay.status().end_ns == 7500 * MS  # the window still bounds it
    with mcl.Replay(str(log), publish=False) as replay:
        assert replay.status().end_ns == 10_000 * MS
    with mcl.open_log(log, topics=["early", "often"]) as reader, mcl.open_log(log, topics=["nothing"]) as none:
        assert reader.last_ns() == 10_000 * MS and none.last_ns() is None
    with mcl.Replay(str(log), exclude="^often$", publish=False) as replay:
        status = replay.status()
        assert (status.start_ns, status.end_ns) == (1500 * MS, 1500 * MS)
