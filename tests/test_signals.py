"""SIGINT / SIGTERM / SIGHUP stop every long-running command cleanly (mcl-replay, mcl-bus, mcl-dump)."""

from __future__ import annotations

import glob
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import child_env, numbered_log, wait_until
from test_record_helpers import DumpProcess, read_back
from test_replay_cli import alive, children

import mcl
from mcl.cli.common import STOP_SIGNALS, StopSignals

MS = 1_000_000
ROOT = Path(__file__).resolve().parent.parent


class SemaphoreWatch:
    """Counts the named semaphores a command leaves in /dev/shm.

    As root, the command runs in a mount namespace with a /dev/shm of its
    own (``unshare`` / ``nsenter``): exact, whatever other programs of the
    machine do. Otherwise the machine's /dev/shm is compared before and
    after, ignoring semaphores some live process still uses.
    """

    def __init__(self) -> None:
        self._holder: subprocess.Popen[str] | None = None
        self._before: set[str] = set()
        if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("nsenter"):
            holder = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 "mount -t tmpfs -o size=1m tmpfs /dev/shm && echo ready && exec sleep 600"],
                stdout=subprocess.PIPE, text=True,
            )
            assert holder.stdout is not None
            if holder.stdout.readline().strip() == "ready":
                self._holder = holder
            else:
                holder.kill()
                holder.wait()
                holder.stdout.close()
        self._before = self._names()

    def command(self, argv: list[str]) -> list[str]:
        """`argv`, run where the semaphores are watched."""
        if self._holder is None:
            return argv
        return ["nsenter", "--mount", f"--target={self._holder.pid}", *argv]

    def _dir(self) -> str:
        return "/dev/shm" if self._holder is None else f"/proc/{self._holder.pid}/root/dev/shm"

    def _names(self) -> set[str]:
        return {os.path.basename(p) for p in glob.glob(f"{self._dir()}/sem.*")}

    def leaked(self) -> set[str]:
        """Semaphores created since the start that no live process uses."""
        new = self._names() - self._before
        return new if self._holder is not None else new - _mapped_semaphores()

    def remove_leaked(self) -> None:
        """Unlink what leaked (ours, or the private /dev/shm goes anyway)."""
        for name in self.leaked():
            try:
                os.unlink(f"{self._dir()}/{name}")
            except OSError:
                pass

    def close(self) -> None:
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
            if self._holder.stdout is not None:
                self._holder.stdout.close()
            self._holder = None

    def __enter__(self) -> SemaphoreWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mapped_semaphores() -> set[str]:
    """Named semaphores some live process has mapped (in use)."""
    names = set()
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as f:
                for line in f:
                    if "/dev/shm/sem." in line:
                        names.add(line.rsplit("/dev/shm/", 1)[1].strip())
        except OSError:  # the process ended meanwhile
            continue
    return names


# -- the helper ---------------------------------------------------------------------------


def test_stop_signals_set_the_event_and_restore_the_handlers() -> None:
    """Each of SIGINT, SIGTERM, SIGHUP sets the event; the previous handlers come back on exit."""
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    for sig in STOP_SIGNALS:
        with StopSignals() as stop:
            os.kill(os.getpid(), sig)
            wait_until(stop.event.is_set, 5, message=f"signal {sig} not seen")
            assert stop.signal == sig
        assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before


def test_stop_signals_raise_once_then_only_record() -> None:
    """raise_exit: the first SIGHUP raises SystemExit(129), a second one during clean-up does not raise."""
    with StopSignals(raise_exit=True) as stop:
        with pytest.raises(SystemExit) as exc:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(5)  # the handler raises here
        assert exc.value.code == 128 + signal.SIGHUP
        os.kill(os.getpid(), signal.SIGTERM)  # clean-up goes on
        wait_until(lambda: stop.signal is not None, 5)
        assert stop.signal == signal.SIGHUP
    with StopSignals(raise_exit=True):
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)


# -- the commands -------------------------------------------------------------------------


def _slow_log(path: Path) -> Path:
    """A 99 s native log (one record a second): a replay of it runs until stopped."""
    return numbered_log(path, 100, 1000 * MS, format="native")


def _assert_nothing_left(workers: list[int], shm: SemaphoreWatch) -> None:
    """The replay's workers are gone and no semaphore stays (the resource tracker may take a moment)."""
    wait_until(lambda: not any(alive(pid) for pid in workers), 10, message="a worker outlived mcl-replay")
    try:
        wait_until(lambda: not shm.leaked(), 10, message=lambda: f"leaked semaphores: {sorted(shm.leaked())}")
    finally:
        shm.remove_leaked()


@pytest.mark.slow
def test_sighup_ends_mcl_replay_cleanly_and_leaks_no_semaphore(tmp_path: Path) -> None:
    """SIGHUP to mcl-replay's process group (a closed terminal): exit 129, workers gone, no semaphore left in /dev/shm."""
    log = _slow_log(tmp_path / "log")
    with SemaphoreWatch() as shm:
        proc = subprocess.Popen(
            shm.command([sys.executable, "-m", "mcl.cli.replay", str(log), "--dry-run"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True, env=child_env(), cwd=str(ROOT),
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("playing")
            workers = wait_until(lambda: [p for p in children(proc.pid) if alive(p)] if len(children(proc.pid)) >= 3 else None, 20)
            os.killpg(proc.pid, signal.SIGHUP)  # what closing the terminal does
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == 128 + signal.SIGHUP, err
        assert "Traceback" not in err, err
        _assert_nothing_left(workers, shm)


@pytest.mark.slow
def test_closing_the_terminal_of_mcl_replay_ends_it_cleanly(tmp_path: Path) -> None:
    """mcl-replay in a terminal (a pty, its controlling terminal) that is closed: exit 129, workers gone, nothing leaked."""
    import fcntl
    import pty
    import termios

    log = _slow_log(tmp_path / "log")

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    err_path = tmp_path / "stderr"
    with SemaphoreWatch() as shm, open(err_path, "w") as err:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            shm.command([sys.executable, "-m", "mcl.cli.replay", str(log), "--dry-run"]),
            stdin=slave, stdout=slave, stderr=err, preexec_fn=controlling_terminal, env=child_env(), cwd=str(ROOT),
        )
        os.close(slave)
        try:
            output = bytearray()

            def playing() -> bool:
                if select.select([master], [], [], 0.05)[0]:
                    output.extend(os.read(master, 65536))
                return b"playing" in output and len([p for p in children(proc.pid) if alive(p)]) >= 2

            wait_until(playing, 30, message=lambda: output.decode(errors="replace")[-300:])
            workers = children(proc.pid)
            os.close(master)  # the terminal goes away: SIGHUP, and EIO on every read and write
            master = -1
            assert proc.wait(30) == 128 + signal.SIGHUP, err_path.read_text()
        finally:
            if master >= 0:
                os.close(master)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _assert_nothing_left(workers, shm)
    assert "Traceback" not in err_path.read_text()


@pytest.mark.slow
def test_sighup_stops_mcl_bus_cleanly() -> None:
    """SIGHUP: mcl-bus closes its forwarder (the ports are free again) and exits 0."""
    from mcl.network.forwarder import Forwarder

    with Forwarder("tcp://127.0.0.1:0") as probe:  # two free adjacent ports
        address = probe.address
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcl.cli.bus", "--bind", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=child_env(), cwd=str(ROOT), start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert "serving bus " + address in proc.stdout.readline()
        os.killpg(proc.pid, signal.SIGHUP)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err, err
    with Forwarder(address) as again:  # would fail if the ports were still held
        assert again.serving


@pytest.mark.slow
def test_sighup_closes_the_mcl_dump_log(mcl_bus: str, tmp_path: Path) -> None:
    """SIGHUP: mcl-dump records what arrived, writes the index and exits 0."""
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--status-interval", "60") as dump:
        path = dump.wait_recording()
        with mcl.Publisher(mcl_bus) as pub:
            assert pub.wait_for_subscribers(1, 10)
            for i in range(50):
                pub.publish("t", mcl.encode({"i": i}))
        assert path is not None
        wait_until(lambda: "50 msgs" in dump.stderr or _flushed(path, 50), 20)
        dump.proc.send_signal(signal.SIGHUP)
        assert dump.wait() == 0, dump.stderr
    assert (path / "data_0000.mcli").is_file()
    assert len(read_back(path)) == 50


def _flushed(path: Path, count: int) -> bool:
    try:
        return len(read_back(path, damaged_ok=True)) >= count
    except mcl.MclError:
        return False


@pytest.mark.slow
def test_sighup_to_a_script_using_mcl_replay_leaks_no_semaphore(tmp_path: Path) -> None:
    """A closed terminal kills a plain script that uses mcl.Replay (no handler of its own): its workers end and the
    resource tracker, started immune to SIGHUP by the first worker, removes every semaphore."""
    log = _slow_log(tmp_path / "log")
    script = (  # SIGHUP's default action, as in a terminal (the test runner may ignore it: nohup)
        "import signal, sys, time, mcl\n"
        "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
        f"replay = mcl.Replay({str(log)!r}, mcl.ReplayOptions(publish=False))\n"
        "replay.start()\n"
        "print('playing', flush=True)\n"
        "time.sleep(600)\n"
    )
    with SemaphoreWatch() as shm:
        proc = subprocess.Popen(
            shm.command([sys.executable, "-c", script]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True, env=child_env(), cwd=str(ROOT),
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("playing"), proc.stderr and proc.stderr.read()
            workers = wait_until(lambda: [p for p in children(proc.pid) if alive(p)] if len(children(proc.pid)) >= 3 else None, 20)
            os.killpg(proc.pid, signal.SIGHUP)
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == -signal.SIGHUP  # the script's own default: killed by the signal
        _assert_nothing_left(workers, shm)
