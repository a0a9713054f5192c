"""mcl-replay: progress lines, bad input, bus output, remote control, keys in a terminal, signals."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import alive, numbered_log, proc_stat, receive, wait_until

import mcl
from mcl.replay.control import ControlClient

MS = 1_000_000
DATASET = Path(__file__).resolve().parent.parent / "sample_logs" / "mcl-v1-dataset"
CLI = [sys.executable, "-c", "from mcl.cli.replay import run; run()"]


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields is not None and int(fields[1]) == pid and fields[0] != b"Z":
                found.append(int(entry))
    return found


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_plain_progress_without_a_terminal() -> None:
    """Without a terminal: plain progress lines and a final summary; exit 0."""
    done = run_cli(str(DATASET), "--speed", "20", "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "finished: 30 messages sent, 0 loops"
    assert any(line.startswith("finished") and "100.0 %" in line for line in lines)
    assert done.stderr == ""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["/no/such/log"], 1, "mcl-replay: error: /no/such/log"),
        ([str(DATASET), "--speed", "0"], 2, "--speed"),
        ([str(DATASET), "--remap", "nonsense"], 2, "remap"),
        ([str(DATASET), "--exclude", "("], 2, "regular expression"),
        ([str(DATASET), "--until", "1", "--duration", "2"], 2, "not allowed with"),
        ([str(DATASET), "--bus", "tcp://nowhere:notaport"], 1, "mcl-replay: error:"),
        ([str(DATASET), "--control", "not an address", "--dry-run"], 1, "mcl-replay: error:"),
        ([str(DATASET), "--topics", "nosuch", "--dry-run"], 1, "mcl-replay: error: topic 'nosuch' not in the log"),
        ([str(DATASET), "--start-offset", "100", "--dry-run"], 1, "mcl-replay: error: --start 100 s is past the end"),
    ],
)
def test_bad_input_is_one_line(args: list[str], code: int, message: str) -> None:
    """Bad input: a one-line message on stderr, exit 1 (2 for arguments), never a traceback."""
    done = run_cli(*args)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    if code == 1:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_replays_onto_a_bus(mcl_bus: str, tmp_path: Path) -> None:
    """mcl-replay --bus --wait-for-subscribers delivers every record to a subscriber, selected and remapped."""
    from mcl.network import Subscriber

    log = numbered_log(tmp_path / "log", 40, 10 * MS)
    with Subscriber(bus=mcl_bus) as sub:
        proc = subprocess.Popen(
            [*CLI, str(log), "--bus", mcl_bus, "--wait-for-subscribers", "1", "--speed", "10",
             "--start-offset", "0.1", "--until", "0.3", "--remap", "t:=r"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            got = [(r.topic, int.from_bytes(r.payload, "big")) for r in receive(sub, 21, 30)]
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert got == [("r", i) for i in range(10, 31)]


@pytest.mark.slow
def test_remote_control_endpoint(tmp_path: Path) -> None:
    """--control: status, seek, speed, resume and bad requests over JSON; quit ends the command."""
    log = numbered_log(tmp_path / "log", 50, 100 * MS)
    proc = subprocess.Popen(
        [*CLI, str(log), "--dry-run", "--start-paused", "--control", "tcp://127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("control: tcp://127.0.0.1:")
        with ControlClient(line.split()[1], timeout=20) as client:
            status = client.request("status")
            assert status["state"] == "paused" and status["sent"] == 0 and status["duration"] == pytest.approx(4.9)
            status = client.request("seek", time=4.0)
            assert status["position"] == pytest.approx(4.0)
            assert client.request("speed", speed=None)["speed"] is None
            with pytest.raises(mcl.ReplayError, match="unknown cmd"):
                client.request("dance")
            with pytest.raises(mcl.ReplayError, match="time"):
                client.request("seek")
            client.request("speed", speed=2.0)
            client.request("resume")
            wait_until(lambda: client.request("status")["sent"] >= 5, 20, 0.05)
            client.request("pause")
            client.request("quit")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_stop_cleanly_without_orphans(tmp_path: Path, signum: int, code: int) -> None:
    """SIGTERM, or Ctrl-C sent to the whole process group, ends mcl-replay and its workers."""
    log = numbered_log(tmp_path / "log", 100, 1000 * MS)
    proc = subprocess.Popen(
        [*CLI, str(log), "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("playing")
        wait_until(lambda: sum(title(pid).startswith("mcl-replay") for pid in children(proc.pid)) == 2, 20, 0.05)
        workers = children(proc.pid)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        else:
            os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code
    assert "Traceback" not in err
    wait_until(lambda: not any(alive(pid) for pid in workers), 10, 0.05)


@pytest.mark.slow
def test_keys_in_a_terminal_and_terminal_restored(tmp_path: Path) -> None:
    """In a terminal: space pauses, right seeks +5 s, up raises the speed, q quits; settings restored."""
    log = numbered_log(tmp_path / "log", 30, 1000 * MS)
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(
        [*CLI, str(log), "--dry-run", "--control", "tcp://127.0.0.1:0"],
        stdin=slave, stdout=slave, stderr=slave,
    )
    output = bytearray()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    output.extend(os.read(master, 65536))
                except OSError:
                    return

    try:
        wait_until(lambda: (pump(0.05), b"control: " in output)[1], 30, 0.05)
        address = output.split(b"control: ", 1)[1].split()[0].decode()
        with ControlClient(address, timeout=20) as client:
            wait_until(lambda: client.request("status")["state"] == "playing", 20, 0.05)
            os.write(master, b" ")
            wait_until(lambda: (pump(0.05), client.request("status")["state"] == "paused")[1], 10, 0.05)
            position = client.request("status")["position"]
            os.write(master, b"\x1b[C")
            wait_until(lambda: (pump(0.05), client.request("status")["position"] >= position + 4.9)[1], 10, 0.05)
            os.write(master, b"\x1b[A")
            wait_until(lambda: (pump(0.05), client.request("status")["speed"] == 2.0)[1], 10, 0.05)
            os.write(master, b"q")
        wait_until(lambda: (pump(0.05), proc.poll() is not None)[1], 20, 0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0
    assert after == before
    assert b"paused" in output and b"q quit" in output


@pytest.mark.slow
@pytest.mark.parametrize("topics", [["imu", "gps"], ["imu,gps"], ["imu", "--topics", "gps"]])
def test_topics_take_names_or_comma_lists(topics: list[str]) -> None:
    """--topics a b, --topics a,b and a repeated --topics select the same records."""
    vehicle = Path(__file__).resolve().parent.parent / "sample_logs" / "vehicle"
    done = run_cli(str(vehicle), "--max-speed", "--dry-run", "--topics", *topics)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "finished: 1100 messages sent, 0 loops"
