"""Hostile MCAP files: forged schemas, times beyond int64, undefined channels, cuts at every offset."""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path

import pytest

import mcl
from mcl.cli import cat as cat_cli
from mcl.cli import convert as convert_cli
from mcl.cli import info as info_cli
from mcl.exceptions import LogDamageWarning, MclError
from mcl.message import unpack

mcap_writer = pytest.importorskip("mcap.writer", reason="the optional 'mcap' extra is not installed")

INT64_MAX = (1 << 63) - 1


def write(path: Path, schema: bytes | None, messages: list[tuple[int, bytes]], *, channel: int | None = None,
          chunk_size: int = 1 << 20, compression: str = "zstd") -> Path:
    """An MCAP file of one json channel "a" (schema `schema`, None: no schema) with `messages` (log_time, data)."""
    kind = mcap_writer.CompressionType
    with open(path, "wb") as f:
        writer = mcap_writer.Writer(f, chunk_size=chunk_size, compression=getattr(kind, compression.upper()))
        writer.start()
        schema_id = writer.register_schema("S", "jsonschema", schema) if schema is not None else 0
        channel_id = writer.register_channel("a", "json", schema_id)
        for log_time, data in messages:
            writer.add_message(channel_id if channel is None else channel, log_time=log_time, data=data,
                               publish_time=log_time)
        writer.finish()
    return path


def read(path: Path) -> tuple[list[mcl.Record], list[str]]:
    """Every record of `path` and the damage warnings raised while reading it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LogDamageWarning)
        with mcl.open_log(path) as reader:
            records = list(reader)
            summary = reader.summaries()[0]
    assert summary.messages == len(records)
    return records, [str(w.message) for w in caught if issubclass(w.category, LogDamageWarning)]


def run_commands(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mcl-info, mcl-cat and mcl-convert on `path`: exit 0 or 1 with one error line, never an exception."""
    out = tmp_path / f"{path.stem}_native"
    for main, argv in ((info_cli.main, [str(path)]), (cat_cli.main, [str(path)]),
                       (convert_cli.main, [str(path), str(out)])):
        status = main(argv)
        err = capsys.readouterr().err
        assert status in (0, 1), (main, err)
        assert "Traceback" not in err
        if status == 1:
            assert len([line for line in err.splitlines() if "error:" in line]) == 1, err


def test_deeply_nested_schema_is_ignored_and_messages_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A jsonschema nested 5,000 deep (json.loads recursion) is no schema: the messages still read, decoded."""
    path = write(tmp_path / "deep.mcap", b'{"properties":' * 5000 + b"{}" + b"}" * 5000, [(5, b'{"x": 1}')])
    records, _ = read(path)
    assert [unpack(r.payload) for r in records] == [{"x": 1}]
    run_commands(path, tmp_path, capsys)


def test_schema_with_forged_keyword_values_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """properties / items / mcl.numpy of the wrong JSON type, forged shapes: payloads read, never an exception."""
    schema = (b'{"type":"object","properties": {"a": {"mcl.numpy": "<f8"}, "b": {"mcl.list": true, "properties": 3},'
              b' "c": {"items": 7}, "d": {"properties": {"values": 4}, "mcl.list": true}, "e": {"mcl.numpy": 12}}}')
    messages = [
        (7, b'{"a": {"data": [1,2,3], "shape": [-1, 99999999999]}, "b": {"values": [1]}, "c": [1,2]}'),
        (8, b'{"a": {"data": 5, "shape": "x"}, "b": {"values": 3}, "c": 4, "d": {"values": [1]}, "e": [1]}'),
        (9, b'{"a": {"data": [[1], {}], "shape": [2]}, "b": {"values": [[1]]}}'),
        (10, b'[1, 2, 3]'),
    ]
    records, _ = read(write(tmp_path / "forged.mcap", schema, messages))
    assert len(records) == 4
    assert unpack(records[0].payload)["c"] == [1, 2]
    assert unpack(records[1].payload)["b"] == {"values": 3}  # not a wrapped list after all: as it came
    top = write(tmp_path / "top.mcap", b'{"properties": 5, "mcl.numpy": "<f8"}', [(5, b'{"data": [1,2], "shape": [9, 9]}')])
    assert len(read(top)[0]) == 1
    run_commands(top, tmp_path, capsys)


def test_log_times_beyond_int64_are_damage_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """log_time 2**64-1 and 2**63 (mcl times are int64 ns) are skipped with a warning; 0 and the rest read."""
    times = [0, (1 << 64) - 1, 5, 1 << 63, 1, INT64_MAX]
    for compression in ("zstd", "none"):
        path = write(tmp_path / f"times_{compression}.mcap", b'{"type":"object"}',
                     [(t, b'{"i": %d}' % i) for i, t in enumerate(times)], chunk_size=64, compression=compression)
        records, damage = read(path)
        assert [r.elapsed_ns for r in records] == [0, 1, 5, INT64_MAX]
        assert [unpack(r.payload)["i"] for r in records] == [0, 4, 2, 5]
        assert any("over the limit" in d for d in damage), damage
        run_commands(path, tmp_path, capsys)
        with mcl.open_log(tmp_path / f"times_{compression}_native") as back:
            assert [r.elapsed_ns for r in back] == [0, 1, 5, INT64_MAX]


def test_messages_of_an_undefined_channel_are_reported(tmp_path: Path) -> None:
    """Messages on a channel id no Channel record defines are skipped and reported, not dropped silently."""
    path = tmp_path / "undefined.mcap"
    with open(path, "wb") as f:
        writer = mcap_writer.Writer(f)
        writer.start()
        channel = writer.register_channel("a", "json", 0)
        writer.add_message(channel, log_time=5, data=b"{}", publish_time=5)
        for t in range(6, 9):
            writer.add_message(77, log_time=t, data=b"x", publish_time=t)
        writer.finish()
    records, damage = read(path)
    assert len(records) == 1
    assert any("channel 77" in d and "3 messages" in d for d in damage), damage


def _small_file(tmp_path: Path, compression: str) -> bytes:
    path = write(tmp_path / f"small_{compression}.mcap", b'{"type":"object","properties":{"i":{"type":"integer"}}}',
                 [(1_000 + i, b'{"i": %d}' % i) for i in range(40)], chunk_size=128, compression=compression)
    return path.read_bytes()


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_cut_at_every_offset_reads_a_prefix(tmp_path: Path, compression: str) -> None:
    """A file cut at any byte opens (or fails with an MclError) and reads a time-ordered prefix of its messages."""
    data = _small_file(tmp_path, compression)
    cut = tmp_path / "cut.mcap"
    for size in range(0, len(data), 7):
        cut.write_bytes(data[:size])
        try:
            records, _ = read(cut)
        except MclError:
            assert size < 8, size  # only a file too short for the magic bytes is refused
            continue
        values = [unpack(r.payload)["i"] for r in records]
        assert values == list(range(len(values))), (size, values)


@pytest.mark.parametrize("field", ["summary_start", "summary_offset_start"])
def test_footer_pointing_past_the_end_reads_from_the_start(tmp_path: Path, field: str) -> None:
    """A footer whose summary offsets point past the end: every message still read (from the start)."""
    data = bytearray(_small_file(tmp_path, "zstd"))
    footer = len(data) - 8 - 29
    assert data[footer] == 0x02
    at = footer + 9 + (0 if field == "summary_start" else 8)
    data[at:at + 8] = struct.pack("<Q", len(data) + 10**6)
    path = tmp_path / "past.mcap"
    path.write_bytes(bytes(data))
    records, _ = read(path)
    assert [unpack(r.payload)["i"] for r in records] == list(range(40))


@pytest.mark.parametrize("origin_ns, elapsed_ns", [(0, -5), (INT64_MAX - 10, 100)])
def test_times_mcap_cannot_hold_are_one_error_and_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          origin_ns: int, elapsed_ns: int) -> None:
    """A record before 1970 (MCAP times are unsigned) or past int64: mcl-convert says so in one line, writes nothing."""
    log = tmp_path / "log"
    with mcl.LogWriter(log, origin_ns=origin_ns) as writer:
        writer.write_record(mcl.Record(elapsed_ns, "a", mcl.encode({"name": "M", "x": 1})))
    assert convert_cli.main([str(log), str(tmp_path / "out.mcap")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "outside 0.." in err and "Traceback" not in err
    assert not (tmp_path / "out.mcap").exists()


@pytest.mark.parametrize("nesting", [b"\x81\xa1a", b"\x91"])
def test_payload_nested_too_deep_for_json_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], nesting: bytes) -> None:
    """A map / list nested 1,000 deep cannot be JSON: one error line naming the record, no file; msgpack keeps it."""
    log = tmp_path / "log"
    payload = b"\x82\xa4name\xa1M\xa1x" + nesting * 1000 + b"\x01"
    with mcl.LogWriter(log, origin_ns=1) as writer:
        writer.write_record(mcl.Record(0, "deep", payload))
    assert convert_cli.main([str(log), str(tmp_path / "out.mcap")]) == 1
    err = capsys.readouterr().err
    assert "'deep'" in err and re.search("nested (too deep|deeper than)", err) and "Traceback" not in err
    assert not (tmp_path / "out.mcap").exists()
    with mcl.LogWriter(tmp_path / "direct.mcap", "mcap", origin_ns=1) as direct:  # record by record, no schema pass
        with pytest.raises(MclError, match="nested (too deep|deeper than)"):
            direct.write_record(mcl.Record(0, "deep", payload))
    assert convert_cli.main([str(log), str(tmp_path / "raw.mcap"), "--mcap-encoding", "msgpack"]) == 0
    assert [r.payload for r in read(tmp_path / "raw.mcap")[0]] == [payload]


def test_a_writer_that_cannot_start_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mcap library failing at start (a codec missing, ...): the error, no file, no open handle."""
    from mcl.log.mcap import McapWriter

    def refuse(self: object, **_: object) -> None:
        raise RuntimeError("codec missing")

    monkeypatch.setattr(mcap_writer.Writer, "start", refuse)
    with pytest.raises(RuntimeError, match="codec missing"):
        McapWriter(tmp_path / "x.mcap", origin_ns=0)
    assert not (tmp_path / "x.mcap").exists()
