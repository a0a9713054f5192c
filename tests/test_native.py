"""Native log format: round trips, seeking, filters, splits, metadata, merging with MCL_LOG 1.0."""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcl
from mcl.exceptions import LogDamageWarning, LogExistsError, LogFormatError
from mcl.log.mcl1 import Mcl1Writer
from mcl.log.native import NativeSource, NativeWriter, data_files, probe
from mcl.log.native_layout import INDEX_ENTRY, INDEX_HEADER, read_index, read_file_header
from mcl.log.record import Record
from tests.strategies import records

ORIGIN = 1_700_000_000_123_456_789


def _write(path: Path, recs: list[Record], **options) -> NativeWriter:
    with NativeWriter(path, origin_ns=ORIGIN, **options) as writer:
        for rec in recs:
            writer.write_record(rec)
    return writer


def _read(path: Path, **kwargs) -> list[Record]:
    with mcl.open_log(path, **kwargs) as reader:
        return list(reader)


def _message(i: int, name: str = "Pose") -> bytes:
    return msgpack.packb({"name": name, "timestamp": i / 10, "x": i})


def _many(n: int, topics: int = 3, step_ns: int = 1_000_000) -> list[Record]:
    return [Record(i * step_ns, f"topic {i % topics}", _message(i, f"T{i % topics}")) for i in range(n)]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=records(max_size=60), chunk_size=st.sampled_from([1, 200, 1 << 20]), compression=st.sampled_from([None, "zstd"]))
def test_round_trip_gives_back_the_same_records(recs: list[Record], chunk_size: int, compression: str | None) -> None:
    """Any records written come back identical (payload bytes, ns times, unicode topics), in order."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log"
        _write(path, recs, chunk_size=chunk_size, compression=compression)
        assert _read(path) == recs
        with NativeSource(path) as source:
            summary = source.summary()
            assert source.origin_ns == ORIGIN
        assert summary.indexed and summary.messages == len(recs) and not summary.damage
        assert {t: s.messages for t, s in summary.topics.items()} == {
            t: sum(1 for r in recs if r.topic == t) for t in {r.topic for r in recs}
        }
        assert summary.start_ns == (recs[0].elapsed_ns if recs else None)
        assert summary.end_ns == (recs[-1].elapsed_ns if recs else None)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    recs=records(topic=st.sampled_from(["a", "b", "c d"]), max_size=80),
    lo=st.integers(0, 100_000 * 10**9),
    width=st.integers(0, 50_000 * 10**9),
    wanted=st.sets(st.sampled_from(["a", "b", "c d", "zz"])),
)
def test_window_and_topic_filters_match_filtering_in_python(recs: list[Record], lo: int, width: int, wanted: set[str]) -> None:
    """Seeking to a window and filtering topics gives exactly the records a list filter keeps."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log"
        _write(path, recs, chunk_size=300)
        with NativeSource(path) as source:
            got = list(source.iter_records(wanted.__contains__, lo, lo + width))
    assert got == [r for r in recs if lo <= r.elapsed_ns <= lo + width and r.topic in wanted]


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(recs=records(topic=st.sampled_from(["a", "b"]), max_size=60), seed=st.integers(0, 2**32 - 1), chunk=st.sampled_from([1, 100, 5000]))
def test_records_written_out_of_order_are_read_in_time_order(recs: list[Record], seed: int, chunk: int) -> None:
    """Records written out of time order come back sorted by time, ties in the order written."""
    shuffled = list(recs)
    random.Random(seed).shuffle(shuffled)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log"
        _write(path, shuffled, chunk_size=chunk)
        got = _read(path)
        assert got == sorted(shuffled, key=lambda r: r.elapsed_ns)
        start = recs[len(recs) // 2].elapsed_ns + 1 if recs else 0
        with NativeSource(path) as source:
            assert list(source.iter_records(start_ns=start)) == [r for r in got if r.elapsed_ns >= start]


def test_seek_reads_only_the_chunks_it_needs(tmp_path: Path) -> None:
    """Seeking jumps through the index: a damaged chunk before the start is never read (no warning)."""
    recs = _many(3000)
    path = tmp_path / "log"
    _write(path, recs, chunk_size=4000)
    with NativeSource(path) as source:
        chunks = source._files[0].scan.chunks
    assert len(chunks) > 20
    victim = chunks[3]
    with open(data_files(path)[0], "r+b") as fp:
        fp.seek(victim.offset + victim.length - 5)
        fp.write(b"\0\0\0\0\0")
    start_ns = chunks[10].start_ns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _read(path, start=start_ns / 1e9)
    assert got == [r for r in recs if r.elapsed_ns >= start_ns]
    with pytest.warns(LogDamageWarning, match=f"byte {victim.offset}"):
        got = _read(path)
    assert len(got) == len(recs) - victim.count


def test_metadata_origin_and_types_are_kept(tmp_path: Path) -> None:
    """Time origin (ns), host, revision, user keys and message type names are in the summary."""
    path = tmp_path / "log"
    with mcl.LogWriter(path, origin_ns=ORIGIN, metadata={"revision": "r42", "vehicle": "ute 3"}) as writer:
        writer.write("pose", _message(1, "Pose"), 5)
        writer.write("raw", b"\x01\x02", 7)
        writer.write("pose", _message(2, "Pose"), 9)
    assert writer.format == "native" and isinstance(writer, NativeWriter)
    with mcl.open_log(path) as reader:
        summary = reader.summaries()[0]
        assert reader.origin_ns == ORIGIN
    assert summary.format == "native" and summary.origin_ns == ORIGIN
    assert summary.metadata["revision"] == "r42" and summary.metadata["vehicle"] == "ute 3"
    assert summary.metadata["host"] == os.uname().nodename
    assert summary.topics["pose"].types == {"Pose"} and summary.topics["raw"].types == set()
    assert (summary.topics["pose"].messages, summary.topics["pose"].first_ns, summary.topics["pose"].last_ns) == (2, 5, 9)
    assert summary.size_bytes == sum(f.stat().st_size for f in data_files(path))


def test_split_by_size_keeps_files_under_the_limit(tmp_path: Path) -> None:
    """split_size starts new data files, each at most the limit, and the log reads back whole."""
    recs = _many(2000)
    path = tmp_path / "log"
    writer = _write(path, recs, split_size=20_000)
    files = data_files(path)
    assert len(files) == len(writer.files) > 3
    assert all(f.stat().st_size <= 20_000 for f in files)
    assert all(f.with_suffix(".mcli").exists() for f in files)
    assert _read(path) == recs
    assert [r for f in files for r in _read(f)] == recs


def test_split_by_duration_keeps_each_file_within_the_duration(tmp_path: Path) -> None:
    """split_duration starts a new data file when a record is that far after the file's first one."""
    recs = _many(500, step_ns=10_000_000)  # 5 s
    path = tmp_path / "log"
    with mcl.LogWriter(path, origin_ns=ORIGIN, split_duration=1.0) as writer:
        for rec in recs:
            writer.write_record(rec)
    files = data_files(path)
    assert len(files) == 5
    for f in files:
        with NativeSource(f) as source:
            s = source.summary()
        assert s.end_ns - s.start_ns < 1_000_000_000
    assert _read(path) == recs


def test_writer_never_overwrites_a_log(tmp_path: Path) -> None:
    """A directory holding anything, or a file, is refused; an empty directory is used."""
    path = tmp_path / "log"
    _write(path, _many(3))
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(LogExistsError, match="never overwrites"):
        NativeWriter(path, origin_ns=ORIGIN)
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(LogExistsError):
        NativeWriter(tmp_path / "file", origin_ns=ORIGIN)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty", _many(2))
    assert len(_read(tmp_path / "empty")) == 2


def test_writer_misuse_is_reported(tmp_path: Path) -> None:
    """Writing after close is a RuntimeError; bad options and payload types are refused clearly."""
    writer = NativeWriter(tmp_path / "log", origin_ns=ORIGIN)
    writer.write("a", b"x", 1)
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.write("a", b"y", 2)
    with pytest.raises(RuntimeError, match="closed"):
        writer.write("new topic", b"y", 2)
    assert _read(tmp_path / "log") == [Record(1, "a", b"x")]
    with pytest.raises(mcl.LogError, match="compression"):
        NativeWriter(tmp_path / "other", origin_ns=0, compression="lz4")
    with NativeWriter(tmp_path / "third", origin_ns=0) as w:
        with pytest.raises(TypeError, match="payload must be bytes"):
            w.write("t", "text", 1)  # type: ignore[arg-type]


def test_flush_makes_records_readable_while_writing(tmp_path: Path) -> None:
    """After flush() a reader opening the log sees every record so far (no index yet)."""
    path = tmp_path / "log"
    with NativeWriter(path, origin_ns=ORIGIN, flush_interval_ns=None) as writer:
        writer.write("a", b"1", 1)
        writer.write("a", b"2", 2)
        assert _read(path) == []
        writer.flush()
        with NativeSource(path) as source:
            assert list(source.iter_records()) == [Record(1, "a", b"1"), Record(2, "a", b"2")]
            assert not source.summary().indexed
    assert _read(path) == [Record(1, "a", b"1"), Record(2, "a", b"2")]


def test_zstd_compression_shrinks_repetitive_payloads(tmp_path: Path) -> None:
    """compression='zstd' stores fewer bytes and reads back the same records."""
    recs = [Record(i, "t", b"same bytes " * 20) for i in range(2000)]
    _write(tmp_path / "plain", recs)
    _write(tmp_path / "packed", recs, compression="zstd")
    plain = sum(f.stat().st_size for f in data_files(tmp_path / "plain"))
    packed = sum(f.stat().st_size for f in data_files(tmp_path / "packed"))
    assert packed * 5 < plain
    assert _read(tmp_path / "packed") == recs


def test_probe_recognises_native_logs_only(tmp_path: Path) -> None:
    """probe is true for a native directory or data file, false for text logs and other files."""
    _write(tmp_path / "log", _many(2))
    assert probe(tmp_path / "log") and probe(data_files(tmp_path / "log")[0])
    (tmp_path / "other.bin").write_bytes(b"hello")
    assert not probe(tmp_path / "other.bin")
    renamed = tmp_path / "copy.dat"
    renamed.write_bytes(data_files(tmp_path / "log")[0].read_bytes())
    assert probe(renamed) and len(_read(renamed)) == 2
    bogus = tmp_path / "bogus.mcln"
    bogus.write_bytes(b"not a log at all, just text" * 10)
    with pytest.raises(LogFormatError, match="bogus.mcln: byte 0: not an mcl native data file"):
        mcl.open_log(bogus)


def test_native_and_mcl1_logs_merge_by_absolute_time(tmp_path: Path) -> None:
    """open_log on a native and an MCL_LOG 1.0 log with different origins merges by absolute time."""
    second = 1_000_000_000
    origin_text = 1_700_000_000 * second  # whole seconds: MCL_LOG 1.0 keeps µs
    with Mcl1Writer(tmp_path / "text", origin_ns=origin_text) as w:
        for i in range(5):
            w.write("old", _message(i, "Old"), i * second)  # absolute: origin + 0, 1, ..., 4 s
    with NativeWriter(tmp_path / "bin", origin_ns=origin_text + 2 * second + 500) as w:
        for i in range(3):
            w.write("new", _message(i, "New"), i * second)  # absolute: origin + 2 s + 500 ns, ...
    with mcl.open_log(tmp_path / "bin", tmp_path / "text") as reader:
        assert reader.origin_ns == origin_text
        got = [(r.elapsed_ns, r.topic) for r in reader]
    assert got == [
        (0, "old"), (second, "old"), (2 * second, "old"), (2 * second + 500, "new"),
        (3 * second, "old"), (3 * second + 500, "new"), (4 * second, "old"), (4 * second + 500, "new"),
    ]


def test_mcl1_records_survive_a_native_round_trip(tmp_path: Path, reference_dir: Path) -> None:
    """Records read from an MCL_LOG 1.0 reference log are identical after writing them natively."""
    with mcl.open_log(reference_dir / "dataset") as reader:
        recs = list(reader)
        origin = reader.origin_ns
    with mcl.LogWriter(tmp_path / "log", origin_ns=origin) as writer:
        for rec in recs:
            writer.write_record(rec)
    assert len(recs) == 30 and _read(tmp_path / "log") == recs


def test_index_layout_matches_the_chunks(tmp_path: Path) -> None:
    """The index file lists every chunk with its offset, length, count and time range."""
    recs = _many(1000)
    path = tmp_path / "log"
    _write(path, recs, chunk_size=5000)
    data = data_files(path)[0]
    index = data.with_suffix(".mcli").read_bytes()
    nchunks = INDEX_HEADER.unpack_from(index)[6]
    assert len(index) == INDEX_HEADER.size + INDEX_HEADER.unpack_from(index)[5] + nchunks * INDEX_ENTRY.size + 4
    fd = os.open(data, os.O_RDONLY)
    try:
        scan = read_index(data, data.stat().st_size, read_file_header(fd, data).crc)
    finally:
        os.close(fd)
    assert scan is not None and len(scan.chunks) == nchunks > 5
    assert sum(c.count for c in scan.chunks) == 1000
    assert all(a.offset + a.length == b.offset for a, b in zip(scan.chunks, scan.chunks[1:]))
    assert scan.chunks[-1].offset + scan.chunks[-1].length == data.stat().st_size
