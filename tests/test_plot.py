"""mcl-info --plot: a PNG timeline; gaps, a topic going quiet and damaged parts are found and drawn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import reach, wait_until

import mcl
from mcl.exceptions import LogExistsError
from mcl.log.record import Record
from mcl.message import encode

pytest.importorskip("matplotlib", reason="the optional 'plot' extra (matplotlib) is not installed")
pytest.importorskip("mcap", reason="the damaged log of these tests is an MCAP file")

from mcl.plot import plot_timeline  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ORIGIN_NS = 1_714_555_800_000_000_000
MS = 1_000_000


def make_log(path: Path, *, damage: bool) -> list[Record]:
    """'a' at 100 Hz with a 1 s silence at 2 s, 'b' at 10 Hz going quiet at 1.5 s; MCAP with small chunks."""
    records = [Record(t * 10 * MS, "a", encode({"name": "A", "timestamp": 0.0, "pad": "x" * 100}))
               for t in range(400) if not 200 <= t < 300]
    records += [Record(t * 100 * MS + 5 * MS, "b", encode({"name": "B", "timestamp": 0.0})) for t in range(15)]
    records.sort(key=lambda r: r.elapsed_ns)
    with mcl.LogWriter(path, "mcap", origin_ns=ORIGIN_NS, compression="none", chunk_size=2048) as writer:
        for record in records:
            writer.write_record(record)
    if damage:
        from mcap.reader import make_reader

        with open(path, "rb") as fp:
            summary = make_reader(fp).get_summary()
        assert summary is not None
        chunk = sorted(summary.chunk_indexes, key=lambda c: c.message_start_time)[len(summary.chunk_indexes) // 3]
        data = bytearray(path.read_bytes())
        where = chunk.chunk_start_offset + chunk.chunk_length // 2
        data[where : where + 8] = b"\xff" * 8
        path.write_bytes(bytes(data))
    return records


def test_sample_log_picture(sample_logs: Path, tmp_path: Path) -> None:
    """The vehicle log: a PNG of sensible size, three rows, no gaps, no damage, UTC origin known."""
    out = tmp_path / "timeline.png"
    timeline = plot_timeline(sample_logs / "vehicle", out)
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and 10_000 < len(data) < 2_000_000
    assert timeline.rows == 3 and timeline.damage_count == 0 and not timeline.damaged
    assert {t.topic: (t.messages, len(t.gaps)) for t in timeline.topics} == {
        "camera/front": (300, 0), "gps": (100, 0), "imu": (1000, 0)
    }
    assert timeline.origin_ns == 1_714_555_800_000_000_000


def test_gaps_quiet_topic_and_damage_are_found(tmp_path: Path) -> None:
    """A 1 s silence is one gap of 'a'; 'b' ends at 1.405 s; a damaged chunk is one damaged span between records."""
    make_log(tmp_path / "log.mcap", damage=True)
    out = tmp_path / "t.png"
    with pytest.warns(mcl.LogDamageWarning):
        timeline = plot_timeline(tmp_path / "log.mcap", out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    topics = {t.topic: t for t in timeline.topics}
    a, b = topics["a"], topics["b"]
    assert a.median_spacing_ns == 10 * MS
    assert (1990 * MS, 3000 * MS) in a.gaps  # the silence (the damaged chunk may add a gap of its own)
    assert b.last_ns == 1405 * MS  # where it went quiet
    assert timeline.damage_count >= 1 and len(timeline.damaged) == 1
    start, end = timeline.damaged[0]
    assert 0 < start < end < 4000 * MS


@pytest.mark.slow
def test_cli_plot_and_refusals(tmp_path: Path) -> None:
    """mcl-info LOG --plot PNG writes the picture; an existing PNG is never overwritten (error line, exit 1)."""
    make_log(tmp_path / "log.mcap", damage=False)
    run = "import sys; from mcl.cli.info import run; sys.argv[0] = 'mcl-info'; run()"
    out = tmp_path / "t.png"
    proc = subprocess.run([sys.executable, "-c", run, str(tmp_path / "log.mcap"), "--plot", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000
    assert "1 gap(s)" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", run, str(tmp_path / "log.mcap"), "--plot", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("mcl-info: error: ")
    with pytest.raises(LogExistsError):
        plot_timeline(tmp_path / "log.mcap", out)


# -- lost spans (issue 15: "damaged or lost spans marked") ------------------------------------------


def _loss_patches(timeline: object, topic: str) -> list[tuple[float, float]]:
    """The x ranges (s) of the lost-span patches drawn on `topic`'s row."""
    from mcl.plot import LOSS_GID

    fig = timeline.figure  # type: ignore[attr-defined]
    for ax in fig.axes:
        if ax.get_ylabel().split("\n")[0] == topic:
            spans = []
            for patch in ax.patches:
                if patch.get_gid() == LOSS_GID:
                    x = patch.get_x()  # axvspan draws a Rectangle in data x, axes y
                    spans.append((x, x + patch.get_width()))
            return spans
    raise AssertionError(f"no row for {topic!r}")


def _legend_labels(timeline: object) -> list[str]:
    fig = timeline.figure  # type: ignore[attr-defined]
    return [text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()]


def test_lost_spans_of_the_accounting_file_are_drawn_on_their_rows(tmp_path: Path) -> None:
    """accounting.json (docs/log-format.md) next to a native log: each topic's loss spans on its row, with a legend entry."""
    import json

    from mcl.plot import LOSS_LABEL

    log = tmp_path / "log"
    with mcl.LogWriter(log, origin_ns=ORIGIN_NS) as writer:
        for t in range(400):
            writer.write_record(Record(t * 10 * MS, "a", encode({"i": t})))
            if t % 10 == 0:
                writer.write_record(Record(t * 10 * MS + 1, "b", encode({"i": t})))
    span = {"first": 1, "count": 7, "after": 1.25, "before": 1.5}
    head = {"first": 0, "count": 2, "after": None, "before": 0.5}  # lost before the first message received
    accounting = {
        "accounting": 1, "complete": True, "bus": "tcp://127.0.0.1:1", "origin_ns": ORIGIN_NS, "recorded": 440,
        "lost": 9, "malformed": 0, "suspect": 0, "malformed_by_reason": {},
        "streams": [
            {"publisher": "h:1:x", "topic": "a", "received": 400, "lost": 0, "malformed": 0, "suspect": 0,
             "malformed_by_reason": {}, "loss_spans": []},
            {"publisher": "h:1:x", "topic": "b", "received": 40, "lost": 9, "malformed": 0, "suspect": 0,
             "malformed_by_reason": {}, "loss_spans": [head, span, {"count": "x", "before": 3}, {"count": 1, "before": float("nan")}]},
        ],
    }
    (log / "accounting.json").write_text(json.dumps(accounting), encoding="utf-8")
    out = tmp_path / "lost.png"
    timeline = plot_timeline(log, out)
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000
    topics = {t.topic: t for t in timeline.topics}
    assert topics["a"].losses == [] and _loss_patches(timeline, "a") == []
    assert topics["b"].losses == [(0, 500 * MS, 2), (1250 * MS, 1500 * MS, 7)]  # the forged spans are skipped
    assert _loss_patches(timeline, "b") == [(0.0, 0.5), (1.25, 1.5)]
    assert LOSS_LABEL in _legend_labels(timeline)


def test_a_log_without_losses_has_no_lost_mark_and_a_bad_accounting_file_is_one_warning(tmp_path: Path) -> None:
    """No accounting: no loss patch, no legend entry; an unreadable one: a LogDamageWarning, the picture still drawn."""
    from mcl.plot import LOSS_LABEL

    make_log(tmp_path / "log.mcap", damage=False)
    timeline = plot_timeline(tmp_path / "log.mcap", tmp_path / "a.png")
    assert all(not t.losses for t in timeline.topics) and LOSS_LABEL not in _legend_labels(timeline)
    (tmp_path / "accounting.json").write_bytes(b"[1, 2]")
    with pytest.warns(mcl.LogDamageWarning, match="lost spans not drawn"):
        timeline = plot_timeline(tmp_path / "log.mcap", tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG_MAGIC and all(not t.losses for t in timeline.topics)


@pytest.mark.slow
def test_a_real_recording_with_losses_draws_them(mcl_bus: str, tmp_path: Path) -> None:
    """A Recorder on a private forwarder misses sequence numbers 1-3 of 'g': the span is drawn between 0 and 4, the CLI says so."""
    import time

    import zmq

    from mcl.network import Subscriber, parse_bus, wire
    from mcl.recorder import Recorder, read_accounting

    def meta(seq: int) -> bytes:
        return wire.META.pack(wire.VERSION, wire.KIND_DATA, seq, time.time_ns()) + b"plot:1:00000000"

    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.linger = 0
    try:
        sock.connect(parse_bus(mcl_bus).publish_endpoint)
        with Recorder(tmp_path / "log", mcl_bus) as rec:
            with Subscriber(bus=mcl_bus) as probe:  # wait until the raw socket reaches subscribers
                reach(lambda: sock.send_multipart([b"warm", b""]), probe)
            for i in range(20):  # a steady row
                sock.send_multipart([b"warm", b""])
                if i == 5:
                    sock.send_multipart([b"g", meta(0), encode({"i": 0})])
                if i == 15:
                    sock.send_multipart([b"g", meta(4), encode({"i": 4})])
                time.sleep(0.02)
            wait_until(lambda: rec.status().lost >= 3, 10, 0.05)
    finally:
        sock.close(0)
    accounting = read_accounting(tmp_path / "log")
    assert accounting is not None and accounting["lost"] == 3
    (stream,) = [s for s in accounting["streams"] if s["topic"] == "g"]
    (span,) = stream["loss_spans"]
    out = tmp_path / "rec.png"
    timeline = plot_timeline(tmp_path / "log", out)
    g = {t.topic: t for t in timeline.topics}["g"]
    assert g.messages == 2 and len(g.losses) == 1 and g.losses[0][2] == 3
    ((x0, x1),) = _loss_patches(timeline, "g")
    assert x0 == pytest.approx(span["after"], abs=1e-6) and x1 >= span["before"] - 1e-6 and x1 - x0 >= 0.1  # 10 sleeps apart
    assert g.first_ns is not None and g.last_ns is not None
    assert g.first_ns / 1e9 - 0.5 < x0 < x1 < g.last_ns / 1e9 + 0.5  # on the row, between the two messages it saw
    run = "import sys; from mcl.cli.info import run; sys.argv[0] = 'mcl-info'; run()"
    proc = subprocess.run([sys.executable, "-c", run, str(tmp_path / "log"), "--plot", str(tmp_path / "cli.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1 lost span(s)" in proc.stderr and (tmp_path / "cli.png").read_bytes()[:8] == PNG_MAGIC
