"""MCAP as a log format: mcl's own export reads back, foreign files replay, indexed and cut-short files, damage."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import mcl
from mcl.cli import convert as convert_cli
from mcl.exceptions import LogDamageWarning
from mcl.log.formats import open_source
from mcl.log.record import Record
from mcl.mcap_export import write_mcap
from mcl.message import encode, unpack

mcap_writer = pytest.importorskip("mcap.writer", reason="the optional 'mcap' extra is not installed")

ORIGIN_NS = 1_700_000_000_000_000_000
RUN_CLI = "import sys; from mcl.cli.{0} import run; sys.argv[0] = 'mcl-{0}'; run()"


def make_native(path: Path) -> list[Record]:
    """A native log with numpy (1-D, 2-D, 3-D, scalars), bytes, NaN, lists of lists, raw data and the empty topic."""
    payloads = [
        ("imu", {"name": "Imu", "timestamp": 1.5, "accel": np.array([0.5, math.nan, -1.0]), "n": np.int32(7)}),
        ("gps", {"name": "Fix", "timestamp": 1.6, "cov": np.arange(9, dtype=np.float32).reshape(3, 3), "tag": b"\x00\xff"}),
        ("", {"name": "Grid", "timestamp": 1.7, "cells": np.arange(8, dtype=np.uint16).reshape(2, 2, 2), "rows": [[1, 2], [3]]}),
        ("raw", [1, "two", 3.0]),
        ("imu", {"name": "Imu", "timestamp": 1.8, "accel": np.array([1.0, 2.0, 3.0]), "n": np.int32(8)}),
        ("raw", "text"),
    ]
    records = [Record(i * 10_000_000, topic, encode(value)) for i, (topic, value) in enumerate(payloads)]
    with mcl.LogWriter(path, origin_ns=ORIGIN_NS) as writer:
        for record in records:
            writer.write_record(record)
    return records


def read_all(path: Path) -> list[Record]:
    with mcl.open_log(path) as reader:
        return list(reader)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_own_export_reads_back_to_the_same_records(tmp_path: Path, encoding: str) -> None:
    """mcl's MCAP (json or msgpack) reads back to the same records: times, topics (also ''), payload bytes."""
    records = make_native(tmp_path / "log")
    write_mcap(tmp_path / "log", tmp_path / "out.mcap", encoding=encoding)
    with mcl.open_log(tmp_path / "out.mcap") as reader:
        assert reader.origin_ns == ORIGIN_NS
        back = list(reader)
    assert back == records
    grid = unpack(back[2].payload)
    assert grid["cells"].shape == (2, 2, 2) and grid["cells"].dtype == np.uint16


def test_sample_vehicle_round_trip_native_mcap_native(sample_logs: Path, tmp_path: Path) -> None:
    """The vehicle log: native -> MCAP (json) -> native gives the same 1,400 records, the 3x3 covariance included."""
    assert convert_cli.main([str(sample_logs / "vehicle"), str(tmp_path / "v.mcap")]) == 0
    assert convert_cli.main([str(tmp_path / "v.mcap"), str(tmp_path / "back")]) == 0
    original = read_all(sample_logs / "vehicle")
    assert len(original) == 1400
    assert read_all(tmp_path / "back") == original
    fix = next(unpack(r.payload) for r in read_all(tmp_path / "back") if r.topic == "gps")
    assert fix["covariance"].shape == (3, 3)


def test_exported_schemas_have_no_arrays_of_arrays_and_every_field_typed(sample_logs: Path, tmp_path: Path) -> None:
    """What Foxglove's JSON Schema loader accepts: one type per field, arrays with items, no array in an array."""
    from mcap.reader import make_reader

    make_native(tmp_path / "log")
    for source, out in ((sample_logs / "vehicle", tmp_path / "v.mcap"), (tmp_path / "log", tmp_path / "l.mcap")):
        write_mcap(source, out)
        with open(out, "rb") as fp:
            summary = make_reader(fp).get_summary()
        assert summary is not None

        def check(schema: dict[str, object], where: str) -> None:
            kind = schema.get("type")
            assert isinstance(kind, str), f"{where}: type {kind!r}"
            if kind == "array":
                items = schema["items"]
                assert isinstance(items, dict) and items.get("type") not in ("array", None), f"{where}: items {items!r}"
                check(items, where + "[]")
            if kind == "object":
                properties = schema["properties"]
                assert isinstance(properties, dict)
                for name, sub in properties.items():
                    check(sub, f"{where}.{name}")

        for schema in summary.schemas.values():
            check(json.loads(schema.data), schema.name)


def write_foreign(path: Path, *, summary: bool = True, chunk_size: int = 1 << 20, n: int = 50) -> list[tuple[int, str, bytes]]:
    """An MCAP file written by the mcap library: a json channel, a protobuf channel, a schema-less raw channel."""
    written = []
    with open(path, "wb") as fp:
        writer = mcap_writer.Writer(fp, chunk_size=chunk_size, use_summary_offsets=summary, use_statistics=summary)
        writer.start(profile="", library="someone else")
        pose = writer.register_schema(
            name="Pose", encoding="jsonschema",
            data=json.dumps({"type": "object", "properties": {"x": {"type": "number"}}}).encode(),
        )
        proto = writer.register_schema(name="pkg.Wheel", encoding="protobuf", data=b"\x0a\x03abc")
        json_ch = writer.register_channel(topic="/pose", message_encoding="json", schema_id=pose)
        proto_ch = writer.register_channel(topic="/wheel", message_encoding="protobuf", schema_id=proto)
        raw_ch = writer.register_channel(topic="/blob", message_encoding="", schema_id=0)
        for i in range(n):
            t = ORIGIN_NS + i * 20_000_000
            items = [(json_ch, "/pose", json.dumps({"x": i * 0.5, "label": f"p{i}"}).encode()),
                     (proto_ch, "/wheel", bytes([8, i % 256])),
                     (raw_ch, "/blob", b"\x00\x01" * (i + 1))]
            for channel, topic, data in items:
                writer.add_message(channel_id=channel, log_time=t, data=data, publish_time=t)
                written.append((t, topic, data))
        if summary:
            writer.finish()
        else:
            # a recording cut short: no summary, no footer
            writer.flush()  # the open chunk reaches the file; finish() never runs
    return written


def test_foreign_file_topics_times_and_payloads(tmp_path: Path) -> None:
    """The mcap library's own file: json channels as msgpack maps, other encodings as their raw bytes, log times kept."""
    written = write_foreign(tmp_path / "f.mcap")
    with mcl.open_log(tmp_path / "f.mcap") as reader:
        assert reader.origin_ns == ORIGIN_NS  # the first message's log time
        back = list(reader)
    assert [(r.elapsed_ns + ORIGIN_NS, r.topic) for r in back] == [(t, topic) for t, topic, _ in written]
    for record, (_, topic, data) in zip(back, written):
        if topic == "/pose":
            assert unpack(record.payload) == json.loads(data)
        else:
            assert record.payload == data


@pytest.mark.slow
def test_mcl_info_names_encodings_and_types(tmp_path: Path) -> None:
    """mcl-info on a foreign MCAP file: format, topics, and which encodings are replayed as raw bytes."""
    write_foreign(tmp_path / "f.mcap")
    proc = subprocess.run([sys.executable, "-c", RUN_CLI.format("info"), str(tmp_path / "f.mcap"), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["format"] == "mcap" and info["messages"] == 150
    assert info["topics"]["/wheel"]["types"] == ["pkg.Wheel [protobuf]"]
    assert info["topics"]["/pose"]["types"] == ["Pose"]
    assert "protobuf (1 channel, replayed as raw bytes)" in info["metadata"]["mcap encodings"]
    assert info["topics"]["/pose"]["rate_hz"] == pytest.approx(50.0)


@pytest.mark.slow
def test_foreign_file_replays_onto_the_bus_with_times_and_topics(tmp_path: Path, mcl_bus: str, mcl_capture) -> None:  # type: ignore[no-untyped-def]
    """A real replay of an mcap-library file publishes every message on its topic, in order, with its spacing."""
    written = write_foreign(tmp_path / "f.mcap", n=20)
    with mcl.Replay(tmp_path / "f.mcap", speed=4.0, bus=mcl_bus, wait_for_subscribers=1) as replay:
        replay.start()
        got = mcl_capture.wait_for("/blob", 20, timeout=30)
        assert replay.wait(timeout=30)
    assert [c.payload for c in got] == [d for _, t, d in written if t == "/blob"]
    assert [c.payload for c in mcl_capture.messages("/wheel")] == [d for _, t, d in written if t == "/wheel"]
    poses = [unpack(c.payload) for c in mcl_capture.messages("/pose")]
    assert [p["x"] for p in poses] == [i * 0.5 for i in range(20)]
    spread_ns = got[-1].sent_ns - got[0].sent_ns  # 19 steps of 20 ms at 4x: 95 ms
    assert 50_000_000 < spread_ns < 2_000_000_000


def test_indexed_seek_reads_only_the_chunks_of_the_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With chunk indexes a start time near the end decodes a few chunks, not the whole file."""
    import mcap.stream_reader

    write_foreign(tmp_path / "f.mcap", chunk_size=512, n=400)
    decoded = []
    real = mcap.stream_reader.breakup_chunk

    def counting(chunk, validate_crc=False):  # type: ignore[no-untyped-def]
        decoded.append(chunk)
        return real(chunk, validate_crc=validate_crc)

    monkeypatch.setattr(mcap.stream_reader, "breakup_chunk", counting)
    with open_source(tmp_path / "f.mcap") as source:
        assert source.indexed
        tail = list(source.iter_records(start_ns=390 * 20_000_000))
        assert len(tail) == 30
        assert len(decoded) <= 11  # the 10 chunks of the window (one time step each), and one before it at most
        decoded.clear()
        assert len(list(source.iter_records())) == 1200
        assert len(decoded) > 200  # the whole file: every chunk


def test_summary_less_file_cut_short_reads_what_was_written(tmp_path: Path) -> None:
    """A file without summary or footer (a recording cut short) reads from the start, with a damage warning."""
    written = write_foreign(tmp_path / "f.mcap", summary=False, chunk_size=2048, n=100)
    with open_source(tmp_path / "f.mcap") as source:
        assert not source.indexed
        with pytest.warns(LogDamageWarning, match="cut short"):
            back = list(source.iter_records())
    assert len(back) == len(written)
    assert [(r.elapsed_ns + ORIGIN_NS, r.topic) for r in back] == [(t, topic) for t, topic, _ in written]


@pytest.mark.slow
def test_truncated_mcap_returns_the_complete_chunks(tmp_path: Path) -> None:
    """An export cut in the middle: the chunks before the cut read back, the rest is one warning, never a traceback."""
    records = [Record(i * 1_000_000, "t", encode({"name": "M", "timestamp": 0.0, "v": i, "pad": "x" * 200})) for i in range(2000)]
    with mcl.LogWriter(tmp_path / "log", origin_ns=ORIGIN_NS) as writer:
        for record in records:
            writer.write_record(record)
    with mcl.LogWriter(tmp_path / "full.mcap", "mcap", origin_ns=ORIGIN_NS, compression="none", chunk_size=8192) as out:
        for record in records:
            out.write_record(record)
    data = (tmp_path / "full.mcap").read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = read_all(cut)
    assert any(issubclass(w.category, LogDamageWarning) for w in caught)
    assert 0 < len(back) < len(records)
    assert back == records[: len(back)]  # what comes back is exact, from the start
    proc = subprocess.run([sys.executable, "-c", RUN_CLI.format("info"), str(cut)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "warning:" in proc.stderr and "damaged part" in proc.stdout


def test_damaged_chunk_in_an_indexed_file_is_skipped(tmp_path: Path) -> None:
    """A chunk with flipped bytes (CRC mismatch) is skipped with a warning; the other chunks read back."""
    write_foreign(tmp_path / "f.mcap", chunk_size=512, n=200)
    data = bytearray((tmp_path / "f.mcap").read_bytes())
    from mcap.reader import make_reader

    with open(tmp_path / "f.mcap", "rb") as fp:
        summary = make_reader(fp).get_summary()
    assert summary is not None
    victim = sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)[3]
    middle = victim.chunk_start_offset + victim.chunk_length - 20
    data[middle : middle + 4] = b"\xde\xad\xbe\xef"
    (tmp_path / "bad.mcap").write_bytes(bytes(data))
    with pytest.warns(LogDamageWarning, match="damaged chunk"):
        back = read_all(tmp_path / "bad.mcap")
    assert 0 < len(back) < 600
    times = [r.elapsed_ns for r in back]
    assert times == sorted(times)


@pytest.mark.slow
def test_not_an_mcap_file_is_one_error_line(tmp_path: Path) -> None:
    """A .mcap file that is not MCAP: 'error: ...', exit 1, no traceback (mcl-cat)."""
    (tmp_path / "x.mcap").write_bytes(b"hello, not mcap at all")
    proc = subprocess.run([sys.executable, "-c", RUN_CLI.format("cat"), str(tmp_path / "x.mcap")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("mcl-cat: error: ")
    assert "Traceback" not in proc.stderr and "not an MCAP file" in proc.stderr


@pytest.mark.slow
def test_mcl_cat_reads_mcap(tmp_path: Path) -> None:
    """mcl-cat prints the records of an MCAP file as JSON lines, topic filter applied."""
    make_native(tmp_path / "log")
    write_mcap(tmp_path / "log", tmp_path / "out.mcap")
    proc = subprocess.run([sys.executable, "-c", RUN_CLI.format("cat"), str(tmp_path / "out.mcap"), "--topics", "imu"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["payload"]["timestamp"] for line in lines] == [1.5, 1.8]


@pytest.mark.slow
def test_mcl_replay_command_plays_an_mcap_file(tmp_path: Path, mcl_bus: str, mcl_capture) -> None:  # type: ignore[no-untyped-def]
    """mcl-replay FILE.mcap publishes every message of an mcap-library file on its topic."""
    written = write_foreign(tmp_path / "f.mcap", n=30)
    proc = subprocess.run(
        [sys.executable, "-c", RUN_CLI.format("replay"), str(tmp_path / "f.mcap"), "--bus", mcl_bus,
         "--max-speed", "--wait-for-subscribers", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = mcl_capture.wait_for("/wheel", 30, timeout=10)
    assert [c.payload for c in got] == [d for _, t, d in written if t == "/wheel"]
    mcl_capture.wait_for("/pose", 30, timeout=10)
    mcl_capture.wait_for("/blob", 30, timeout=10)
    assert mcl_capture.counts() == {"/pose": 30, "/wheel": 30, "/blob": 30}


def _library_file(path: Path, n: int, *, compression: str = "zstd") -> Path:
    """An MCAP file of the mcap library's own writer: 3 json channels, `n` messages, small chunks."""
    kind = mcap_writer.CompressionType
    with open(path, "wb") as f:
        writer = mcap_writer.Writer(f, chunk_size=4096, compression=getattr(kind, compression.upper()))
        writer.start()
        schema = writer.register_schema("T", "jsonschema", b'{"type":"object"}')
        channels = [writer.register_channel(t, "json", schema) for t in ("a", "b", "c")]
        for i in range(n):
            data = b'{"i": %d, "pad": "%s"}' % (i, b"p" * (i % 17))
            writer.add_message(channels[i % 3], log_time=ORIGIN_NS + i * 1000, data=data, publish_time=0)
        writer.finish()
    return path


def _topic_rows(summary: mcl.LogSummary) -> dict[str, tuple[object, ...]]:
    return {k: (v.messages, v.first_ns, v.last_ns, v.bytes, sorted(v.types)) for k, v in summary.topics.items()}


def test_summary_comes_from_the_index_and_equals_a_scan(tmp_path: Path) -> None:
    """With Statistics and message indexes the summary reads no chunk (indexed) and equals a scan's counts."""
    path = _library_file(tmp_path / "lib.mcap", 3000)
    with open_source(path) as source:
        fast = source.summary()
        source._index_counts = lambda: None  # type: ignore[method-assign]
        scan = source.summary()
    assert fast.indexed and not scan.indexed
    assert _topic_rows(fast) == _topic_rows(scan)
    assert (fast.messages, fast.start_ns, fast.end_ns) == (scan.messages, scan.start_ns, scan.end_ns) == (3000, 0, 2999000)


def test_summary_does_not_decompress_chunks(tmp_path: Path) -> None:
    """A chunk whose body is garbage: the summary still counts its messages from the index; reading reports it."""
    path = _library_file(tmp_path / "lib.mcap", 600, compression="none")
    data = bytearray(path.read_bytes())
    at = data.find(b'{"i": 300,')
    data[at:at + 6] = b"XXXXXX"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LogDamageWarning)
        with mcl.open_log(path) as reader:
            summary = reader.summaries()[0]
            assert not caught  # nothing was read but the summary section and the message indexes
            assert summary.indexed and summary.messages == 600
            assert reader.duration_ns == 599_000
            records = list(reader)
    assert 0 < len(records) < 600
    assert any("crc" in str(w.message).lower() for w in caught)


def test_summary_falls_back_to_a_scan_when_statistics_disagree(tmp_path: Path) -> None:
    """A forged Statistics record (message count) is not trusted: the summary is a scan of the messages."""
    path = _library_file(tmp_path / "lib.mcap", 90)
    data = bytearray(path.read_bytes())
    pos = 8
    while pos + 9 <= len(data):  # walk the records to the Statistics record (opcode 0x0B)
        opcode, length = data[pos], int.from_bytes(data[pos + 1:pos + 9], "little")
        if opcode == 0x0B:
            data[pos + 9:pos + 17] = (1 << 62).to_bytes(8, "little")
            break
        pos += 9 + length
    else:
        raise AssertionError("no Statistics record")
    path.write_bytes(bytes(data))
    with open_source(path) as source:
        summary = source.summary()
    assert not summary.indexed and summary.messages == 90
