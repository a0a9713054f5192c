"""mcl-convert: MCL_LOG 1.0 <-> native round trips, filters, merging, MCAP output and bad input."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings

import mcl
from mcl.cli.convert import main
from mcl.log.mcl1 import Mcl1Writer
from mcl.log.native import NativeSource, NativeWriter
from mcl.log.record import Record
from tests.strategies import MCL1_RESOLUTION_NS, mcl1_topics, records

ORIGIN = 1_600_000_000_000_000_000  # whole µs: MCL_LOG 1.0 keeps µs


def _read(*paths: Path, **kwargs: object) -> list[Record]:
    with mcl.open_log(*paths, **kwargs) as reader:  # type: ignore[arg-type]
        return list(reader)


def _native(path: Path, recs: list[Record], origin: int = ORIGIN, **metadata: str) -> None:
    with NativeWriter(path, origin_ns=origin, metadata=metadata) as writer:
        for rec in recs:
            writer.write_record(rec)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(recs=records(topic=mcl1_topics(), resolution_ns=MCL1_RESOLUTION_NS, max_size=25))
def test_mcl1_to_native_to_mcl1_gives_back_the_same_records(recs: list[Record]) -> None:
    """MCL_LOG 1.0 -> native -> MCL_LOG 1.0 keeps every record (time, topic, payload bytes) and the order."""
    if not recs:
        return  # an MCL_LOG 1.0 directory without records holds no file: not a log
    with tempfile.TemporaryDirectory() as tmp:
        first, native, back = Path(tmp) / "first", Path(tmp) / "native", Path(tmp) / "back"
        with Mcl1Writer(first, origin_ns=ORIGIN, revision="r1") as writer:
            for rec in recs:
                writer.write_record(rec)
        original = _read(first)
        assert main([str(first), str(native)]) == 0
        assert main([str(native), str(back), "--format", "mcl1"]) == 0
        assert _read(native) == original
        assert _read(back) == original
        with NativeSource(native) as source:
            assert source.origin_ns == ORIGIN and source.metadata["revision"] == "r1"


def test_reference_dataset_round_trips_through_native(tmp_path: Path, reference_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The original MCL dataset (30 records, 3 files) survives MCL_LOG 1.0 -> native -> MCL_LOG 1.0."""
    assert main([str(reference_dir / "dataset"), str(tmp_path / "n")]) == 0
    assert "wrote 30 records" in capsys.readouterr().out
    assert main([str(tmp_path / "n"), str(tmp_path / "m"), "--format", "mcl1"]) == 0
    original = _read(reference_dir / "dataset")
    assert len(original) == 30 and _read(tmp_path / "n") == original == _read(tmp_path / "m")


def test_filters_and_merge(tmp_path: Path) -> None:
    """Several inputs merge by absolute time; --topics, --start and --end keep only what they select."""
    a = [Record(i * 100_000_000, "gps" if i % 2 else "imu", msgpack.packb(i)) for i in range(30)]
    b = [Record(i * 100_000_000, "cam", msgpack.packb(-i)) for i in range(30)]
    _native(tmp_path / "a", a, vehicle="ute")
    _native(tmp_path / "b", b, origin=ORIGIN + 50_000_000, vehicle="van")
    out = tmp_path / "out"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), str(out), "--topics", "gps", "cam", "--start", "1", "--end", "2"]) == 0
    merged = _read(tmp_path / "a", tmp_path / "b", topics=["gps", "cam"], start=1, end=2)
    got = _read(out)
    assert got == merged and len(got) == 15
    assert {r.topic for r in got} == {"gps", "cam"} and all(1e9 <= r.elapsed_ns <= 2e9 for r in got)
    assert got == sorted(got, key=lambda r: r.elapsed_ns)
    with NativeSource(out) as source:
        assert source.origin_ns == ORIGIN and source.metadata["vehicle"] == "ute, van"


def test_compressed_and_split_output(tmp_path: Path) -> None:
    """--compress and --split-size give a zstd-compressed log of several files with the same records."""
    recs = [Record(i * 1000, "t", b"x" * 200) for i in range(3000)]
    _native(tmp_path / "in", recs)
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "--compress", "--split-size", "0.004"]) == 0
    files = sorted((tmp_path / "out").glob("*.mcln"))
    assert len(files) > 1 and sum(f.stat().st_size for f in files) < 200 * 3000 / 5
    assert _read(tmp_path / "out") == recs


def test_mcap_output(tmp_path: Path) -> None:
    """An OUT ending in .mcap is written by mcl.mcap_export with every record."""
    pytest.importorskip("mcap")
    recs = [Record(i, "t", msgpack.packb({"name": "M", "timestamp": 0.0, "v": i})) for i in range(10)]
    _native(tmp_path / "in", recs)
    assert main([str(tmp_path / "in"), str(tmp_path / "out.mcap")]) == 0
    from mcap.reader import make_reader

    with open(tmp_path / "out.mcap", "rb") as fp:
        assert sum(1 for _ in make_reader(fp).iter_messages()) == 10


def test_format_mcap_without_suffix_and_back(tmp_path: Path) -> None:
    """--format mcap writes MCAP whatever the name; both encodings convert back to the same native records."""
    pytest.importorskip("mcap")
    recs = [Record(i * 1000, "t" if i % 2 else "", msgpack.packb({"name": "M", "timestamp": 0.5, "v": i})) for i in range(10)]
    _native(tmp_path / "in", recs)
    for encoding in ("json", "msgpack"):
        out = tmp_path / f"out_{encoding}"
        assert main([str(tmp_path / "in"), str(out), "--format", "mcap", "--mcap-encoding", encoding]) == 0
        assert out.is_file() and out.read_bytes()[:8] == b"\x89MCAP0\r\n"
        assert main([str(out), str(tmp_path / f"back_{encoding}")]) == 0
        assert _read(tmp_path / f"back_{encoding}") == recs


def test_mcap_metadata_holds_source_paths_only_when_asked(tmp_path: Path) -> None:
    """The absolute path of an input is written into the MCAP file only with --mcap-metadata."""
    pytest.importorskip("mcap")
    _native(tmp_path / "in", [Record(0, "t", msgpack.packb([1]))])
    assert main([str(tmp_path / "in"), str(tmp_path / "plain.mcap")]) == 0
    assert main([str(tmp_path / "in"), str(tmp_path / "meta.mcap"), "--mcap-metadata"]) == 0
    where = str((tmp_path / "in").resolve()).encode()
    assert where not in (tmp_path / "plain.mcap").read_bytes()
    assert where in (tmp_path / "meta.mcap").read_bytes()


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A missing input, an existing output or an impossible conversion: 'error: ...' and exit 1, output kept."""
    _native(tmp_path / "in", [Record(1, "has space", b"x")])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    cases = [
        ([str(tmp_path / "missing"), str(tmp_path / "o1")], "missing"),
        ([str(tmp_path / "in"), str(tmp_path / "taken")], "never overwrites"),
        ([str(tmp_path / "in"), str(tmp_path / "o2"), "--format", "mcl1"], "white space"),
        ([str(tmp_path / "in"), str(tmp_path / "o3"), "--format", "mcl1", "--compress"], "native"),
        ([str(tmp_path / "in"), str(tmp_path / "o4"), "--topics", "nosuch"], "topic 'nosuch' not in the log"),
        ([str(tmp_path / "in"), str(tmp_path / "o5.mcap"), "--split-size", "1"], "--split-size does not apply to an MCAP"),
        ([str(tmp_path / "in"), str(tmp_path / "o6"), "--mcap-encoding", "json"], "applies only to an MCAP"),
    ]
    for argv, message in cases:
        proc = subprocess.run(
            [sys.executable, "-c", "from mcl.cli.convert import run; run()", *argv],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mcl-convert: error: ") and message in lines[0], proc.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    assert not any((tmp_path / name).exists() for name in ("o2", "o4", "o5.mcap", "o6"))  # a failed conversion leaves nothing
    assert main(["only-one-arg"]) == 2
    assert main(["--format", "xml", "a", "b"]) == 2
