"""Tests of MCL_LOG 1.0 (mcl/log/mcl1.py) against the original MCL files, and write -> read round trips."""

from __future__ import annotations

import warnings
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import MCL1_RESOLUTION_NS, mcl1_topics, payloads, records, type_names

import mcl
from mcl.exceptions import LogError
from mcl.log.mcl1 import Mcl1Source, Mcl1Writer
from mcl.log.record import Record
from mcl.message import GenericMessage, decode, encode, type_name_of

S = 1_000_000_000
REVISION = "ffff" + "0" * 36


def _read(*paths: Path | str, **kwargs: object) -> list[Record]:
    with mcl.open_log(*paths, **kwargs) as log:  # type: ignore[arg-type]
        return list(log)


def _check_stream(recs: list[Record], name: str, times_s: list[float]) -> None:
    assert [r.elapsed_ns for r in recs] == [round(t * S) for t in times_s]
    for rec, t in zip(recs, times_s):
        assert rec.topic == ""
        # The original computed the values by accumulation (0.30000000000000004...).
        assert msgpack.unpackb(rec.payload) == {"name": name, "timestamp": pytest.approx(t), "data": pytest.approx(t)}


A_TIMES = [i / 100 for i in range(10)]
B_TIMES = [i / 10 for i in range(1, 11)]


def test_each_reference_file_reads_back(reference_dir: Path) -> None:
    """Each original file alone gives the 10 records its README states."""
    d = reference_dir / "dataset"
    _check_stream(_read(d / "UnitTestMessageA.log"), "UnitTestMessageA", A_TIMES)
    _check_stream(_read(d / "UnitTestMessageB.log"), "UnitTestMessageB", B_TIMES)
    raw = _read(d / "RawUnitTestData.log")
    assert [r.elapsed_ns for r in raw] == [(i + 1) * S for i in range(10)]
    assert [msgpack.unpackb(r.payload) for r in raw] == [list(range(i)) * i for i in range(10)]


def test_reference_directory_merges_30_records_with_tie_order(reference_dir: Path) -> None:
    """dataset/ merges A, B and raw records in time order; at 1.0 s the raw file comes first."""
    recs = _read(reference_dir / "dataset")
    assert len(recs) == 30
    times = [r.elapsed_ns for r in recs]
    assert times == sorted(times)
    names = [type_name_of(r.payload) for r in recs]
    assert names[:10] == ["UnitTestMessageA"] * 10
    at_one = [n for r, n in zip(recs, names) if r.elapsed_ns == S]
    assert at_one == [None, "UnitTestMessageB"]  # RawUnitTestData.log sorts before UnitTestMessageB.log
    assert names.count(None) == 10 and names.count("UnitTestMessageB") == 10


def test_reference_header_fields(reference_dir: Path) -> None:
    """The header gives the time origin (1970-01-01 UTC), the revision and the type of each file."""
    with Mcl1Source(reference_dir / "dataset") as source:
        assert source.origin_ns == 0
        assert source.type_names() == {
            "RawUnitTestData": None,
            "UnitTestMessageA": "UnitTestMessageA",
            "UnitTestMessageB": "UnitTestMessageB",
        }
        summary = source.summary()
    assert summary.metadata["revision"] == REVISION
    assert (summary.messages, summary.start_ns, summary.end_ns, summary.damage) == (30, 0, 10 * S, [])
    assert summary.topics[""].types == {"UnitTestMessageA", "UnitTestMessageB"}


def test_split_dataset_reads_as_the_unsplit_one(reference_dir: Path) -> None:
    """dataset_split/ gives 20 records; each series prefix gives its 10, times continuing across parts."""
    split = reference_dir / "dataset_split"
    recs = _read(split)
    assert len(recs) == 20
    assert recs == [r for r in _read(reference_dir / "dataset") if type_name_of(r.payload) is not None]
    _check_stream(_read(split / "UnitTestMessageA"), "UnitTestMessageA", A_TIMES)
    _check_stream(_read(split / "UnitTestMessageB"), "UnitTestMessageB", B_TIMES)


def test_split_part_without_header_reads_alone(reference_dir: Path) -> None:
    """A middle part (no header) read on its own gives its records with their elapsed times."""
    part = _read(reference_dir / "dataset_split" / "UnitTestMessageB_002.log")
    assert part and all(type_name_of(r.payload) == "UnitTestMessageB" for r in part)
    assert all(r.elapsed_ns == round(msgpack.unpackb(r.payload)["timestamp"] * S) for r in part)


def test_original_read_directory_protocol(reference_dir: Path) -> None:
    """ReadDirectory returns dicts, then None; ignore_raw=True gives the original 20 records."""
    reader = mcl.ReadDirectory(str(reference_dir / "dataset"), message=True, ignore_raw=True)
    try:
        items = []
        while reader.is_data_pending():
            items.append(reader.read())
        assert reader.read() is None
        assert len(items) == 20
        assert items[0]["elapsed_time"] == 0.0 and items[0]["topic"] == ""
        assert items[0]["payload"].name == "UnitTestMessageA"
    finally:
        reader.close()


def test_writer_reproduces_original_file_bytes(reference_dir: Path, tmp_path: Path) -> None:
    """Writing the records of UnitTestMessageA.log with its origin, revision and '# ' blank lines gives the same bytes."""
    original = reference_dir / "dataset" / "UnitTestMessageA.log"
    with mcl.LogWriter(
        tmp_path / "log", format="mcl1", origin_ns=0, metadata={"revision": REVISION}, blank_line="# "
    ) as writer:
        for rec in _read(original):
            writer.write_record(rec)
    assert (tmp_path / "log" / "UnitTestMessageA.log").read_bytes() == original.read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records(topic=mcl1_topics(), payload=payloads(), resolution_ns=MCL1_RESOLUTION_NS))
def test_write_read_round_trip(tmp_path_factory: pytest.TempPathFactory, written: list[Record]) -> None:
    """Any records (topics, payloads, 10 µs times) come back: time-ordered, each type's stream in order."""
    path = tmp_path_factory.mktemp("rt") / "log"
    with mcl.LogWriter(path, format="mcl1", origin_ns=1_700_000_000 * S) as writer:
        for rec in written:
            writer.write_record(rec)
    back = _read(path) if written else []
    assert sorted(back) == sorted(written)
    assert [r.elapsed_ns for r in back] == sorted(r.elapsed_ns for r in back)
    for name in {type_name_of(r.payload) for r in written}:
        assert [r for r in back if type_name_of(r.payload) == name] == [
            r for r in written if type_name_of(r.payload) == name
        ]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(type_names())
def test_type_names_with_underscores(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    """Type names with underscores and trailing _NNN, split or not, read back as one stream of that type."""
    for split in (None, 400):
        path = tmp_path_factory.mktemp("us") / "log"
        msgs = [GenericMessage(name, {"i": i}, timestamp=float(i)) for i in range(8)]
        with mcl.LogWriter(path, format="mcl1", origin_ns=0, split_size=split) as writer:
            for i, msg in enumerate(msgs):
                writer.write("t", msg.encode(), i * S)
        assert [decode(r.payload) for r in _read(path)] == msgs
        with Mcl1Source(path) as source:
            assert list(source.type_names().values()) == [name]


def test_directory_mixing_single_files_and_series(tmp_path: Path) -> None:
    """A directory with Name.log and Other_Type_000/001.log parts reads each stream whole."""
    for name, split in (("My_Type", None), ("Other_Type", 300)):
        with mcl.LogWriter(tmp_path / name, format="mcl1", origin_ns=0, split_size=split) as writer:
            for i in range(6):
                writer.write("x", GenericMessage(name, {"i": i}, timestamp=0.0).encode(), i * S)
    merged = tmp_path / "merged"
    merged.mkdir()
    for f in [*(tmp_path / "My_Type").iterdir(), *(tmp_path / "Other_Type").iterdir()]:
        (merged / f.name).write_bytes(f.read_bytes())
    assert len(list((tmp_path / "Other_Type").iterdir())) > 1
    names = [type_name_of(r.payload) for r in _read(merged)]
    assert names == ["My_Type", "Other_Type"] * 6


def test_blank_lines_are_skipped(reference_dir: Path, tmp_path: Path) -> None:
    """Blank lines in the middle and at the end are ignored without a warning."""
    lines = (reference_dir / "dataset" / "UnitTestMessageA.log").read_text().splitlines(keepends=True)
    (tmp_path / "A.log").write_text("".join(lines[:25] + ["\n", "   \n"] + lines[25:] + ["\n\n"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_stream(_read(tmp_path / "A.log"), "UnitTestMessageA", A_TIMES)


def test_empty_files(tmp_path: Path, reference_dir: Path) -> None:
    """Empty .log files hold no records and do not stop the others from reading; an empty dir is LogNotFound."""
    (tmp_path / "Empty.log").write_bytes(b"")
    assert _read(tmp_path) == []
    (tmp_path / "A.log").write_bytes((reference_dir / "dataset" / "UnitTestMessageA.log").read_bytes())
    assert len(_read(tmp_path)) == 10
    (tmp_path / "none").mkdir()
    with pytest.raises(mcl.LogNotFound, match="empty"):
        mcl.open_log(tmp_path / "none")


def test_unknown_types_read_and_decode_generic(tmp_path: Path) -> None:
    """A log of a type nobody registered reads, decodes to GenericMessage and names the type in the summary."""
    with mcl.LogWriter(tmp_path / "log", format="mcl1", origin_ns=0) as writer:
        writer.write("t", encode({"name": "Never_Declared", "timestamp": 1.0, "v": [1, 2]}), 5 * S)
    (rec,) = _read(tmp_path / "log")
    msg = decode(rec.payload)
    assert isinstance(msg, GenericMessage) and msg.name == "Never_Declared" and msg.v == [1, 2]
    with Mcl1Source(tmp_path / "log") as source:
        assert source.summary().topics["t"].types == {"Never_Declared"}


def test_writer_rejects_topics_it_cannot_store(tmp_path: Path) -> None:
    """Topics with white space or non-ASCII characters raise LogError; nothing is half written."""
    with mcl.LogWriter(tmp_path / "log", format="mcl1", origin_ns=0) as writer:
        for topic in ("with space", "tab\t", "new\nline", "é"):
            with pytest.raises(mcl.LogError, match="cannot store it"):
                writer.write(topic, encode([1]), 0)
        writer.write("ok", encode([1]), 0)
    assert [r.topic for r in _read(tmp_path / "log")] == ["ok"]


def test_empty_payload_round_trips(tmp_path: Path) -> None:
    """A record with an empty payload (no hex column) reads back as b''."""
    with mcl.LogWriter(tmp_path / "log", format="mcl1", origin_ns=0) as writer:
        writer.write("a", b"", S)
        writer.write("b", encode(1), 2 * S)
    assert _read(tmp_path / "log") == [Record(S, "a", b""), Record(2 * S, "b", encode(1))]


def test_type_names_that_are_not_file_names(tmp_path: Path) -> None:
    """Type names with '/', '..', or equal to the raw file's name get distinct safe files."""
    names = ["a/b", "..", "RawData", "rawdata", "Foo_001"]
    with mcl.LogWriter(tmp_path / "log", format="mcl1", origin_ns=0) as writer:
        for name in names:
            writer.write("t", encode({"name": name, "timestamp": 0.0}), 0)
        writer.write("t", encode([0]), 0)
    files = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert len(files) == 6 and all(f.endswith(".log") for f in files)
    assert not (tmp_path / "b.log").exists()
    assert sorted(map(str, (type_name_of(r.payload) for r in _read(tmp_path / "log")))) == sorted([*names, "None"])


def test_writer_never_overwrites(tmp_path: Path) -> None:
    """A directory holding files is refused with LogExistsError; an empty one is used."""
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep")
    with pytest.raises(mcl.LogExistsError, match="never overwrites"):
        mcl.LogWriter(tmp_path / "full", format="mcl1")
    assert (tmp_path / "full" / "x.txt").read_text() == "keep"
    (tmp_path / "empty").mkdir()
    mcl.LogWriter(tmp_path / "empty", format="mcl1").close()


def test_split_by_size_and_duration(tmp_path: Path) -> None:
    """Split writing makes _000, _001... parts; only _000 has a header; reading gives every record."""
    msgs = [GenericMessage("Split", {"i": i}, timestamp=0.0).encode() for i in range(20)]
    for name, options in (("size", {"split_size": 1200}), ("duration", {"split_duration": 5.0})):
        path = tmp_path / name
        with mcl.LogWriter(path, format="mcl1", origin_ns=0, **options) as writer:  # type: ignore[arg-type]
            for i, payload in enumerate(msgs):
                writer.write("t", payload, i * S)
        parts = sorted(path.iterdir())
        assert [p.name for p in parts][:2] == ["Split_000.log", "Split_001.log"]
        assert [p.read_text().startswith("#") for p in parts] == [True] + [False] * (len(parts) - 1)
        assert [r.payload for r in _read(path)] == msgs
    assert len(list((tmp_path / "duration").iterdir())) == 4


def test_write_after_close_is_a_runtime_error(tmp_path: Path) -> None:
    """Writing to a closed writer raises RuntimeError with a sentence; close is idempotent."""
    writer = mcl.LogWriter(tmp_path / "log", format="mcl1")
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.write("t", b"\x01", 0)


@pytest.mark.slow
def test_writer_close_on_a_full_disk_closes_every_file(tmp_path: Path) -> None:
    """A flush failing at close (full 64 KiB tmpfs, needs root) is one LogError, and every file is closed."""
    import os
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, check=False
    ).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        # Fill the disk but for a few bytes, so the buffered lines cannot be flushed.
        filler = mnt / "filler"
        with open(filler, "wb", buffering=0) as fp:
            try:
                for _ in range(10_000):  # bounded: 64 KiB fills long before
                    fp.write(b"\0" * 1024)
            except OSError:
                pass
        writer = Mcl1Writer(mnt / "log", origin_ns=0)
        writer.write("a", mcl.encode({"name": "TypeA", "x": 1}), 0)
        writer.write("b", mcl.encode({"name": "TypeB", "x": 2}), 1)
        files = [s.fp for s in writer._series.values()]
        assert len(files) == 2 and all(f is not None for f in files)
        with pytest.raises(LogError, match="cannot finish writing the log"):
            writer.close()
        assert all(f is not None and f.closed for f in files)
        writer.close()  # idempotent: no second error
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_writer_full_disk_at_a_split_keeps_whole_lines_and_counts_them(small_disk) -> None:
    """The disk fills as a split part is closed: LogError, files cut back to whole lines, written() = what reads back."""
    import os

    mnt = small_disk("64k")
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as fp:  # fill the disk but for a few kB
        try:
            for _ in range(10_000):  # bounded: 64 KiB fills long before
                fp.write(b"\0" * 1024)
        except OSError:
            pass
    os.truncate(filler, filler.stat().st_size - 12 * 1024)  # room for two or three 4 KiB pages
    writer = Mcl1Writer(mnt / "log", origin_ns=0, split_size=2000)
    sent = 0
    with pytest.raises(LogError, match="cannot write"):
        for i in range(200):  # lines stay buffered until the part is closed at 2000 bytes, then do not fit
            writer.write("a", mcl.encode({"name": "TypeA", "i": i, "pad": "x" * 100}), i)
            sent += 1
    writer.close()  # after the first error: no second one
    written = writer.written()
    with mcl.open_log(mnt / "log") as log:  # no damage warning: whole lines only
        back = list(log)
    assert len(back) == written.get("a", (0, 0))[0] < sent
    assert [int(mcl.decode(r.payload)["i"]) for r in back] == list(range(len(back)))
