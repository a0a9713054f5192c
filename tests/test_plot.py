"""mcl-info --plot: a PNG timeline; gaps, a topic going quiet and damaged parts are found and drawn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    with pytest.raises(LogExistsError):
        plot_timeline(tmp_path / "log.mcap", out)
