"""Shared command-line arguments (mcl/cli/args.py): one flag means one thing in every command."""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_record_helpers import DumpProcess, read_back

import mcl
from mcl.cli import bus, cat, convert, dump, export, info, replay
from mcl.cli.args import bus_subscription, describe_topics, exclude_pattern, replay_selection, topic_filter
from mcl.log.record import make_topic_filter
from mcl.replay.options import NS_PER_S, ReplayStatus

ROOT = Path(__file__).resolve().parent.parent
VEHICLE = ROOT / "sample_logs" / "vehicle"  # imu 100 Hz, gps 10 Hz, camera/front 30 Hz over 10 s
REFERENCE = ROOT / "tests" / "data" / "mcl-v1" / "dataset"

# The arguments each command needs besides the ones under test.
REQUIRED: dict[ModuleType, list[str]] = {
    cat: ["LOG"],
    export: ["LOG", "--csv", "out.csv", "--fields", "a"],
    convert: ["IN", "OUT"],
    replay: ["LOG"],
    dump: [],
}
TOPIC_COMMANDS = list(REQUIRED)
LOG_COMMANDS = [cat, export, convert, replay]  # the commands that read a log
ALL_COMMANDS = [bus, cat, convert, dump, export, info, replay]


def parse(module: ModuleType, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args([*REQUIRED.get(module, []), *argv])


def cat_records(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert cat.main([*argv]) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def vehicle_counts(start: float = 0.0, end: float = 1e9) -> Counter[str]:
    with mcl.open_log(VEHICLE, start=start, end=end) as log:
        return Counter(r.topic for r in log)


# -- one topic predicate ----------------------------------------------------------------


def test_make_topic_filter_names_prefixes_and_exclusions() -> None:
    assert make_topic_filter(None) is None
    assert make_topic_filter(None, exclude=[]) is None
    names = make_topic_filter(["imu", "gps"])
    assert names is not None and names("imu") and names("gps") and not names("imu2")
    prefixed = make_topic_filter(None, prefixes=["cam"])
    assert prefixed is not None and prefixed("camera/front") and not prefixed("imu")
    either = make_topic_filter(["imu"], prefixes=["cam"], exclude=["rear$"])
    assert either is not None
    assert [t for t in ("imu", "imu2", "camera/front", "camera/rear", "gps") if either(t)] == ["imu", "camera/front"]
    dropped = make_topic_filter(None, exclude=["^imu$", "gps"])
    assert dropped is not None and dropped("imu2") and not dropped("imu") and not dropped("my/gps")
    with pytest.raises(ValueError, match="bad exclude pattern"):
        make_topic_filter(None, exclude=["("])


# -- the parsers of the real commands -----------------------------------------------------


@pytest.mark.parametrize("module", TOPIC_COMMANDS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("argv", [["--topics", "imu", "--topics", "gps"], ["--topics", "imu,gps"], ["--topics", "imu", "gps"]])
def test_topics_are_names_that_add_up_in_every_command(module: ModuleType, argv: list[str]) -> None:
    args = parse(module, *argv)
    assert args.topics == ["imu", "gps"]
    keep = topic_filter(args)
    assert keep is not None
    assert [t for t in ("imu", "gps", "imu2", "gps/raw", "camera/front") if keep(t)] == ["imu", "gps"]


@pytest.mark.parametrize("module", TOPIC_COMMANDS, ids=lambda m: m.__name__)
def test_exclude_everywhere_topics_is(module: ModuleType) -> None:
    args = parse(module, "--exclude", "^cam", "--exclude", "gps")
    keep = topic_filter(args)
    assert keep is not None and [t for t in ("imu", "gps", "camera/front") if keep(t)] == ["imu"]
    assert exclude_pattern(args) == "(?:^cam)|(?:gps)"
    assert parse(module).topics is None and topic_filter(parse(module)) is None


@pytest.mark.parametrize("module", [cat, export, convert, replay, dump], ids=lambda m: m.__name__)
def test_topic_prefix_where_prefixes_are_wanted(module: ModuleType) -> None:
    args = parse(module, "--topic-prefix", "cam", "--topic-prefix", "gp,x")
    assert args.topic_prefix == ["cam", "gp", "x"]
    keep = topic_filter(args)
    assert keep is not None and [t for t in ("imu", "gps", "camera/front") if keep(t)] == ["gps", "camera/front"]


@pytest.mark.parametrize("module", [cat, export, convert, replay, dump], ids=lambda m: m.__name__)
def test_bad_exclude_is_a_usage_error(module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(module, "--exclude", "(")
    assert exc.value.code == 2
    assert "bad regular expression '('" in capsys.readouterr().err


@pytest.mark.parametrize("module", LOG_COMMANDS, ids=lambda m: m.__name__)
def test_start_end_in_every_command_that_reads_a_log(module: ModuleType) -> None:
    args = parse(module, "--start", "1.5", "--end", "2")
    start, end = ("start_offset", "until") if module is replay else ("start", "end")
    assert (getattr(args, start), getattr(args, end)) == (1.5, 2.0)


def test_replay_keeps_start_offset_and_until_as_aliases() -> None:
    old = parse(replay, "--start-offset", "1", "--until", "3")
    new = parse(replay, "--start", "1", "--end", "3")
    assert (old.start_offset, old.until) == (new.start_offset, new.until) == (1.0, 3.0)
    with pytest.raises(SystemExit):
        parse(replay, "--end", "3", "--duration", "1")  # still exclusive, whatever the spelling


def test_bus_quiet_and_json_mean_the_same() -> None:
    for module in (dump, replay):
        assert parse(module, "--bus", "tcp://127.0.0.1:5").bus == "tcp://127.0.0.1:5"
    for module in (dump, export, convert, bus, replay):
        assert parse(module, "-q").quiet and parse(module, "--quiet").quiet
    assert parse(info, "LOG", "--json").json


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--topics", "imu,gps"],
        ["--topic-prefix", "cam"],
        ["--topics", "imu", "--topic-prefix", "cam", "--exclude", "rear"],
        ["--topic-prefix", "a.b", "--topics", "x+"],  # regex characters in names are literal
        ["--exclude", "^gps$", "--exclude", "2$"],
    ],
)
def test_replay_selection_is_the_same_predicate(argv: list[str]) -> None:
    """Replay's (exact names, exclude regex) pair keeps exactly what topic_filter keeps."""
    import re

    args = parse(replay, *argv)
    names, exclude = replay_selection(args)
    keep = topic_filter(args)
    for topic in ("imu", "imu2", "gps", "camera/front", "camera/rear", "a.b/c", "axb", "x+", "xx"):
        by_replay = (names is None or topic in names) and (exclude is None or re.search(exclude, topic) is None)
        assert by_replay == (keep is None or keep(topic)), topic


def test_dump_subscription_from_the_topic_options() -> None:
    assert bus_subscription(parse(dump, "--topics", "imu,gps")) == (["imu", "gps"], True, None)
    assert bus_subscription(parse(dump, "--topic-prefix", "cam")) == (["cam"], False, None)
    assert bus_subscription(parse(dump)) == (None, False, None)
    topics, exact, keep = bus_subscription(parse(dump, "-t", "imu", "--topic-prefix", "cam", "--exclude", "rear"))
    assert (topics, exact) == (["imu", "cam"], False)
    assert keep is not None and [t for t in ("imu", "imu2", "camera/front", "camera/rear") if keep(t)] == ["imu", "camera/front"]
    assert describe_topics(parse(dump, "-t", "imu", "--exclude", "x")) == "topics imu except /x/"


# -- the real commands ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--topics", "imu", "--topics", "gps"], ["--topics", "imu,gps"]])
def test_cat_selects_named_topics(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    records = cat_records(capsys, str(VEHICLE), *argv, "--end", "2")
    expected = vehicle_counts(end=2)
    assert Counter(r["topic"] for r in records) == {"imu": expected["imu"], "gps": expected["gps"]}


def test_cat_prefix_and_exclude(capsys: pytest.CaptureFixture[str]) -> None:
    records = cat_records(capsys, str(VEHICLE), "--topic-prefix", "cam", "--end", "1")
    assert {r["topic"] for r in records} == {"camera/front"} and len(records) == vehicle_counts(end=1)["camera/front"]
    records = cat_records(capsys, str(VEHICLE), "--exclude", "^imu$", "--end", "1")
    assert {r["topic"] for r in records} == {"gps", "camera/front"}


def test_start_end_count_from_the_same_origin_in_cat_export_and_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same --start/--end window selects the same gps records in mcl-cat, mcl-export and mcl-convert."""
    window = ["--start", "2.05", "--end", "4.05"]
    shown = cat_records(capsys, str(VEHICLE), "--topics", "gps", *window)
    with mcl.open_log(VEHICLE, topics=["gps"]) as log:
        origin = log.origin_ns
        assert origin is not None
        want = [r.elapsed_ns / 1e9 for r in log if 2.05 <= r.elapsed_ns / 1e9 <= 4.05]
    assert [r["time"] for r in shown] == want and len(want) == 20
    assert export.main([str(VEHICLE), "--topics", "gps", *window, "--fields", "timestamp", "--csv", "-", "-q"]) == 0
    stamps = [float(row[0]) for row in csv.reader(io.StringIO(capsys.readouterr().out))]
    assert [r["payload"]["timestamp"] for r in shown] == stamps
    out = tmp_path / "gps"
    assert convert.main([str(VEHICLE), str(out), "--topics", "gps", *window, "-q"]) == 0
    assert capsys.readouterr().out == ""
    with mcl.open_log(out) as log:
        assert log.origin_ns == origin
        assert [r.elapsed_ns / 1e9 for r in log] == want


def test_reference_dataset_window_is_the_same_in_cat_and_export(capsys: pytest.CaptureFixture[str]) -> None:
    log = REFERENCE / "UnitTestMessageA.log"
    window = ["--start", "0.025", "--end", "0.065"]
    shown = cat_records(capsys, str(log), *window)
    assert [r["time"] for r in shown] == [0.03, 0.04, 0.05, 0.06]
    assert export.main([str(log), *window, "--fields", "name,timestamp", "--csv", "-"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert [(r["payload"]["name"], r["payload"]["timestamp"]) for r in shown] == [(n, float(t)) for n, t in rows]
    assert captured.err.strip() == f"{len(rows)} rows of 2 fields written to standard output"


def test_convert_prefix_and_exclude(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert convert.main([str(VEHICLE), str(out), "--topic-prefix", "cam", "--topics", "imu", "--exclude", "imu"]) == 0
    with mcl.open_log(out) as log:
        assert Counter(r.topic for r in log) == {"camera/front": 300}


@pytest.mark.slow
def test_export_csv_to_stdout_in_a_pipe() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcl.cli.export", str(VEHICLE), "--topics", "gps", "--fields", "name,timestamp", "--csv", "-"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert len(rows) == 100 and {r[0] for r in rows} == {"GpsFix"}
    assert done.stderr == "100 rows of 2 fields written to standard output\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, sent_topics",
    [
        (["--topics", "imu", "--topics", "gps"], {"imu", "gps"}),
        (["--topics", "imu,gps", "--exclude", "^gps$"], {"imu"}),
        (["--topic-prefix", "cam"], {"camera/front"}),
        (["--topics", "imu", "--topic-prefix", "cam,g", "--exclude", "^gps$"], {"imu", "camera/front"}),
    ],
)
def test_replay_selects_topics(argv: list[str], sent_topics: set[str]) -> None:
    """mcl-replay plays exactly the selected topics (counted by its final line)."""
    counts = vehicle_counts()
    done = subprocess.run(
        [sys.executable, "-m", "mcl.cli.replay", str(VEHICLE), "--max-speed", "--dry-run", *argv],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    sent = sum(counts[t] for t in sent_topics)
    assert done.stdout.splitlines()[-1] == f"finished: {sent} messages sent, 0 loops"
    quiet = subprocess.run(
        [sys.executable, "-m", "mcl.cli.replay", str(VEHICLE), "--max-speed", "--dry-run", "-q", *argv],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, recorded",
    [
        (["--topics", "imu", "--topics", "gps"], {"imu", "gps"}),
        (["--topics", "imu,gps"], {"imu", "gps"}),
        (["--topic-prefix", "cam", "--exclude", "rear"], {"camera/front"}),
    ],
)
def test_dump_records_the_selected_topics(mcl_bus: str, tmp_path: Path, argv: list[str], recorded: set[str]) -> None:
    """mcl-dump records exactly the selected topics: names are exact (imu2 is not imu), lists add up."""
    topics = ("imu", "gps", "imu2", "camera/front", "camera/rear")
    wanted = 50 * len(recorded)
    # --count: mcl-dump stops by itself once it has recorded what the selection should keep.
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--count", str(wanted), *argv) as dumping:
        path = dumping.wait_recording()
        with mcl.Publisher(mcl_bus) as pub:
            assert pub.wait_for_subscribers(1, 10)
            for i in range(50 * len(topics)):
                pub.publish(topics[i % len(topics)], mcl.encode({"i": i}))
        assert dumping.wait() == 0, dumping.stderr
    assert path is not None
    assert Counter(r.topic for r in read_back(path)) == {t: 50 for t in recorded}


# -- replay keys ------------------------------------------------------------------------------


class _Replay:
    """Stands in for Replay in the key handler: records what the keys asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.speed = 1.0

    def seek(self, position: float) -> None:
        self.calls.append(("seek", position))

    def pause(self) -> None:
        self.calls.append(("pause", None))

    def start(self) -> None:
        self.calls.append(("start", None))


def test_two_arrow_keys_of_one_read_seek_twice() -> None:
    fake = _Replay()
    status = ReplayStatus(state="playing", position_ns=20 * NS_PER_S, start_ns=0, end_ns=60 * NS_PER_S)
    for key in ("right", "right", "left", " ", " ", "up", "up"):
        status = replay._on_key(fake, key, status)
    assert fake.calls == [("seek", 25.0), ("seek", 30.0), ("seek", 25.0), ("pause", None), ("start", None)]
    assert status.position_ns == 25 * NS_PER_S and status.state == "playing"
    assert fake.speed == 4.0


def test_seek_keys_stop_at_the_ends_of_the_window() -> None:
    fake = _Replay()
    status = ReplayStatus(state="paused", position_ns=7 * NS_PER_S, start_ns=2 * NS_PER_S, end_ns=12 * NS_PER_S)
    for key in ("right", "right", "left", "left", "left", "left"):
        status = replay._on_key(fake, key, status)
    assert [c[1] for c in fake.calls] == [12.0, 12.0, 7.0, 2.0, 2.0, 2.0]


class _Keys:
    """Key presses as KeyReader.read returns them, one batch per read."""

    def __init__(self, *batches: list[str]) -> None:
        self.batches = list(batches)

    def read(self, timeout: float) -> list[str]:
        return self.batches.pop(0) if self.batches else ["q"]


@pytest.mark.slow
def test_run_loop_seeks_twice_on_a_real_replay(tmp_path: Path) -> None:
    """The display loop with two right arrows in one read: a paused real replay ends 10 s further."""
    log = tmp_path / "log"
    with mcl.LogWriter(log, format="native") as writer:
        for i in range(40):
            writer.write("t", i.to_bytes(4, "big"), i * NS_PER_S)
    with mcl.Replay([log], publish=False, start=3.0) as played:
        played.pause()
        out = io.StringIO()
        replay._run(played, _Keys(["right", "right"]), replay.PlainDisplay(out), threading.Event())
        assert played.status().position_ns == 13 * NS_PER_S
    assert "paused" in out.getvalue()


# -- --help ends with examples ---------------------------------------------------------------


def _command_modules() -> list[ModuleType]:
    """Every command module of mcl.cli (those with add_arguments and main)."""
    import importlib
    import pkgutil

    import mcl.cli

    found = []
    for item in pkgutil.iter_modules(mcl.cli.__path__):
        module = importlib.import_module(f"mcl.cli.{item.name}")
        if hasattr(module, "add_arguments") and hasattr(module, "main"):
            found.append(module)
    return found


def test_every_command_is_checked() -> None:
    assert set(ALL_COMMANDS) <= set(_command_modules())


@pytest.mark.parametrize("module", _command_modules(), ids=lambda m: m.__name__)
def test_help_ends_with_examples_that_parse(module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """The last block of --help is 'Examples:' and each example is valid for the command's own parser."""
    import re
    import shlex

    assert module.main(["--help"]) == 0
    text = capsys.readouterr().out.rstrip("\n")
    head, sep, block = text.rpartition("\nExamples:\n")
    assert sep, f"--help of {module.__name__} does not end with an Examples: block"
    prog = head.split()[1]  # "usage: mcl-NAME ..."
    examples = block.splitlines()
    assert examples and all(line.startswith(f"  {prog}") for line in examples), examples
    parser = argparse.ArgumentParser(prog=prog)
    module.add_arguments(parser)
    for line in examples:
        command = re.split(r"\s{2,}|\s[|>#]", line.strip())[0]  # without the description, pipe or comment
        parser.parse_args(shlex.split(command)[1:])  # SystemExit (a failed test) if not valid


# -- no numpy where none is needed -------------------------------------------------------------


@pytest.mark.slow
def test_mcl_bus_does_not_import_numpy() -> None:
    """Importing the mcl-bus command and printing its help leave numpy unimported (it costs ~0.2 s)."""
    code = (
        "import contextlib, io, sys\n"
        "import mcl.cli.bus\n"
        "assert 'numpy' not in sys.modules, 'import'\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert mcl.cli.bus.main(['--help']) == 0\n"
        "assert 'numpy' not in sys.modules, '--help'\n"
        "import mcl.cli.args\n"
        "assert 'numpy' not in sys.modules, 'args'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_dump_echo_json_prints_the_lines_mcl_cat_prints_for_the_log(
    mcl_bus: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mcl-dump --echo --json: one JSON line per recorded message, the same line mcl-cat gives for the log."""
    with DumpProcess(
        "--bus", mcl_bus, "-o", str(tmp_path), "--count", "40", "--topics", "imu", "--echo", "--json",
        stdout=subprocess.PIPE,
    ) as dumping:
        path = dumping.wait_recording()
        with mcl.Publisher(mcl_bus) as pub:
            assert pub.wait_for_subscribers(1, 10)
            for i in range(80):
                pub.publish(("imu", "gps")[i % 2], mcl.encode({"i": i, "b": b"\x00\xff"}))
        assert dumping.wait() == 0, dumping.stderr
        assert dumping.proc.stdout is not None
        echoed = dumping.proc.stdout.read().splitlines()
    assert path is not None
    assert len(echoed) == 40 and json.loads(echoed[0])["payload"] == {"i": 0, "b": "AP8="}
    assert cat.main([str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == echoed


def test_dump_json_needs_echo(capsys: pytest.CaptureFixture[str]) -> None:
    assert dump.main(["--json"]) == 2
    assert "--json applies to --echo" in capsys.readouterr().err


def test_replay_display_counts_from_the_log_time_origin() -> None:
    """The progress line shows log time from the origin (as --start/--end, seek and mcl-cat), not from the first record."""
    out = io.StringIO()
    status = ReplayStatus(state="paused", position_ns=7 * NS_PER_S, start_ns=2 * NS_PER_S, end_ns=12 * NS_PER_S)
    replay.PlainDisplay(out).update(status)
    assert out.getvalue().split()[:4] == ["paused", "7.000", "/", "12.000"]
    assert " 50.0 % " in out.getvalue()


@pytest.mark.parametrize("log", [VEHICLE, REFERENCE], ids=["native", "mcl1"])
def test_info_start_end_counts_the_window(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mcl-info --start/--end: messages, topics, types and times of the window; files, size and damage of the whole log."""
    with mcl.open_log(log) as reader:
        records = list(reader.iter_records())
    times = sorted(r.elapsed_ns for r in records)
    start_s, end_s = times[len(times) // 4] / NS_PER_S, times[3 * len(times) // 4] / NS_PER_S
    inside = [r for r in records if start_s * NS_PER_S <= r.elapsed_ns <= end_s * NS_PER_S]
    assert 0 < len(inside) < len(records)
    assert info.main([str(log), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert info.main([str(log), "--json", "--start", repr(start_s), "--end", repr(end_s)]) == 0
    window = json.loads(capsys.readouterr().out)
    assert window["window"] == {"start": start_s, "end": end_s} and whole["window"] is None
    assert window["messages"] == len(inside)
    assert {t: v["messages"] for t, v in window["topics"].items()} == dict(Counter(r.topic for r in inside))
    assert window["start"] == min(r.elapsed_ns for r in inside) / NS_PER_S
    assert window["end"] == max(r.elapsed_ns for r in inside) / NS_PER_S
    assert all(set(window["topics"][t]["types"]) <= set(whole["topics"][t]["types"]) for t in window["topics"])
    assert (window["files"], window["size_bytes"], window["damage"]) == (whole["files"], whole["size_bytes"], whole["damage"])
    assert window["indexed"] is False
    assert info.main([str(log), "--start", repr(start_s)]) == 0
    text = capsys.readouterr().out
    assert f"messages:  {sum(1 for r in records if r.elapsed_ns >= start_s * NS_PER_S)}" in text
    assert f"window:    {start_s:.3f} s to the end of log time" in text


def test_info_window_reports_the_damage_it_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A flipped byte in a chunk body the index cannot vouch for: the window's read finds it, mcl-info says so."""
    import shutil

    log = tmp_path / "vehicle"
    shutil.copytree(VEHICLE, log)
    data = log / "data_0000.mcln"
    body = bytearray(data.read_bytes())
    body[len(body) // 2] ^= 0xFF
    data.write_bytes(bytes(body))
    assert info.main([str(log), "--json", "--start", "0"]) == 0
    window = json.loads(capsys.readouterr().out)
    assert window["messages"] < 1400 and len(window["damage"]) == 1
    assert "CRC" in window["damage"][0]["reason"] and window["damage"][0]["path"] == str(data)


def test_info_end_before_start_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An empty window (--end before --start) is the command's one error line, exit 1."""
    assert info.main([str(VEHICLE), "--start", "5", "--end", "2"]) == 1
    assert capsys.readouterr().err == "mcl-info: error: --end 2 s is before --start 5 s\n"
