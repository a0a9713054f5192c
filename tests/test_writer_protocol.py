"""The one writer protocol: files, flush, close, abort (remove exactly what was written), rotation in the native writer."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

import mcl
from mcl.exceptions import LogError
from mcl.log.formats import make_writer
from mcl.log.native import NativeWriter
from mcl.log.reader import open_log

FORMATS = ["native", "mcl1", "mcap"]


def _target(tmp_path: Path, fmt: str) -> Path:
    return tmp_path / ("out.mcap" if fmt == "mcap" else "log")


@pytest.mark.parametrize("fmt", FORMATS)
def test_abort_removes_what_was_written_and_the_directory_it_created(tmp_path: Path, fmt: str) -> None:
    target = _target(tmp_path, fmt)
    writer = make_writer(target, fmt, origin_ns=0, split_size=None if fmt == "mcap" else 300)
    for i in range(50):
        writer.write(f"t{i % 3}", msgpack.packb({"x": "x" * 30}), i * 1000)
    writer.flush()
    files = writer.files
    assert files and all(p.exists() for p in files)
    writer.abort()
    assert not any(p.exists() for p in files)
    assert not target.exists()  # the directory (or file) the writer created is gone
    assert list(tmp_path.iterdir()) == []
    writer.abort()  # idempotent


@pytest.mark.parametrize("fmt", ["native", "mcl1"])
def test_abort_leaves_a_file_it_did_not_write_and_a_directory_it_did_not_create(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / "log"
    target.mkdir()  # an empty directory given to the writer: not the writer's to remove
    writer = make_writer(target, fmt, origin_ns=0)
    writer.write("a", msgpack.packb(1), 1)
    writer.flush()
    (target / "notes.txt").write_text("mine")  # someone else's file in the log directory
    writer.abort()
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    (target / "notes.txt").unlink()
    writer2 = make_writer(tmp_path / "log", fmt, origin_ns=0)
    writer2.write("a", msgpack.packb(1), 1)
    writer2.abort()
    assert target.is_dir() and list(target.iterdir()) == []  # it existed before: it stays


def test_abort_after_close_removes_the_closed_log(tmp_path: Path) -> None:
    with make_writer(tmp_path / "log", "native", origin_ns=0) as writer:
        writer.write("a", b"p", 1)
    assert any(p.suffix == ".mcli" for p in (tmp_path / "log").iterdir())  # the index was written at close
    writer.abort()
    assert not (tmp_path / "log").exists()


def test_rotation_keeps_the_newest_files_through_the_writer(tmp_path: Path) -> None:
    writer = NativeWriter(tmp_path / "log", origin_ns=0, split_size=2000, max_files=3, flush_interval_ns=None)
    for i in range(2000):
        writer.write("r", i.to_bytes(4, "big") * 10, i)
    writer.close()
    names = sorted(p.name for p in (tmp_path / "log").iterdir())
    data = [n for n in names if n.endswith(".mcln")]
    assert len(data) == 3 and writer.rotated > 0
    assert [p.name for p in writer.files] == data  # files lists what is there
    assert len([n for n in names if n.endswith(".mcli")]) == 3  # the indexes of deleted files went with them
    assert data[-1] == f"data_{writer.rotated + 2:04d}.mcln"  # the newest were kept
    with open_log(tmp_path / "log") as log:
        times = [r.elapsed_ns for r in log]
    assert times == sorted(times) and times[-1] == 1999 and times[0] > 0  # the tail of the recording, in order


def test_rotation_is_refused_by_formats_without_it(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="max_files"):
        NativeWriter(tmp_path / "bad", origin_ns=0, max_files=0)
    with pytest.raises(TypeError, match="max_files"):
        make_writer(tmp_path / "m", "mcl1", origin_ns=0, max_files=2)
    with pytest.raises(mcl.RecordError, match=r"rotation \(max_files\) is not supported by the mcl1 format"):
        mcl.Recorder(tmp_path / "r", format="mcl1", max_files=2)
