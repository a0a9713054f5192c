"""The Recorder (mcl.recorder): what it records, loss accounting, splitting, rotation, failures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import wait_until
from test_record_helpers import FMT, payloads, publish_all, read_back

import mcl
from mcl.exceptions import RecordError
from mcl.recorder import ACCOUNTING_FILE, Recorder, make_log_path


def test_make_log_path_names_and_never_reuses(tmp_path: Path) -> None:
    """Log directories are <UTC timestamp>_<host>, and a taken name gets a suffix, never reused."""
    when = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20Z
    first = make_log_path(tmp_path, when, host="rig 1/a")
    second = make_log_path(tmp_path, when, host="rig 1/a")
    assert first.name == "20231114T221320Z_rig-1-a"
    assert second.name == "20231114T221320Z_rig-1-a_2"
    assert first.is_dir() and second.is_dir()
    (tmp_path / "20231114T221320Z_rig-1-a_3").mkdir()
    assert make_log_path(tmp_path, when, host="rig 1/a").name == "20231114T221320Z_rig-1-a_4"


def test_make_log_path_under_a_file_is_a_record_error(tmp_path: Path) -> None:
    """An output directory that cannot be created gives a RecordError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RecordError, match="file"):
        make_log_path(blocker / "sub")


def test_recorder_records_every_message_in_order(mcl_bus: str, tmp_path: Path) -> None:
    """Everything published is recorded once, in order, with exact payload bytes and counts."""
    sent = payloads(600, topics=("imu", "gps", "cam/left"))
    with Recorder(tmp_path / "log", mcl_bus, format=FMT) as rec:
        publish_all(mcl_bus, sent)
        wait_until(lambda: rec.status().messages >= len(sent))
    final = rec.status()
    assert not final.running
    assert final.messages == len(sent)
    assert final.bytes == sum(len(p) for _, p in sent)
    assert final.lost == 0
    assert {t: s.messages for t, s in final.topics.items()} == {"imu": 200, "gps": 200, "cam/left": 200}
    records = read_back(tmp_path / "log")
    assert [(r.topic, r.payload) for r in records] == sent
    elapsed = [r.elapsed_ns for r in records]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0


def test_recorder_topic_filter(mcl_bus: str, tmp_path: Path) -> None:
    """Only the topics asked for are recorded (prefix match by default, exact on request)."""
    sent = payloads(300, topics=("imu", "imu2", "gps"))
    with Recorder(tmp_path / "prefix", mcl_bus, topics=["imu"], format=FMT) as rec1, Recorder(
        tmp_path / "exact", mcl_bus, topics="imu", exact=True, format=FMT
    ) as rec2:
        publish_all(mcl_bus, sent, subscribers=2)
        wait_until(lambda: rec1.status().messages >= 200 and rec2.status().messages >= 100)
    assert [(r.topic, r.payload) for r in read_back(tmp_path / "prefix")] == [s for s in sent if s[0] in ("imu", "imu2")]
    assert [(r.topic, r.payload) for r in read_back(tmp_path / "exact")] == [s for s in sent if s[0] == "imu"]


def test_recorder_stops_by_itself_after_count_and_duration(mcl_bus: str, tmp_path: Path) -> None:
    """count=N records exactly N messages; duration_ns ends the recording on time."""
    sent = payloads(100)
    rec = Recorder(tmp_path / "count", mcl_bus, format=FMT, count=40).start()
    try:
        publish_all(mcl_bus, sent)  # more than `count`: the recorder must stop at 40 by itself
        assert rec.wait(10)
    finally:
        final = rec.stop()
    assert final.messages == 40
    assert [(r.topic, r.payload) for r in read_back(tmp_path / "count")] == sent[:40]

    t0 = time.monotonic()
    with Recorder(tmp_path / "duration", mcl_bus, format=FMT, duration_ns=300_000_000) as rec:
        assert rec.wait(10)
        took = time.monotonic() - t0
    assert 0.25 < took < 10.0  # the start-up is not counted: generous on a loaded machine
    assert rec.status().elapsed_ns >= 300_000_000


def test_recorder_publisher_restart_is_not_loss(mcl_bus: str, tmp_path: Path) -> None:
    """A publisher that goes away and comes back (new id, sequence from 0) costs no loss."""
    with Recorder(tmp_path / "log", mcl_bus, format=FMT) as rec:
        publish_all(mcl_bus, payloads(50))
        publish_all(mcl_bus, payloads(50))
        wait_until(lambda: rec.status().messages >= 100)
    final = rec.status()
    assert final.messages == 100
    assert final.lost == 0
    assert final.publishers == 2


def test_recorder_without_path_counts_and_calls_back(mcl_bus: str) -> None:
    """path=None writes nothing but counts, and on_message sees each message decoded."""
    seen: list[tuple[str, object]] = []
    sent = [("t", mcl.encode({"i": i})) for i in range(20)]
    with Recorder(None, mcl_bus, on_message=lambda r: seen.append((r.topic, r.message))) as rec:
        publish_all(mcl_bus, sent)
        wait_until(lambda: rec.status().messages >= 20)
    assert rec.status().path is None and rec.status().files == 0
    assert seen == [("t", {"i": i}) for i in range(20)]


def test_recorder_split_size_and_rotation(mcl_bus: str, tmp_path: Path) -> None:
    """split_size starts new data files; max_files keeps only the newest N, and the rest reads back."""
    sent = payloads(3000, size=200)
    with Recorder(tmp_path / "log", mcl_bus, format="native", split_size=64_000, max_files=3, flush_interval_ns=20_000_000) as rec:
        publish_all(mcl_bus, sent)
        wait_until(lambda: rec.status().messages >= len(sent))
        wait_until(lambda: rec.status().files <= 3)
    final = rec.status()
    assert final.messages == len(sent) and final.lost == 0
    data = sorted(p for p in (tmp_path / "log").iterdir() if p.suffix == ".mcln")
    assert 1 < len(data) <= 3
    records = read_back(tmp_path / "log")
    # The newest files hold the end of the recording, unbroken.
    assert 0 < len(records) < len(sent)
    assert [(r.topic, r.payload) for r in records] == sent[len(sent) - len(records):]


def test_recorder_split_duration_mcl1(mcl_bus: str, tmp_path: Path) -> None:
    """split_duration_ns splits an MCL_LOG 1.0 recording into _000, _001 ... that read back whole."""
    sent = payloads(40)
    with Recorder(tmp_path / "log", mcl_bus, format="mcl1", split_duration_ns=100_000_000) as rec:
        for i in range(0, 40, 10):
            publish_all(mcl_bus, sent[i : i + 10])
            # Received (and stamped) before the pause, however loaded the machine.
            wait_until(lambda: rec.status().messages >= i + 10, 10)
            time.sleep(0.15)
        wait_until(lambda: rec.status().messages >= 40)
    names = sorted(p.name for p in (tmp_path / "log").iterdir() if p.name != ACCOUNTING_FILE)
    assert len(names) >= 3 and all(n.endswith(".log") for n in names)
    assert [(r.topic, r.payload) for r in read_back(tmp_path / "log")] == sent


def test_recorder_compression(mcl_bus: str, tmp_path: Path) -> None:
    """compression='zstd' writes a smaller native log that reads back identical."""
    sent = [("t", b"x" * 500 + i.to_bytes(4, "little")) for i in range(400)]
    with Recorder(tmp_path / "zstd", mcl_bus, format="native", compression="zstd") as rec:
        publish_all(mcl_bus, sent)
        wait_until(lambda: rec.status().messages >= len(sent))
    size = sum(p.stat().st_size for p in (tmp_path / "zstd").iterdir())
    assert size < sum(len(p) for _, p in sent) / 4
    assert [(r.topic, r.payload) for r in read_back(tmp_path / "zstd")] == sent


def test_recorder_refuses_bad_combinations(tmp_path: Path) -> None:
    """Compression or rotation with MCL_LOG 1.0, and nonsense limits, are refused before anything starts."""
    with pytest.raises(RecordError, match="native"):
        Recorder(tmp_path / "a", format="mcl1", compression="zstd")
    with pytest.raises(RecordError, match="native"):
        Recorder(tmp_path / "b", format="mcl1", max_files=2)
    with pytest.raises(ValueError, match="max_files"):
        Recorder(tmp_path / "c", max_files=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_recorder_refuses_an_existing_log_and_an_unwritable_place(mcl_bus: str, tmp_path: Path) -> None:
    """start() raises at once for a directory holding a log or a path under a file."""
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("mine")
    with pytest.raises(mcl.LogExistsError):
        Recorder(tmp_path / "old", mcl_bus, format=FMT).start()
    assert (tmp_path / "old" / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(mcl.LogError, match="file"):
        Recorder(tmp_path / "file" / "log", mcl_bus, format=FMT).start()


def test_recorder_lifecycle_misuse(mcl_bus: str, tmp_path: Path) -> None:
    """Starting twice is a RuntimeError; stop() is idempotent."""
    rec = Recorder(tmp_path / "log", mcl_bus, format=FMT)
    rec.start()
    try:
        with pytest.raises(RuntimeError, match="twice"):
            rec.start()
    finally:
        rec.stop()
    assert rec.stop().running is False


def test_recorder_write_failure_keeps_what_was_written(mcl_bus: str, tmp_path: Path) -> None:
    """A write that fails (file size limit) stops the recording with a RecordError; the log reads back."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    sent = payloads(2000, size=100)
    rec = Recorder(tmp_path / "log", mcl_bus, format=FMT, flush_interval_ns=10_000_000).start()
    # The limit applies to the whole process, so only while this test publishes.
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, hard))
    try:
        for i in range(0, len(sent), 100):  # spread over several flushes: some chunks fit under the limit
            publish_all(mcl_bus, sent[i : i + 100])
            time.sleep(0.03)
            if not rec.running:
                break
        assert rec.wait(10)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        with pytest.raises(RecordError, match="cannot write.*readable"):
            rec.stop()
    status = rec.status()
    assert status.error is not None and not status.running
    records = read_back(tmp_path / "log", damaged_ok=True)
    assert 0 < len(records) < len(sent)
    assert [(r.topic, r.payload) for r in records] == sent[: len(records)]
