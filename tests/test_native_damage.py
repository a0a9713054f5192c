"""Native log format under damage: SIGKILLed writers, flipped / zeroed bytes, cut files, lost indexes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcl
from mcl.cli.info import main as info_main
from mcl.exceptions import LogDamageWarning, LogFormatError
from mcl.log.native import NativeSource, NativeWriter, data_files, reindex
from mcl.log.record import Record

ORIGIN = 1_700_000_000_000_000_000
ROOT = Path(__file__).resolve().parent.parent


def _record(i: int) -> Record:
    return Record(i * 1000, f"topic/{i % 4}", msgpack.packb({"name": "Sample", "timestamp": i, "data": list(range(i % 50))}))


def _make_log(path: Path, n: int = 3000, **options: object) -> list[Record]:
    recs = [_record(i) for i in range(n)]
    with NativeWriter(path, origin_ns=ORIGIN, chunk_size=4000, **options) as writer:  # type: ignore[arg-type]
        for rec in recs:
            writer.write_record(rec)
    return recs


def _read_lenient(path: Path) -> tuple[list[Record], list[LogDamageWarning]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mcl.open_log(path) as reader:
            got = list(reader)
    damage = [w.message for w in caught if isinstance(w.message, LogDamageWarning)]
    assert len(damage) == len(caught), [str(w.message) for w in caught]
    return got, damage  # type: ignore[return-value]


# A writer in its own process: writes records forever, flushing every 50
# records and telling the parent how many are flushed (one line each time).
_WRITER = """
import sys
sys.path.insert(0, {root!r})
from mcl.log.native import NativeWriter
from tests.test_native_damage import _record
w = NativeWriter({path!r}, origin_ns={origin}, chunk_size=3000, flush_interval_ns=None, split_size={split})
i = 0
while i < 2_000_000:
    w.write_record(_record(i))
    i += 1
    if i % 50 == 0:
        w.flush()
        print(i, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("split", [None, 40_000])
def test_writer_killed_at_random_instants_leaves_a_readable_log(tmp_path: Path, split: int | None) -> None:
    """SIGKILL at random instants: every flushed record reads back, in order; reindex repairs the index."""
    rng = random.Random(1234 if split is None else 4321)
    for attempt in range(4):
        path = tmp_path / f"log{attempt}"
        code = _WRITER.format(root=str(ROOT), path=str(path), origin=ORIGIN, split=split)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            flushed = 0
            deadline = time.monotonic() + 60  # generous: a loaded machine
            wanted = rng.randint(1, 40)  # reports to see before the kill
            assert proc.stdout is not None
            for _ in range(wanted):
                line = proc.stdout.readline()
                assert line, "the writer process died on its own"
                flushed = int(line)
                assert time.monotonic() < deadline
            time.sleep(rng.uniform(0, 0.02))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        got, _ = _read_lenient(path)
        assert len(got) >= flushed
        assert got == [_record(i) for i in range(len(got))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LogDamageWarning)
            with NativeSource(path) as source:
                before = source.summary()
        assert before.messages == len(got)
        summary = reindex(path)
        assert summary.indexed and summary.messages == len(got)
        assert _read_lenient(path)[0] == got


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.floats(0, 1, exclude_max=True),
    length=st.integers(1, 64),
    mode=st.sampled_from(["flip", "zero"]),
    with_index=st.booleans(),
)
def test_damaged_bytes_lose_only_the_chunks_they_touch(where: float, length: int, mode: str, with_index: bool) -> None:
    """Flipping or zeroing bytes anywhere loses at most the chunks they touch, warns, and strict mode raises."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log"
        recs = _make_log(path, n=600)
        data = data_files(path)[0]
        with NativeSource(path) as source:
            chunks = source._files[0].scan.chunks
        if not with_index:
            data.with_suffix(".mcli").unlink()
        blob = bytearray(data.read_bytes())
        start = int(where * len(blob))
        end = min(start + length, len(blob))
        for i in range(start, end):
            blob[i] = blob[i] ^ 0xFF if mode == "flip" else 0
        if bytes(blob) == data.read_bytes():
            return  # zeroing zeros changes nothing
        data.write_bytes(bytes(blob))
        got, damage = _read_lenient(path)
        assert damage, "damage went unnoticed"
        assert all(str(data) in str(w) and "byte" in str(w) for w in damage)
        # What comes back is in order, and every chunk the damage did not touch is whole.
        assert all(r in recs for r in got) and got == sorted(got, key=recs.index)
        first = 0
        for chunk in chunks:
            touched = start < chunk.offset + chunk.length and end > chunk.offset
            if not touched:
                assert recs[first : first + chunk.count] == [r for r in got if r in recs[first : first + chunk.count]]
            first += chunk.count
        with pytest.raises(LogFormatError, match=f"{data}: byte [0-9]+: "):
            with mcl.open_log(path, strict=True) as reader:
                for _ in reader:
                    pass


@settings(max_examples=30, deadline=None)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_a_cut_file_reads_up_to_the_cut(cut: float) -> None:
    """A data file cut at any byte (lost index) reads every whole chunk before the cut."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log"
        recs = _make_log(path, n=400)
        data = data_files(path)[0]
        with NativeSource(path) as source:
            chunks = source._files[0].scan.chunks
        data.with_suffix(".mcli").unlink()
        size = int(cut * data.stat().st_size)
        os.truncate(data, size)
        got, damage = _read_lenient(path)
        whole = sum(c.count for c in chunks if c.offset + c.length <= size)
        assert got == recs[:whole]
        ends_on_boundary = any(c.offset + c.length == size for c in chunks) or size == chunks[0].offset
        assert bool(damage) != ends_on_boundary
        with NativeSource(path) as source:
            summary = source.summary()
        assert summary.messages == whole and len(summary.damage) == len(damage)


def test_missing_or_damaged_index_is_rebuilt_by_mcl_info_reindex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without its index (or with a damaged one) a log reads the same; mcl-info --reindex restores it."""
    path = tmp_path / "log"
    recs = _make_log(path, split_size=30_000)
    files = data_files(path)
    assert len(files) > 2
    files[0].with_suffix(".mcli").unlink()
    index = files[1].with_suffix(".mcli")
    index.write_bytes(index.read_bytes()[:-1] + b"\0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _read_lenient(path)[0] == recs
        with NativeSource(path) as source:
            summary = source.summary()
    assert not summary.indexed and summary.messages == len(recs) and not summary.damage
    assert info_main(["--reindex", str(path)]) == 0
    assert "messages:  3000" in capsys.readouterr().out
    assert files[0].with_suffix(".mcli").exists()
    with NativeSource(path) as source:
        assert source.summary().indexed


def test_reindex_records_a_damaged_body_that_the_old_index_did_not_know(tmp_path: Path) -> None:
    """A damaged chunk body under a valid index is found by reading, and listed by reindex."""
    path = tmp_path / "log"
    recs = _make_log(path, n=1000)
    data = data_files(path)[0]
    with NativeSource(path) as source:
        victim = source._files[0].scan.chunks[2]
        assert not source.summary().damage
    blob = bytearray(data.read_bytes())
    blob[victim.offset + victim.length - 1] ^= 1
    data.write_bytes(bytes(blob))
    with NativeSource(path) as source:
        assert not source.summary().damage  # the index does not know yet
        with pytest.warns(LogDamageWarning, match=f"byte {victim.offset}: damaged chunk"):
            got = list(source.iter_records())
        assert len(source.summary().damage) == 1
    assert len(got) == len(recs) - victim.count
    # The index says the file is as big as it was: reindex reads every chunk to find the damage.
    summary = reindex(path)
    assert summary.indexed and [d.offset for d in summary.damage] == [victim.offset]
    assert summary.messages == len(recs) - victim.count


def test_an_empty_or_headerless_data_file_is_damage_not_an_error(tmp_path: Path) -> None:
    """A data file cut inside its header (killed at creation) is reported and skipped."""
    path = tmp_path / "log"
    recs = _make_log(path, n=200, split_size=5000)
    files = data_files(path)
    last = files[-1]
    os.truncate(last, 10)
    last.with_suffix(".mcli").unlink()
    got, damage = _read_lenient(path)
    with NativeSource(last) as source:
        lost = source.summary()
    assert lost.origin_ns is None and lost.messages == 0 and lost.damage
    assert got == recs[: len(got)] and len(damage) == 1 and "cut short" in str(damage[0])
