"""Tests of mcl.open_log (merge, filters, time window, several logs) and the original ReadFile / ReadDirectory protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

import mcl
from mcl.log.record import Record
from mcl.message import GenericMessage, decode, encode

S = 1_000_000_000


def _write(path: Path, origin_s: int, rows: list[tuple[float, str, object]]) -> Path:
    with mcl.LogWriter(path, format="mcl1", origin_ns=origin_s * S) as writer:
        for t, topic, value in rows:
            writer.write(topic, encode(value), round(t * S))
    return path


def _msg(name: str, i: int) -> GenericMessage:
    return GenericMessage(name, {"i": i}, timestamp=0.0)


@pytest.fixture()
def two_topics(tmp_path: Path) -> Path:
    """A log with topics 'a' (Alpha, every 1 s from 0) and 'b' (Beta, every 1 s from 0.5)."""
    rows = [(float(i), "a", _msg("Alpha", i)) for i in range(5)] + [(i + 0.5, "b", _msg("Beta", i)) for i in range(5)]
    return _write(tmp_path / "two", 1000, rows)


def test_records_are_merged_in_time_order(two_topics: Path) -> None:
    """Records of several files come back in time order with int ns, str topic and bytes payload."""
    with mcl.open_log(two_topics) as log:
        recs = list(log)
    assert [r.elapsed_ns for r in recs] == [i * S // 2 for i in range(10)]
    assert [r.topic for r in recs] == ["a", "b"] * 5
    assert all(isinstance(r, Record) and isinstance(r.payload, bytes) for r in recs)
    assert log.origin_ns == 1000 * S


def test_topic_filter(two_topics: Path) -> None:
    """topics= keeps only the topics named exactly (a string or a list)."""
    with mcl.open_log(two_topics, topics=["b"]) as log:
        assert [r.topic for r in log] == ["b"] * 5
    with mcl.open_log(two_topics, topics="a") as log:
        assert len(list(log)) == 5
    with mcl.open_log(two_topics, topics=["nope"]) as log:
        assert list(log) == []


def test_time_window_is_inclusive(two_topics: Path) -> None:
    """start and end (seconds) keep records at exactly those times."""
    with mcl.open_log(two_topics, start=1.0, end=3.0) as log:
        assert [r.elapsed_ns for r in log] == [S, 3 * S // 2, 2 * S, 5 * S // 2, 3 * S]
    with mcl.open_log(two_topics, start=4.5) as log:
        assert [r.elapsed_ns for r in log] == [9 * S // 2]
    with pytest.raises(mcl.LogError, match="after end"):
        mcl.open_log(two_topics, start=3, end=1)


def test_iterating_again_starts_from_the_beginning(two_topics: Path) -> None:
    """A reader can be iterated several times; after close it refuses with a RuntimeError."""
    log = mcl.open_log(two_topics)
    assert list(log) == list(log)
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        list(log)


def test_several_logs_merge_by_absolute_time(tmp_path: Path) -> None:
    """Two logs with origins 10 s apart interleave by absolute time; elapsed counts from the earliest origin."""
    early = _write(tmp_path / "early", 100, [(0.0, "x", _msg("E", 0)), (15.0, "x", _msg("E", 1))])
    late = _write(tmp_path / "late", 110, [(0.0, "y", _msg("L", 0)), (1.0, "y", _msg("L", 1))])
    with mcl.open_log(late, early) as log:
        recs = list(log)
        assert log.origin_ns == 100 * S
    assert [(r.elapsed_ns // S, decode(r.payload).name) for r in recs] == [(0, "E"), (10, "L"), (11, "L"), (15, "E")]
    with mcl.open_log(early, late, start=10, end=11) as log:
        assert [r.elapsed_ns // S for r in log] == [10, 11]


def test_raw_records_are_included(reference_dir: Path) -> None:
    """open_log includes raw-typed files (30 records in the original dataset)."""
    with mcl.open_log(reference_dir / "dataset") as log:
        assert sum(1 for _ in log) == 30


def test_missing_paths_raise_log_not_found(tmp_path: Path) -> None:
    """A path that does not exist raises LogNotFound naming it; no path at all is a LogError."""
    with pytest.raises(mcl.LogNotFound, match="nowhere"):
        mcl.open_log(tmp_path / "nowhere")
    with pytest.raises(mcl.LogError, match="no log path"):
        mcl.open_log()


def test_read_file_protocol(two_topics: Path) -> None:
    """read() gives {'elapsed_time', 'topic', 'payload'} then None; is_data_pending and reset work."""
    reader = mcl.ReadFile(str(two_topics), min_time=1.0, max_time=2.0)
    try:
        first = reader.read()
        assert first == {"elapsed_time": 1.0, "topic": "a", "payload": {"name": "Alpha", "timestamp": 0.0, "i": 1}}
        assert reader.read()["elapsed_time"] == 1.5  # type: ignore[index]
        assert reader.read()["elapsed_time"] == 2.0  # type: ignore[index]
        assert not reader.is_data_pending() and reader.read() is None
        reader.reset()
        assert reader.is_data_pending() and reader.read() == first
    finally:
        reader.close()


def test_read_directory_payload_modes(two_topics: Path) -> None:
    """message=True decodes to messages, raw=True keeps the payload bytes."""
    with mcl.ReadDirectory(two_topics, message=True) as reader:
        assert reader.read()["payload"] == _msg("Alpha", 0)  # type: ignore[index]
    with mcl.ReadDirectory(two_topics, raw=True) as reader:
        assert reader.read()["payload"] == _msg("Alpha", 0).encode()  # type: ignore[index]
    with pytest.raises(mcl.LogError, match="not a directory"):
        mcl.ReadDirectory(two_topics / "Alpha.log")


def test_vehicle_sample_log(sample_logs: Path) -> None:
    """sample_logs/vehicle holds imu 100 Hz, gps 10 Hz and camera 30 Hz for 10 s, decoding to the example types."""
    from mcl.examples.vehicle import CameraFrame, GpsFix, ImuSample

    counts: dict[str, int] = {}
    with mcl.open_log(sample_logs / "vehicle") as log:
        for rec in log:
            counts[rec.topic] = counts.get(rec.topic, 0) + 1
            if counts[rec.topic] == 1:
                msg = decode(rec.payload)
                expected = {"imu": ImuSample, "gps": GpsFix, "camera/front": CameraFrame}[rec.topic]
                assert type(msg) is expected
                if rec.topic == "imu":
                    assert msg.accel.shape == (3,) and msg.accel.dtype.kind == "f"
        assert log.duration_ns < 10 * S
    assert counts == {"imu": 1000, "gps": 100, "camera/front": 300}
