"""Replay workers: names, supervision (dead / stuck), no orphans when the parent dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import alive, numbered_log, wait_until

import mcl

MS = 1_000_000


def running(pid: int) -> bool:
    """True while `pid` is a live (not zombie) mcl-replay worker."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return alive(pid) and (b"mcl-replay" in cmdline or b"spawn_main" in cmdline)


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    """True once none of `pids` runs (AssertionError after `timeout` s)."""
    return bool(wait_until(lambda: not any(running(pid) for pid in pids), timeout, 0.05, lambda: f"still running: {pids}"))


@pytest.mark.slow
def test_workers_are_named_and_closed(tmp_path: Path) -> None:
    """Workers carry their setproctitle names; close() leaves none behind."""
    log = numbered_log(tmp_path / "log", 10, 100 * MS)
    replay = mcl.Replay(log, hooks=[lambda r: None])
    try:
        replay.pause()
        pids = replay.worker_pids
        titles: dict[str, str] = {}

        def named() -> bool:  # a worker names itself as it starts
            for name, pid in pids.items():
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    titles[name] = f.read().split(b"\0")[0].decode()
            return all(title.startswith("mcl-replay") for title in titles.values())

        wait_until(named, 30, message=lambda: str(titles))
        assert titles == {"buffer": "mcl-replay: buffer", "broadcast": "mcl-replay: broadcast"}
    finally:
        replay.close()
    assert wait_gone(list(pids.values()), 5.0)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["buffer", "broadcast"])
def test_dead_worker_is_reported(tmp_path: Path, victim: str) -> None:
    """A worker killed mid-replay makes wait() raise ReplayError at once, naming it; no hang."""
    log = numbered_log(tmp_path / "log", 50, 100 * MS)
    with mcl.Replay(log, hooks=[lambda r: None]) as replay:
        replay.start()
        os.kill(replay.worker_pids[victim], signal.SIGKILL)
        began = time.monotonic()
        with pytest.raises(mcl.ReplayError, match=f"{victim} worker .* died"):
            replay.wait(30)
        assert time.monotonic() - began < 10
        assert replay.status().state == "failed"
        with pytest.raises(mcl.ReplayError):
            replay.start()
        pids = list(replay.worker_pids.values())
    assert wait_gone(pids, 5.0)


@pytest.mark.slow
def test_stuck_worker_is_reported(tmp_path: Path) -> None:
    """A worker that stops answering (SIGSTOP) is reported stuck and killed."""
    log = numbered_log(tmp_path / "log", 50, 100 * MS)
    with mcl.Replay(log, hooks=[lambda r: None], stuck_timeout=1.0) as replay:
        replay.start()
        pid = replay.worker_pids["buffer"]
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(mcl.ReplayError, match="buffer worker .* stuck"):
                replay.wait(30)
        finally:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    assert wait_gone([pid], 5.0)


PARENT = textwrap.dedent(
    """
    import json, sys, threading, time
    import mcl

    def main():
        replay = mcl.Replay(sys.argv[1], hooks=[lambda r: None])
        if sys.argv[2] == "thread":  # started from a thread: parent-pid polling only
            t = threading.Thread(target=replay.start)
            t.start()
            t.join()
        else:
            replay.start()
        print(json.dumps(replay.worker_pids), flush=True)
        time.sleep(60)

    if __name__ == "__main__":
        main()
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("started_from", ["main", "thread"])
def test_no_orphans_when_the_parent_is_killed(tmp_path: Path, started_from: str) -> None:
    """SIGKILL of the process that owns a replay: its workers exit within seconds."""
    log = numbered_log(tmp_path / "log", 100, 1000 * MS)
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), str(log), started_from], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pids = list(json.loads(parent.stdout.readline()).values())
        assert len(pids) == 2 and all(running(pid) for pid in pids)
        parent.kill()
        parent.wait(10)
        assert wait_gone(pids, 10.0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        parent.stdout.close()  # type: ignore[union-attr]
