"""mcl-dump: options, scheduling, signals, SIGKILL at random instants, disk full, exact loss, round trip."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import child_env, wait_until
from test_record_helpers import (
    ROOT,
    DumpProcess,
    payloads,
    publish_all,
    read_back,
)

import mcl
from mcl.cli.dump import Window, add_arguments, main, make_schedule, parse_time

NS = 1_000_000_000


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


# -- scheduling -------------------------------------------------------------------------


def test_parse_time_forms() -> None:
    """'+S', 'HH:MM[:SS]' (next local occurrence) and ISO times all become UTC ns."""
    now = time.time_ns()
    assert parse_time("+2.5", now) == now + 2_500_000_000
    assert parse_time("+1", now, after_ns=now + NS) == now + 2 * NS
    assert parse_time("2030-01-02T03:04:05Z", now) == 1_893_553_445 * NS
    assert parse_time("2030-01-02T03:04:05+01:00", now) == (1_893_553_445 - 3600) * NS
    local = _dt.datetime.fromtimestamp(now / NS).astimezone()
    later = (local + _dt.timedelta(minutes=2)).strftime("%H:%M")
    t = parse_time(later, now)
    assert 0 < t - now <= 2 * 60 * NS  # today, in the next two minutes
    earlier = (local - _dt.timedelta(minutes=2)).strftime("%H:%M:%S")
    t = parse_time(earlier, now)
    assert 23 * 3600 * NS < t - now <= 24 * 3600 * NS  # already past: tomorrow
    for bad in ("noon", "25:00", "+x", "+-3", "12:61"):
        with pytest.raises(ValueError):
            parse_time(bad, now)


def test_make_schedule_windows_every_and_errors() -> None:
    """--window / --every --for / --start-at give the expected windows; contradictions are refused."""
    now = time.time_ns()
    assert list(make_schedule(_args(), now)) == [Window(0, None)]
    assert list(make_schedule(_args("--start-at", "+10"), now)) == [Window(now + 10 * NS, None)]
    windows = list(make_schedule(_args("--window", "+20", "+1", "--window", "+5", "+10"), now))
    assert windows == [Window(now + 5 * NS, now + 15 * NS), Window(now + 20 * NS, now + 21 * NS)]
    every = list(make_schedule(_args("--every", "60", "--for", "10", "--repeat", "3", "--start-at", "+1"), now))
    assert every == [Window(now + NS + k * 60 * NS, now + NS + k * 60 * NS + 10 * NS) for k in range(3)]
    endless = make_schedule(_args("--every", "2", "--for", "1"), now)
    assert [next(endless) for _ in range(50)][-1] == Window(now + 98 * NS, now + 99 * NS)
    for argv, message in [
        (("--every", "5"), "go together"),
        (("--every", "5", "--for", "6"), "longer"),
        (("--repeat", "2"), "--every"),
        (("--window", "+5", "+10", "--window", "+8", "+1"), "overlap"),
        (("--window", "+5", "+0"), "not after"),
        (("--window", "2000-01-01T00:00:00Z", "+1"), "already over"),
        (("--window", "+1", "+1", "--every", "3", "--for", "1"), "cannot be combined"),
    ]:
        with pytest.raises(ValueError, match=message):
            list(make_schedule(_args(*argv), now))


# -- command line errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--compress", "--format", "mcl1"], "compression is not supported by the mcl1 format"),
        (["--max-files", "3", "--format", "mcl1"], "rotation (max_files) is not supported by the mcl1 format"),
        (["--every", "10"], "go together"),
        (["--no-record", "--split-size", "5"], "--no-record writes no log"),
        (["--split-size", "-1"], "positive"),
        (["--count", "0"], "at least 1"),
        (["--metadata", "novalue"], "KEY=VALUE"),
        (["--start-at", "soon"], "not a time"),
    ],
)
def test_dump_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Contradictory or malformed options are argparse errors (exit 2) naming the problem."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_dump_unwritable_output_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output directory that cannot be created: one 'error:' line, exit 1, nothing else."""
    (tmp_path / "file").write_text("x")
    assert main(["-o", str(tmp_path / "file" / "logs"), "--duration", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mcl-dump: error: ") and "file" in err[0]
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert main(["-o", str(ro), "--duration", "1"]) == 1
        assert capsys.readouterr().err.startswith("mcl-dump: error: ")


def test_dump_bad_bus_address_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed bus address: one 'error:' line, exit 1, and no log directory left behind."""
    assert main(["--bus", "tcp://nowhere:notaport", "-o", str(tmp_path), "--duration", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mcl-dump: error: ")
    assert list(tmp_path.iterdir()) == []


# -- recording with the real program --------------------------------------------------------


class _Feeder:
    """Publishes numbered messages at about `rate` msg/s from a thread until stopped."""

    def __init__(self, bus: str, rate: int = 2000, topics: tuple[str, ...] = ("a", "b")) -> None:
        self.bus = bus
        self.rate = rate
        self.topics = topics
        self.sent: list[tuple[str, bytes]] = []
        self.sent_at: list[int] = []  # time.monotonic_ns() of each publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            # close() waits for the recorder's acknowledgement of the end of stream: once
            # stop() returns, everything sent has reached the recorder (or is counted lost).
            with mcl.Publisher(self.bus, close_timeout=10) as pub:
                burst = max(1, self.rate // 100)
                i = 0
                while not self._stop.is_set() and i < 2_000_000:
                    for _ in range(burst):
                        topic = self.topics[i % len(self.topics)]
                        payload = mcl.encode({"i": i})
                        self.sent_at.append(time.monotonic_ns())
                        pub.publish(topic, payload)
                        self.sent.append((topic, payload))
                        i += 1
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def __enter__(self) -> _Feeder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise self.error

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _contiguous_slice(records: list[mcl.Record], sent: list[tuple[str, bytes]]) -> int:
    """Index in `sent` where `records` start, asserting they are an unbroken run of it."""
    assert records, "nothing recorded"
    got = [(r.topic, r.payload) for r in records]
    start = sent.index(got[0])
    assert got == sent[start : start + len(got)]
    return start


@pytest.mark.slow
def _publish_until_exit(bus: str, sent: list[tuple[str, bytes]], dump: DumpProcess, pause_s: float) -> None:
    """Publish `sent` once mcl-dump subscribed, pausing `pause_s` every 100 messages; stop early if it exits."""
    with mcl.Publisher(bus) as pub:
        assert pub.wait_for_subscribers(1, 10)
        for i, (topic, payload) in enumerate(sent):
            pub.publish(topic, payload)
            if i % 100 == 99:
                time.sleep(pause_s)
                if dump.proc.poll() is not None:
                    break


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_dump_signal_closes_the_log_cleanly(mcl_bus: str, tmp_path: Path, sig: int) -> None:
    """SIGINT / SIGTERM: exit 0, index written, the log reads back undamaged, summary per topic."""
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--status-interval", "0.2") as dump:
        path = dump.wait_recording()
        with _Feeder(mcl_bus) as feeder:
            wait_until(lambda: len(feeder.sent) >= 600, 10)
            time.sleep(0.3)
        dump.proc.send_signal(sig)  # the feeder's close waited for the recorder to have everything
        assert dump.wait() == 0, dump.stderr
    assert path is not None and path.parent == tmp_path
    assert (path / "data_0000.mcli").is_file()  # the index of a cleanly closed log
    records = read_back(path)  # damage would be an error here
    start = _contiguous_slice(records, feeder.sent)
    assert start + len(records) == len(feeder.sent)
    err = dump.stderr
    assert "lost 0" in err and " msgs | " in err  # plain status lines (stderr is not a terminal)
    summary = err[err.index("recorded "):]
    assert f"{len(records):,} messages" in summary
    for topic in ("a", "b"):
        count = sum(1 for r in records if r.topic == topic)
        assert any(line.split()[:2] == [topic, f"{count:,}"] for line in summary.splitlines())


@pytest.mark.slow
def test_dump_sigkill_at_random_instants_leaves_a_readable_log(mcl_bus: str, tmp_path: Path) -> None:
    """Killed with SIGKILL at random instants, the log reads back: an unbroken run up to <= 1.5 s before the kill.

    The flush interval is 0.1 s (the default): what is lost is the last
    flush interval and what was on its way. The bound is generous because
    a loaded machine can hold the recorder off the processor for a while
    (the precise figure, 0.1 s, is for a benchmark); a writer that did not
    flush by time would lose the whole run.
    """
    rng = random.Random(1234)
    with _Feeder(mcl_bus, rate=3000) as feeder:
        for attempt in range(6):
            out = tmp_path / f"run{attempt}"
            with DumpProcess("--bus", mcl_bus, "-o", str(out), "--format", "native" if attempt % 2 == 0 else "mcl1") as dump:
                dump.wait_recording()
                time.sleep(rng.uniform(0.2, 0.8))
                dump.proc.kill()
                killed_at = time.monotonic_ns()
                assert dump.wait() == -signal.SIGKILL
            (path,) = out.iterdir()
            records = read_back(path, damaged_ok=True)
            start = _contiguous_slice(records, feeder.sent)
            last_sent = feeder.sent_at[start + len(records) - 1]
            assert killed_at - last_sent < 1.5 * NS, f"attempt {attempt}: lost {(killed_at - last_sent) / NS:.3f} s"


@pytest.mark.slow
def test_dump_write_failure_is_one_line_error_and_log_stays_readable(mcl_bus: str, tmp_path: Path) -> None:
    """When writing fails (file size limit: EFBIG), mcl-dump says so on one line, exits 1, and the log reads back."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))

    sent = payloads(3000, size=300)
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--quiet", preexec_fn=limit) as dump:
        _publish_until_exit(mcl_bus, sent, dump, 0.05)  # over 1.5 s: several flushes before the limit
        assert dump.wait(20) == 1
    lines = dump.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcl-dump: error: ") and "readable" in lines[0], dump.stderr
    (path,) = tmp_path.iterdir()
    records = read_back(path, damaged_ok=True)
    assert 0 < len(records) < len(sent)
    assert [(r.topic, r.payload) for r in records] == sent[: len(records)]


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "split"), [("native", []), ("mcl1", []), ("native", ["--split-size", "0.3"]), ("mcl1", ["--split-size", "0.3"])])
def test_dump_disk_full_counts_what_reached_the_disk(mcl_bus: str, small_disk, fmt: str, split: list[str]) -> None:
    """A real full disk (5 MiB tmpfs): the first error on one line, counts = records on disk, the rest lost, no temporary file.

    With --split-size the disk may fill while a data file is closed and the next one opened.
    """
    mnt = small_disk("5m")
    with DumpProcess("--bus", mcl_bus, "-o", str(mnt), "--format", fmt, "--status-interval", "60", *split) as dump:
        dump.wait_recording()
        sent = payloads(8000, size=1000)  # about 8 MB (16 MB as MCL_LOG 1.0 text): more than the disk
        _publish_until_exit(mcl_bus, sent, dump, 0.005)
        assert dump.wait(30) == 1, dump.stderr
    errors = [line for line in dump.lines if line.startswith("mcl-dump: error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0], dump.stderr
    assert "index" not in errors[0] and "Traceback" not in dump.stderr  # the first error, not a secondary one
    (path,) = mnt.iterdir()
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]
    records = read_back(path)  # the files were cut back to whole records: no damage
    assert 0 < len(records) < len(sent)
    assert [(r.topic, r.payload) for r in records] == sent[: len(records)]
    summary = dump.stderr[dump.stderr.index("recorded "):]
    head = summary.splitlines()[0]
    assert f": {len(records):,} messages in" in head, summary
    received = int(re.search(r"(\d+) received but not written", errors[0]).group(1)) if "not written" in errors[0] else 0
    assert f"lost {received:,}" in head and f"after {len(records)} messages on disk" in errors[0], dump.stderr


@pytest.mark.slow
def test_dump_disk_full_with_rlimit_counts_what_reached_the_disk(mcl_bus: str, tmp_path: Path) -> None:
    """The same with a file size limit (EFBIG, no root needed), native format: counts are what reads back."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, resource.RLIM_INFINITY))

    sent = payloads(3000, size=300)
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--status-interval", "60", preexec_fn=limit) as dump:
        dump.wait_recording()
        _publish_until_exit(mcl_bus, sent, dump, 0.02)
        assert dump.wait(30) == 1
    (path,) = tmp_path.iterdir()
    records = read_back(path)
    assert 0 < len(records) < len(sent)
    assert f": {len(records):,} messages in" in dump.stderr, dump.stderr
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_dump_echo_without_recording(mcl_bus: str, tmp_path: Path) -> None:
    """--echo --no-record --count N prints N decoded messages and writes no log."""
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--echo", "--no-record", "--count", "5", stdout=subprocess.PIPE) as dump:
        dump.wait_recording()
        publish_all(mcl_bus, [("imu", mcl.encode({"x": i})) for i in range(8)])
        assert dump.wait() == 0, dump.stderr
        assert dump.proc.stdout is not None
        lines = dump.proc.stdout.read().splitlines()
    assert [line.split(None, 2)[1:] for line in lines] == [["imu", repr({"x": i})] for i in range(5)]
    assert list(tmp_path.iterdir()) == []
    assert "received 5 messages" in dump.stderr


@pytest.mark.slow
def test_dump_every_for_makes_one_log_per_window(mcl_bus: str, tmp_path: Path) -> None:
    """--every S --for S --repeat N: N separate log directories, each an unbroken run of what was sent, each a whole --for long.

    The first window used to lose the program's start-up (imports, sockets):
    about 0.1 s of 0.4 on an idle machine, most of it on a loaded one.
    """
    with _Feeder(mcl_bus, rate=1000) as feeder:
        wait_until(lambda: len(feeder.sent) >= 100, 10)
        with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--every", "1", "--for", "0.4", "--repeat", "2", "--format", "mcl1") as dump:
            assert dump.wait(30) == 0, dump.stderr
    logs = sorted(tmp_path.iterdir())
    assert len(logs) == 2
    # Each recording lasted the whole window (the recorder's own clock, exact on any machine)...
    lengths = [float(m) for m in re.findall(r"messages in ([0-9.]+) s", dump.stderr)]
    assert len(lengths) == 2 and all(0.4 <= t < 5.0 for t in lengths), dump.stderr
    starts = []
    for path in logs:
        records = read_back(path)
        # ... and the records span it, less the time the subscription takes to reach the publisher.
        span = records[-1].elapsed_ns - records[0].elapsed_ns
        assert 0.2 * NS < span < 0.6 * NS, f"{path.name}: records span {span / NS:.3f} s; {dump.stderr}"
        starts.append(_contiguous_slice(records, feeder.sent))
        starts.append(starts[-1] + len(records))
    assert starts == sorted(starts) and starts[2] > starts[1]  # second window starts after a gap


@pytest.mark.slow
def test_dump_forced_loss_is_counted_exactly(mcl_bus: str, tmp_path: Path) -> None:
    """A recorder frozen (SIGSTOP) under a flood loses messages; the loss it reports equals sent - recorded."""
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--status-interval", "60") as dump:
        path = dump.wait_recording()
        # close() waits (up to 20 s) for the recorder to acknowledge the end of stream that tells the tail loss.
        with mcl.Publisher(mcl_bus, close_timeout=20) as pub:
            assert pub.wait_for_subscribers(1, 10)
            sent = 0
            for i in range(100):
                pub.publish("slow", mcl.encode({"i": i}))
                sent += 1
            time.sleep(0.3)
            os.kill(dump.proc.pid, signal.SIGSTOP)
            try:
                blob = b"z" * 1000
                for i in range(30_000):
                    pub.publish("flood", blob + i.to_bytes(4, "little"))
                    sent += 1
            finally:
                os.kill(dump.proc.pid, signal.SIGCONT)
            time.sleep(1.0)
            for i in range(100, 200):  # arrives, and reveals any gap at the end of the flood
                pub.publish("slow", mcl.encode({"i": i}))
                sent += 1
                time.sleep(0.001)
            time.sleep(0.5)
        dump.proc.send_signal(signal.SIGINT)
        assert dump.wait() == 0, dump.stderr
    records = read_back(path)
    recorded = len(records)
    assert recorded < sent  # the flood did overflow
    summary = dump.stderr[dump.stderr.index("recorded "):]
    assert f"lost {sent - recorded:,}" in summary.splitlines()[0], summary
    # The per-topic table: its last column is the loss of that topic, exactly.
    rows = {line.split()[0]: line.split() for line in summary.splitlines()[1:] if line.startswith("  ")}
    for topic, published in (("flood", 30_000), ("slow", 200)):
        got = sum(1 for r in records if r.topic == topic)
        assert int(rows[topic][1].replace(",", "")) == got, summary
        assert int(rows[topic][-1].replace(",", "")) == published - got, summary


# -- round trip: a log published onto the bus and recorded gives the same log --------------


def _make_log(path: Path) -> list[mcl.Record]:
    """A 1.5 s log of 3 topics with irregular timing and payloads of many sizes."""
    rng = random.Random(7)
    records = []
    t = 0
    for i in range(300):
        t += rng.choice([0, 1_000_000, 3_000_000, 9_000_000])
        topic = rng.choice(["imu", "gps/fix", "camera left"])
        size = rng.choice([0, 10, 100, 5000])
        payload = mcl.encode({"i": i, "blob": rng.randbytes(size)}) if i % 5 else rng.randbytes(size)
        records.append(mcl.Record(t, topic, payload))
    with mcl.LogWriter(path, "native") as writer:
        for r in records:
            writer.write_record(r)
    return records


# Recorded elapsed times agree with the reference times within this (relative to the first).
# Generous: a loaded machine delays a thread or a process by tens of ms; precise
# figures (lateness of the replay, latency of the recorder) belong to tools/.
TIME_BOUND_NS = 250_000_000


def _assert_same_log(original: list[mcl.Record], path: Path, sent_ns: list[int] | None = None) -> None:
    """The log at `path` holds the records of `original`; its times follow `sent_ns` (default: the original's)."""
    got = read_back(path)
    assert [(r.topic, r.payload) for r in got] == [(r.topic, r.payload) for r in original]
    reference = sent_ns if sent_ns is not None else [o.elapsed_ns for o in original]
    t0, g0 = reference[0], got[0].elapsed_ns
    worst = max(abs((g.elapsed_ns - g0) - (t - t0)) for g, t in zip(got, reference))
    assert worst <= TIME_BOUND_NS, f"elapsed times differ by up to {worst / 1e6:.1f} ms"


@pytest.mark.slow
def test_round_trip_published_log_records_back_identical(mcl_bus: str, tmp_path: Path) -> None:
    """A log published at its recorded timing into mcl-dump records back the same records, at the times they were sent."""
    original = _make_log(tmp_path / "original")
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path / "out"), "--status-interval", "0.2") as dump:
        path = dump.wait_recording()
        with mcl.Publisher(mcl_bus) as pub:
            assert pub.wait_for_subscribers(1, 10)
            start = time.monotonic_ns()
            sent_ns = []  # when each record really went out (this thread may be late on a loaded machine)
            for r in original:
                delay = start + r.elapsed_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / NS)
                sent_ns.append(time.monotonic_ns() - start)
                pub.publish(r.topic, r.payload)
        wait_until(lambda: f" {len(original):,} msgs | " in dump.stderr, 30, message=lambda: dump.stderr[-300:])
        dump.proc.send_signal(signal.SIGINT)
        assert dump.wait() == 0, dump.stderr
    _assert_same_log(original, path, sent_ns)


@pytest.mark.slow
def test_round_trip_mcl_replay_into_mcl_dump(mcl_bus: str, tmp_path: Path) -> None:
    """mcl-replay of a log into a running mcl-dump gives back the same records at the same times (within TIME_BOUND_NS)."""
    pytest.importorskip("mcl.cli.replay", reason="mcl-replay is not there yet")
    original = _make_log(tmp_path / "original")
    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path / "out"), "--status-interval", "0.2") as dump:
        path = dump.wait_recording()
        replay = subprocess.run(
            [sys.executable, "-m", "mcl.cli.replay", str(tmp_path / "original"), "--bus", mcl_bus, "--wait-for-subscribers", "1"],
            stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60, env=child_env(), cwd=str(ROOT), check=False,
        )
        assert replay.returncode == 0, replay.stderr
        wait_until(lambda: f" {len(original):,} msgs | " in dump.stderr, 30, message=lambda: dump.stderr[-300:])
        dump.proc.send_signal(signal.SIGINT)
        assert dump.wait() == 0, dump.stderr
    _assert_same_log(original, path)


def test_dump_survives_hostile_frames_and_reports_them_by_reason(mcl_bus: str, tmp_path: Path) -> None:
    """A forged end of stream (counts a list), one-frame messages, a forged sequence: mcl-dump records on and says so."""
    import msgpack
    import zmq

    from mcl.network import parse_bus, wire

    def meta(seq: int, kind: int = wire.KIND_DATA) -> bytes:
        return wire.META.pack(wire.VERSION, kind, seq, time.time_ns()) + b"forger:1:0"

    with DumpProcess("--bus", mcl_bus, "-o", str(tmp_path), "--status-interval", "60") as dump:
        path = dump.wait_recording()
        raw = zmq.Context.instance().socket(zmq.XPUB)  # a raw socket: sends anything, sees subscriptions
        raw.linger = 2000  # closed right after sending: let the frames go out
        try:
            raw.connect(parse_bus(mcl_bus).publish_endpoint)
            ready = b"\x01" + wire.READY_TOPIC  # the forwarder's subscription comes after every other one
            wait_until(lambda: raw.poll(100) and raw.recv() == ready, 10, 0, "the forwarder's READY subscription never came")
            raw.send_multipart([wire.END_TOPIC, meta(0, wire.KIND_END), msgpack.packb({"counts": [1, 2]})])
            raw.send_multipart([b"one"])
            raw.send_multipart([b"t", meta(0), b"a"])
            raw.send_multipart([b"t", meta(10**12), b"forged"])
            raw.send_multipart([b"t", meta(1), b"b"])
        finally:
            raw.close()
        publish_all(mcl_bus, payloads(5))
        time.sleep(0.3)
        dump.proc.send_signal(signal.SIGINT)
        assert dump.wait() == 0, dump.stderr
    err = dump.stderr
    assert "Traceback" not in err
    assert "dropped 2 malformed, 1 suspect loss claim(s) not counted" in err
    assert "dropped: bad end of stream 1, one frame 1" in err
    assert path is not None
    records = read_back(path)
    assert [r.payload for r in records if r.topic == "t"] == [b"a", b"forged", b"b"]
    assert len(records) == 3 + 5


@pytest.mark.parametrize("as_json", [False, True])
def test_echo_releases_the_bytes_it_printed(as_json: bool) -> None:
    """--echo (text or --json) gives back its byte budget once printed: a long recording keeps echoing."""
    import io
    from types import SimpleNamespace

    from mcl.cli.dump import _ECHO_BYTES, _Echo
    from mcl.message import encode

    echo = _Echo(io.StringIO(), as_json=as_json)
    payload = encode({"name": "M", "timestamp": 0.0, "v": 1})
    small = SimpleNamespace(received_ns=1, topic="t", payload=payload, message=None)
    rounds = _ECHO_BYTES // (1 << 20) + 2  # more than the budget in total, a MiB at a time
    printed = 0
    for _ in range(rounds):
        echo.push(SimpleNamespace(received_ns=1, topic="t", payload=bytes(1 << 20), message=None))
        echo.push(small)
        echo.drain()
        printed += 2
    assert echo.skipped == 0 and echo.queued_bytes == 0
    assert len(echo.out.getvalue().splitlines()) == printed
