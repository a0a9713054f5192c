"""Corruption of MCL_LOG 1.0 files: truncation, flipped bytes, garbage. Errors name file and line; damage warns and skips."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest

import mcl
from mcl.cli import cat, info
from mcl.log.record import Record


def _original(reference_dir: Path) -> bytes:
    return (reference_dir / "dataset" / "UnitTestMessageA.log").read_bytes()


def _read_with_warnings(path: Path) -> tuple[list[Record], list[mcl.LogDamageWarning]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mcl.open_log(path) as log:
            recs = list(log)
    damage = [w.message for w in caught if isinstance(w.message, mcl.LogDamageWarning)]
    assert len(damage) == len(caught), [str(w.message) for w in caught]
    return recs, damage  # type: ignore[return-value]


def test_truncated_tail_warns_and_keeps_the_rest(reference_dir: Path, tmp_path: Path) -> None:
    """A file cut inside its last line gives the 9 full records and one LogDamageWarning naming file and line."""
    data = _original(reference_dir)
    (tmp_path / "A.log").write_bytes(data[:-30])
    recs, damage = _read_with_warnings(tmp_path / "A.log")
    assert len(recs) == 9
    assert len(damage) == 1 and damage[0].line == 30 and "A.log: line 30: line cut short" in str(damage[0])


def test_every_truncation_point_reads_without_error(reference_dir: Path, tmp_path: Path) -> None:
    """Cutting the file at any byte never raises: records before the cut come back, the rest is damage."""
    data = _original(reference_dir)
    path = tmp_path / "A.log"
    full_lines = data.split(b"\n")
    for cut in range(0, len(data) + 1, 7):
        path.write_bytes(data[:cut])
        recs, damage = _read_with_warnings(path)
        complete = data[:cut].count(b"\n") - 20  # header is 20 lines
        assert len(recs) in (max(complete, 0), max(complete, 0) + 1), cut
        assert len(damage) <= 1
    assert len(full_lines) == 31


def test_cut_inside_the_header_is_damage(reference_dir: Path, tmp_path: Path) -> None:
    """A file cut inside its header (recorder killed at start) holds no records and warns."""
    (tmp_path / "A.log").write_bytes(_original(reference_dir)[:150])
    recs, damage = _read_with_warnings(tmp_path / "A.log")
    assert recs == [] and "ends inside the header" in str(damage[0])


def test_damaged_line_in_the_middle_is_skipped(reference_dir: Path, tmp_path: Path) -> None:
    """A line whose hex or time is garbled is skipped with a warning; the lines after it still read."""
    lines = _original(reference_dir).split(b"\n")
    lines[22] = lines[22][:40] + b"zz" + lines[22][42:]  # not hex any more
    lines[25] = b"garbage without columns"
    (tmp_path / "A.log").write_bytes(b"\n".join(lines))
    recs, damage = _read_with_warnings(tmp_path / "A.log")
    assert len(recs) == 8
    assert [d.line for d in damage] == [23, 26]
    with pytest.raises(mcl.LogFormatError, match=r"A\.log: line 23: line is not a record"):
        with mcl.open_log(tmp_path / "A.log", strict=True) as log:
            list(log)


def test_flipped_bytes_never_crash(reference_dir: Path, tmp_path: Path) -> None:
    """Random byte flips give records, damage warnings or a LogFormatError naming the file, never another exception."""
    data = _original(reference_dir)
    rng = random.Random(1234)
    path = tmp_path / "A.log"
    for _ in range(150):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        path.write_bytes(bytes(corrupt))
        try:
            recs, _ = _read_with_warnings(path)
        except mcl.LogFormatError as exc:
            assert str(path) in str(exc) and exc.line is not None
        else:
            assert len(recs) <= 10


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"\x00\x01\x02\xff" * 100, 1),
        (b"hello world\nthis is a text file\n", 1),
        (b"\n\n# a comment that is not the header rule\n", 3),  # blank lines before the text move it down
        (b"#" + b"-" * 65 + b"\n# NOT_MCL\n", 2),
        (b"#" + b"-" * 65 + b"\n# MCL_LOG\n#     -- version     9.9\n#" + b"-" * 65 + b"\n", 3),
    ],
)
def test_garbage_files_are_not_logs(tmp_path: Path, content: bytes, line: int) -> None:
    """Files that are not MCL logs raise LogFormatError naming the file and the line."""
    path = tmp_path / "junk.log"
    path.write_bytes(content)
    with pytest.raises(mcl.LogFormatError) as excinfo:
        with mcl.open_log(path) as log:
            list(log)
    assert excinfo.value.path == str(path)
    assert excinfo.value.line == line


def test_file_of_no_known_format(tmp_path: Path) -> None:
    """A file that is not a .log of any format raises LogFormatError at byte 0."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(mcl.LogFormatError, match=r"notes\.txt: byte 0: not a log file"):
        mcl.open_log(path)


def test_cli_reports_damage_and_garbage_without_traceback(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mcl-cat warns on stderr and exits 0 on damage; a garbage file exits 1 with one error line."""
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "A.log").write_bytes(_original(reference_dir)[:-30])
    assert cat.main([str(tmp_path / "log")]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 9
    assert err.startswith("mcl-cat: warning: ") and "line 30" in err and len(err.splitlines()) == 1
    assert info.main([str(tmp_path / "log")]) == 0
    out, err = capsys.readouterr()
    assert "1 damaged part(s)" in out and "line 30" in out and err == ""
    (tmp_path / "junk.log").write_bytes(b"\x00garbage\xff\n")
    assert cat.main([str(tmp_path / "junk.log")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("mcl-cat: error: ") and "junk.log: line 1" in err and "Traceback" not in err
