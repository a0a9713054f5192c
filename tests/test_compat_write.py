"""MCL_LOG 1.0 written as the original WriteFile wrote it: the reference files byte for byte, splits, the WriteFile class."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import mcl
from mcl.log.mcl1 import Mcl1Writer, WriteFile, format_header

EPOCH = dt.datetime(1970, 1, 1)
REVISION = "ffff" + "0" * 36


def _items(path: Path) -> list[dict[str, object]]:
    """The records of a reference log as the original WriteFile took them (time_received, payload bytes)."""
    out = []
    with mcl.ReadFile(path, raw=True) as reader:
        while reader.is_data_pending():
            item = reader.read()
            assert item is not None
            out.append({"topic": item["topic"], "time_received": EPOCH + dt.timedelta(seconds=item["elapsed_time"]), "payload": item["payload"]})
    return out


def test_raw_file_reproduced_byte_for_byte(reference_dir: Path, tmp_path: Path) -> None:
    """RawUnitTestData.log: '#' blank lines, an empty revision without trailing space, its own file name."""
    original = reference_dir / "dataset" / "RawUnitTestData.log"
    with mcl.open_log(original) as log, Mcl1Writer(tmp_path / "w", origin_ns=0, raw_name="RawUnitTestData") as writer:
        for record in log:
            writer.write_record(record)
    assert (tmp_path / "w" / "RawUnitTestData.log").read_bytes() == original.read_bytes()
    with WriteFile(tmp_path / "RawUnitTestData", None, time_origin=EPOCH) as write_file:
        for item in _items(original):
            write_file.write(item)
    assert (tmp_path / "RawUnitTestData.log").read_bytes() == original.read_bytes()
    header = format_header(0, None)
    assert "\n#\n" in header and "#     -- revision\n" in header and "# \n" not in header


def test_write_file_reproduces_the_split_dataset(reference_dir: Path, tmp_path: Path) -> None:
    """WriteFile(max_entries=3 / 2) gives dataset_split/ byte for byte (its files use the '# ' header style)."""
    split = reference_dir / "dataset_split"
    for name, entries in (("UnitTestMessageA", 3), ("UnitTestMessageB", 2)):
        with WriteFile(tmp_path / name, name, time_origin=EPOCH, max_entries=entries, blank_line="# ") as write_file:
            assert write_file.max_entries == entries and write_file.max_time is None
            for item in _items(split / name):
                write_file.write(item)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in split.iterdir())
    for name in written:
        assert (tmp_path / name).read_bytes() == (split / name).read_bytes(), name


def test_split_by_time_and_by_entries(reference_dir: Path, tmp_path: Path) -> None:
    """max_time starts a part when a record is max_time after the part's first; max_entries counts records."""
    with WriteFile(tmp_path / "A", "UnitTestMessageA", time_origin=EPOCH, max_time=0.03) as write_file:
        assert write_file.max_time == 0.03
        for item in _items(reference_dir / "dataset" / "UnitTestMessageA.log"):
            write_file.write(item)
    with mcl.open_log(tmp_path / "A") as log:
        assert len(list(log)) == 10
    counts = [len(mcl.dump_to_list(tmp_path / f"A_{i:03d}.log")) for i in range(4)]
    assert counts == [3, 3, 3, 1]
    log_dir = tmp_path / "entries"
    with mcl.LogWriter(log_dir, format="mcl1", origin_ns=0, split_entries=3, split_duration=5.0) as writer:
        for second in (0, 1, 10, 11, 12, 13, 14):
            writer.write("t", b"\x90", second * 1_000_000_000)
    parts = [[i["elapsed_time"] for i in mcl.dump_to_list(p)] for p in sorted(log_dir.iterdir())]
    assert parts == [[0.0, 1.0], [10.0, 11.0, 12.0], [13.0, 14.0]]  # whichever limit comes first: time, then count
    with pytest.raises(ValueError, match="split_entries"):
        Mcl1Writer(tmp_path / "bad", origin_ns=0, split_entries=0)


def test_message_files_keep_their_style_and_revision(reference_dir: Path, tmp_path: Path) -> None:
    """UnitTestMessageA.log ('# ' style) and mcl-convert of dataset/ keep names and revisions per file."""
    from mcl.cli.convert import convert

    original = reference_dir / "dataset" / "UnitTestMessageA.log"
    with WriteFile(tmp_path / "UnitTestMessageA", "UnitTestMessageA", REVISION, EPOCH, blank_line="# ") as write_file:
        for item in _items(original):
            write_file.write(item)
    assert (tmp_path / "UnitTestMessageA.log").read_bytes() == original.read_bytes()
    assert convert([reference_dir / "dataset"], tmp_path / "converted", format="mcl1") == 30
    out = tmp_path / "converted"
    assert sorted(p.name for p in out.iterdir()) == ["RawUnitTestData.log", "UnitTestMessageA.log", "UnitTestMessageB.log"]
    assert (out / "RawUnitTestData.log").read_bytes() == (reference_dir / "dataset" / "RawUnitTestData.log").read_bytes()
    assert f"#     -- revision    {REVISION}\n" in (out / "UnitTestMessageB.log").read_text()


def test_write_file_lifecycle(tmp_path: Path) -> None:
    """Nothing before the first write; .tmp while writing, .log after close(); a Message, bytes or a value as payload."""

    class Pose(mcl.Message):
        mandatory = ("x",)

    write_file = WriteFile(tmp_path / "Pose", Pose, revision="r1")
    assert list(tmp_path.iterdir()) == []
    start = dt.datetime(2020, 1, 2, 3, 4, 5, 678901)
    write_file.write({"topic": "pose", "time_received": start, "payload": Pose(x=1.5, timestamp=1.0)})
    write_file.write({"topic": None, "time_received": start + dt.timedelta(seconds=1.25), "payload": {"name": "Pose", "x": 2}})
    assert [p.name for p in tmp_path.iterdir()] == ["Pose.tmp"]
    write_file.close()
    write_file.close()  # idempotent
    assert [p.name for p in tmp_path.iterdir()] == ["Pose.log"]
    with mcl.ReadFile(tmp_path / "Pose.log", message=True) as reader:
        assert reader.header is not None
        assert (reader.header["created"], reader.header["revision"], reader.header["type"]) == ("2020-01-02 03:04:05.678901", "r1", Pose)
        first, second = reader.read(), reader.read()
    assert first == {"elapsed_time": 0.0, "topic": "pose", "payload": Pose(x=1.5, timestamp=1.0)}
    assert second is not None and second["elapsed_time"] == 1.25 and second["topic"] == "" and second["payload"].x == 2
    WriteFile(tmp_path / "Empty", None).close()
    assert not (tmp_path / "Empty.log").exists() and not (tmp_path / "Empty.tmp").exists()


def test_write_file_argument_checks(tmp_path: Path) -> None:
    """The original's checks: TypeError for bad arguments, IOError for a bad place, KeyError for a bad record."""
    for kwargs, text in (
        ({"prefix": tmp_path / "x.log"}, "must not end in"),
        ({"prefix": 3}, "prefix must be a path"),
        ({"connection": dict}, "connection must be"),
        ({"revision": 1}, "revision must be"),
        ({"time_origin": 0}, "time_origin must be"),
        ({"max_entries": 0}, "max_entries must be > 0"),
        ({"max_entries": 1.5}, "max_entries must be None or an int"),
        ({"max_time": -1}, "max_time must be a number of seconds > 0"),
    ):
        args = {"prefix": tmp_path / "Name", "connection": None, **kwargs}
        with pytest.raises(TypeError, match=text):
            WriteFile(**args)  # type: ignore[arg-type]
    with pytest.raises(IOError, match="is a directory"):
        WriteFile(tmp_path, None)
    with pytest.raises(FileNotFoundError):
        WriteFile(tmp_path / "missing" / "Name", None)
    (tmp_path / "Taken.log").write_text("")
    with pytest.raises(IOError, match="never overwrites"):
        WriteFile(tmp_path / "Taken", None)
    with WriteFile(tmp_path / "Name", None) as write_file:
        with pytest.raises(KeyError, match="time_received"):
            write_file.write({"topic": "", "payload": 1})
        with pytest.raises(mcl.LogError, match="white space"):
            write_file.write({"topic": "a b", "time_received": EPOCH, "payload": 1})
