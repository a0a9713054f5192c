"""Tests of mcl-info, mcl-cat and mcl-export through main(argv): output, exit codes 0/1/2, one-line errors."""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

import mcl
from mcl.cli import cat, export, info
from mcl.cli.common import run_main
from mcl.message import encode

Capsys = pytest.CaptureFixture[str]


def _one_error_line(err: str) -> str:
    """The one line of `err`, ``mcl-NAME: error: ...``; returned from ``error:`` on."""
    lines = err.splitlines()
    assert len(lines) == 1 and re.match(r"mcl-[a-z]+: error: ", lines[0]) and "Traceback" not in err, err
    return lines[0].partition(": ")[2]


@pytest.mark.parametrize("module", [info, cat, export])
def test_help_exits_zero(module: object, capsys: Capsys) -> None:
    """--help prints usage on stdout and exits 0."""
    assert module.main(["--help"]) == 0  # type: ignore[attr-defined]
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        (info, []),
        (cat, ["x", "--start", "-1"]),
        (cat, ["x", "--end", "soon"]),
        (export, ["x", "--fields", "a"]),
        (export, ["x", "--fields", "a,,b", "--csv", "f"]),
        (export, ["x", "--fields", "a", "--csv", "f", "--npy", "g"]),
    ],
)
def test_bad_arguments_exit_two(module: object, argv: list[str], capsys: Capsys) -> None:
    """Argument errors exit 2 with argparse's usage and message."""
    assert module.main(argv) == 2  # type: ignore[attr-defined]
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("module", [info, cat])
def test_missing_log_is_one_error_line(module: object, tmp_path: Path, capsys: Capsys) -> None:
    """A path that does not exist exits 1 with one 'error:' line naming it."""
    assert module.main([str(tmp_path / "missing")]) == 1  # type: ignore[attr-defined]
    out, err = capsys.readouterr()
    assert out == "" and "missing: no such file or directory" in _one_error_line(err)


def test_info_text(reference_dir: Path, capsys: Capsys) -> None:
    """mcl-info shows format, origin, duration, count, topics with types, and no damage."""
    assert info.main([str(reference_dir / "dataset")]) == 0
    out = capsys.readouterr().out
    for expected in (
        "format:    MCL_LOG 1.0",
        "origin:    1970-01-01T00:00:00.000000Z",
        "duration:  10.000 s",
        "messages:  30",
        "damage:    none",
        "UnitTestMessageA, UnitTestMessageB",
    ):
        assert expected in out


def test_info_json_one_and_several_logs(reference_dir: Path, capsys: Capsys) -> None:
    """--json gives one object for one log, a list of objects for several."""
    assert info.main([str(reference_dir / "dataset"), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert (obj["format"], obj["messages"], obj["duration"]) == ("mcl1", 30, 10.0)
    assert obj["topics"][""]["messages"] == 30
    assert obj["topics"][""]["types"] == ["UnitTestMessageA", "UnitTestMessageB"]
    assert obj["origin"] == "1970-01-01T00:00:00.000000Z" and obj["damage"] == []
    split = reference_dir / "dataset_split"
    assert info.main([str(split / "UnitTestMessageA"), str(split), "--json"]) == 0
    objs = json.loads(capsys.readouterr().out)
    assert [o["messages"] for o in objs] == [10, 20]
    assert objs[0]["topics"][""]["rate_hz"] == pytest.approx(100.0)


def test_cat_lines(reference_dir: Path, capsys: Capsys) -> None:
    """mcl-cat prints one JSON object per record in time order, raw records included."""
    assert cat.main([str(reference_dir / "dataset")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 30
    assert lines[0] == {"time": 0.0, "topic": "", "payload": {"timestamp": 0.0, "data": 0.0, "name": "UnitTestMessageA"}}
    assert lines[-1] == {"time": 10.0, "topic": "", "payload": list(range(9)) * 9}
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)


def test_cat_filters_and_encodings(tmp_path: Path, capsys: Capsys) -> None:
    """--topics, --start and --end select records; bytes print as base64 and numpy arrays as lists."""
    with mcl.LogWriter(tmp_path / "log", format="mcl1", origin_ns=0) as writer:
        for i in range(5):
            writer.write("a", encode({"name": "A", "timestamp": 0.0, "blob": b"\x00\xff", "v": np.arange(2) * i}), i * 10**9)
            writer.write("b", encode([i]), i * 10**9)
    assert cat.main([str(tmp_path / "log"), "--topics", "a", "--start", "1", "--end", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["time"], d["topic"]) for d in lines] == [(1.0, "a"), (2.0, "a"), (3.0, "a")]
    assert lines[1]["payload"]["v"] == [0, 2]
    assert base64.b64decode(lines[1]["payload"]["blob"]) == b"\x00\xff"
    assert cat.main([str(tmp_path / "log"), "--topics", "a", "--topics", "b", "--end", "0"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_cat_ignores_tmp_leftovers(reference_dir: Path, tmp_path: Path, capsys: Capsys) -> None:
    """A .tmp file left by an interrupted original recorder is not read."""
    (tmp_path / "A.log").write_bytes((reference_dir / "dataset" / "UnitTestMessageA.log").read_bytes())
    (tmp_path / "A.tmp").write_bytes(b"partial garbage")
    assert cat.main([str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10


def test_export_csv_and_npy(reference_dir: Path, tmp_path: Path, capsys: Capsys) -> None:
    """mcl-export writes the original CSV byte for byte, and a float .npy array at the exact path given."""
    log = str(reference_dir / "dataset" / "UnitTestMessageA.log")
    assert export.main([log, "--fields", "name,data,timestamp", "--csv", str(tmp_path / "a.csv")]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (reference_dir / "dataset" / "UnitTestMessageA.csv").read_bytes()
    assert export.main([log, "--fields", "data,timestamp", "--npy", str(tmp_path / "a.array")]) == 0
    assert "10 rows x 2 columns" in capsys.readouterr().out
    array = np.load(tmp_path / "a.array")
    assert array.shape == (10, 2) and array[3, 0] == pytest.approx(0.03)


def test_export_errors_are_one_line(reference_dir: Path, tmp_path: Path, capsys: Capsys) -> None:
    """Unknown field, mixed types and an unwritable output exit 1 with one error line."""
    log = str(reference_dir / "dataset" / "UnitTestMessageA.log")
    assert export.main([log, "--fields", "nope", "--csv", str(tmp_path / "x.csv")]) == 1
    assert "has no field 'nope'" in _one_error_line(capsys.readouterr().err)
    assert export.main([str(reference_dir / "dataset"), "--fields", "data", "--npy", str(tmp_path / "x.npy")]) == 1
    assert "of one type" in _one_error_line(capsys.readouterr().err)
    assert export.main([log, "--fields", "data", "--csv", str(tmp_path / "no" / "dir" / "x.csv")]) == 1
    assert "x.csv: No such file or directory" in _one_error_line(capsys.readouterr().err)


def test_run_main_boundary(capsys: Capsys) -> None:
    """The error boundary maps MclError to 1, Ctrl-C to 130, a closed pipe to 141, and prints damage warnings."""
    import warnings

    def damaged() -> int:
        warnings.warn(mcl.LogDamageWarning("f.log", "cut short", line=3), stacklevel=1)
        warnings.warn(mcl.LogDamageWarning("f.log", "cut short", line=3), stacklevel=1)
        return 0

    assert run_main(damaged, "mcl-thing") == 0
    assert capsys.readouterr().err == "mcl-thing: warning: f.log: line 3: cut short\n" * 2

    def interrupted() -> int:
        raise KeyboardInterrupt

    def broken() -> int:
        raise BrokenPipeError

    def failing() -> int:
        raise mcl.LogError("bad\nthing")

    def logged() -> int:
        logging.getLogger("mcl.network").warning("no forwarder answers at %s", "tcp://127.0.0.1:1")
        logging.getLogger("mcl.network").info("not shown: below warning")
        return 0

    assert run_main(interrupted, "mcl-thing") == 130
    assert run_main(broken, "mcl-thing") == 141
    assert run_main(failing, "mcl-thing") == 1
    assert capsys.readouterr().err == "mcl-thing: error: bad thing\n"
    assert run_main(logged, "mcl-thing") == 0
    assert capsys.readouterr().err == "mcl-thing: warning: no forwarder answers at tcp://127.0.0.1:1\n"
    logging.getLogger("mcl.network").warning("after the command: not ours to print")
    assert "mcl-thing" not in capsys.readouterr().err


def test_unknown_topic_is_one_error_line(tmp_path: Path, capsys: Capsys) -> None:
    """--topics naming a topic absent from the log: mcl-cat and mcl-export exit 1 naming it and the topics there."""
    log = tmp_path / "log"
    with mcl.LogWriter(log) as writer:
        writer.write("imu", encode({"name": "Imu", "timestamp": 0.0, "x": 1.0}), elapsed_ns=0)
    assert cat.main([str(log), "--topics", "imu", "nosuch"]) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") == 1
    assert _one_error_line(err) == "error: topic 'nosuch' not in the log (its topics: 'imu')"
    assert cat.main([str(log), "--topics", "imu", "--start", "5"]) == 0  # present, only outside the window
    assert capsys.readouterr() == ("", "")
    csv_path = tmp_path / "out.csv"
    assert export.main([str(log), "--fields", "x", "--topics", "nosuch", "--csv", str(csv_path)]) == 1
    assert "'nosuch' not in the log" in _one_error_line(capsys.readouterr().err)
    assert not csv_path.exists()
