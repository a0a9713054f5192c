"""Every command's error and warning lines start with its name: ``mcl-NAME: error: ...``, ``mcl-NAME: warning: ...``."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import mcl
from conftest import wait_until
from test_record_helpers import DumpProcess

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["bus", "cat", "convert", "dump", "export", "foxglove", "info", "replay", "station"]


def _run(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`mcl-COMMAND ARGS` as a process (named by its console script), stdin closed."""
    code = f"import sys; sys.argv[0] = 'mcl-{command}'; from mcl.cli.{command} import run; run()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT), stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_is_one_line_named_by_the_command(command: str, tmp_path: Path) -> None:
    """Bad input (a path that does not exist; for mcl-foxglove a bad bus) to every command: one ``mcl-NAME: error:`` line, exit 1."""
    missing = str(tmp_path / "missing")
    argv = {
        "bus": ["--curve-secret", missing, "--curve-clients", missing],
        "convert": [missing, str(tmp_path / "out")],
        "dump": ["-o", str(tmp_path / "f" / "x"), "--duration", "1"],
        "export": [missing, "--fields", "a", "--csv", "-"],
        "foxglove": ["--bus", "tcp://nowhere:notaport", "--port", "0"],
        "station": ["check", missing],
    }.get(command, [missing])
    if command == "dump":
        (tmp_path / "f").write_text("a file where the output directory should go")
    proc = _run(command, *argv)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"mcl-{command}: error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_damage_warnings_of_a_replay_worker_are_named_by_the_command(tmp_path: Path) -> None:
    """A damaged log replayed: the buffer worker's warning is one ``mcl-replay: warning:`` line, no file and line of mcl."""
    log = tmp_path / "log"
    log.mkdir()
    source = Path(__file__).parent / "data" / "mcl-v1" / "dataset" / "UnitTestMessageA.log"
    data = source.read_bytes()
    (log / "A.log").write_bytes(data[: len(data) - 30])  # cut inside the last line
    proc = _run("replay", str(log), "--dry-run", "--max-speed")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings and all(line.startswith("mcl-replay: warning: ") for line in warnings), proc.stderr
    assert "mcl/" not in proc.stderr and "Warning:" not in proc.stderr


@pytest.fixture
def silent_ports() -> Iterator[str]:
    """Two loopback ports held by listeners that accept connections and never answer (not a forwarder)."""
    listeners: list[socket.socket] = []
    try:
        for _ in range(50):
            first = socket.create_server(("127.0.0.1", 0))
            port = first.getsockname()[1]
            try:
                second = socket.create_server(("127.0.0.1", port + 1))
            except OSError:
                first.close()
                continue
            listeners = [first, second]
            break
        assert listeners, "no two consecutive free loopback ports"
        yield f"tcp://127.0.0.1:{port}"
    finally:
        for sock in listeners:
            sock.close()


@pytest.mark.slow
def test_no_forwarder_answering_is_a_warning_line_of_the_command(silent_ports: str, tmp_path: Path) -> None:
    """mcl-dump on a bus whose ports are taken by something silent: ``mcl-dump: warning: no forwarder answers at ...``."""
    with DumpProcess("--bus", silent_ports, "-o", str(tmp_path), "--quiet") as dump:
        line = wait_until(
            lambda: next((x for x in dump.lines if "no forwarder answers" in x), None),
            timeout=30, message=lambda: dump.stderr,
        )
        assert line.startswith(f"mcl-dump: warning: no forwarder answers at {silent_ports} "), line
        assert f"mcl-bus --bind {silent_ports}" in line
        dump.proc.send_signal(2)
        assert dump.wait(20) == 0, dump.stderr
    assert not any(x.startswith(("error:", "warning:")) for x in dump.lines), dump.stderr


def test_run_main_names_lines_per_thread(capsys: pytest.CaptureFixture[str]) -> None:
    """Two commands called in one process (as tests do): each line carries its own command's name; none after."""
    from mcl.cli import cat, info

    assert cat.main(["/nonexistent/a"]) == 1
    assert info.main(["/nonexistent/b"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[0:2] for line in err] == [["mcl-cat", "error"], ["mcl-info", "error"]]
    mcl.cli.common.print_error("outside any command")
    assert capsys.readouterr().err == "error: outside any command\n"


LOG = str(ROOT / "sample_logs" / "vehicle")
HUGE_SECONDS = [
    ("cat", [LOG, "--end", "1e300"]),
    ("cat", [LOG, "--start", "inf"]),
    ("info", [LOG, "--start", "1e300"]),
    ("export", [LOG, "--fields", "x", "--csv", "-", "--end", "1e11"]),
    ("convert", [LOG, "out", "--start", "1e20"]),
    ("convert", [LOG, "out", "--split-duration", "1e300"]),
    ("replay", [LOG, "--until", "1e300", "--dry-run"]),
    ("replay", [LOG, "--delay", "1e300", "--dry-run"]),
    ("dump", ["--duration", "1e300"]),
    ("dump", ["--for", "1", "--every", "1e300"]),
    ("dump", ["--every", "1", "--for", "1e300"]),
    ("dump", ["--flush-interval", "1e300"]),
    ("dump", ["--split-duration", "1e300"]),
    ("dump", ["--status-interval", "1e300"]),
    ("station", ["status", "--run-dir", "nowhere", "--timeout", "1e300"]),
]


@pytest.mark.parametrize(("command", "argv"), HUGE_SECONDS, ids=[f"{c}:{a[-2]}" for c, a in HUGE_SECONDS])
def test_seconds_past_the_range_of_times_are_a_usage_error(command: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Any seconds option given 1e300 (or inf): exit 2, the command's ``error:`` line naming the option; never an OverflowError."""
    import importlib

    module = importlib.import_module(f"mcl.cli.{command}")
    assert module.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"mcl-{command}") and ": error: " in err[-1] and argv[-2] in err[-1], err


def test_api_seconds_past_the_range_of_times_are_an_mcl_error() -> None:
    """The seconds forms of the API: a value no log time can have is an MclError (ArgumentError), not an OverflowError."""
    with pytest.raises(mcl.MclError, match="outside the range of log times"):
        mcl.open_log(LOG, end=1e300)
    with pytest.raises(mcl.MclError, match="outside the range of log times"):
        mcl.open_log(LOG, start=float("nan"))
