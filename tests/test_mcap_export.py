"""MCAP export: read back with the mcap library, same messages per topic, same content."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import mcl
from mcl.exceptions import LogExistsError, MclError, MessageError
from mcl.mcap_export import EMPTY_TOPIC, to_json_value, write_mcap
from mcl.message import encode, unpack

mcap_reader = pytest.importorskip("mcap.reader", reason="the optional 'mcap' extra is not installed")

ORIGIN_NS = 1_700_000_000_123_456_000  # MCL_LOG 1.0 keeps microseconds


def read_mcap(path: Path) -> list[tuple[object, object, object]]:
    """Every (schema, channel, message) of an MCAP file in log-time order."""
    with open(path, "rb") as fp:
        reader = mcap_reader.make_reader(fp, validate_crcs=True)
        return list(reader.iter_messages(log_time_order=True))


def make_mixed_log(path: Path) -> list[tuple[int, str, bytes]]:
    """An MCL_LOG 1.0 log with numpy, bytes, NaN, raw data and two types on one topic."""
    records = [
        (0, "cam", encode({"name": "Image", "timestamp": 1.5, "pixels": np.arange(6, dtype=np.uint8).reshape(2, 3), "tag": b"\x00\xff"})),
        (10_000_000, "imu", encode({"name": "Imu", "timestamp": 1.6, "accel": np.array([0.5, math.nan, -1.0]), "ok": True})),
        (20_000_000, "imu", encode({"name": "Imu", "timestamp": 1.7, "accel": np.array([1.0, 2.0, 3.0]), "ok": False})),
        (25_000_000, "imu", encode({"name": "Status", "timestamp": 1.8, "code": 3, "extra": {1: "one"}})),
        (30_000_000, "raw", encode([1, 2, 3])),
        (40_000_000, "raw", encode("text")),
        (50_000_000, "cam", encode({"name": "Image", "timestamp": 1.9, "pixels": np.zeros((2, 3), dtype=np.uint8), "tag": None})),
        (60_000_000, "imu", encode({"name": "Imu", "timestamp": 2.0, "accel": np.array([7.0, 8.0, 9.0]), "ok": True, "count": np.int64(5)})),
    ]
    with mcl.LogWriter(path, "mcl1", origin_ns=ORIGIN_NS) as writer:
        for elapsed, topic, payload in records:
            writer.write(topic, payload, elapsed)
    return records


def test_reference_dataset_reads_back_with_same_counts_and_content(reference_dir: Path, tmp_path: Path) -> None:
    """The original MCL dataset exported to JSON MCAP gives the same messages per topic, times and content."""
    out = tmp_path / "dataset.mcap"
    counts = write_mcap(reference_dir / "dataset", out)
    with mcl.open_log(reference_dir / "dataset") as reader:
        records = list(reader)
        origin = reader.origin_ns or 0
    assert counts == dict(Counter(r.topic for r in records))
    messages = read_mcap(out)
    assert len(messages) == len(records) == 30
    # the empty topic of the data set is listed under EMPTY_TOPIC, the real name kept in the metadata
    assert Counter(channel.metadata["mcl.topic"] for _, channel, _ in messages) == Counter(r.topic for r in records)
    assert {channel.topic for _, channel, _ in messages} == {EMPTY_TOPIC}
    for record, (schema, channel, message) in zip(records, messages):
        assert channel.message_encoding == "json"
        assert schema.encoding == "jsonschema"
        assert message.log_time == message.publish_time == origin + record.elapsed_ns
        value = unpack(record.payload)
        decoded = json.loads(message.data)
        if isinstance(value, dict):
            assert schema.name == value["name"]
            assert decoded == value
        else:
            assert schema.name == "RawData"
            assert decoded == {"value": value}


def test_msgpack_encoding_keeps_payload_bytes_exactly(tmp_path: Path) -> None:
    """With encoding='msgpack' every MCAP message holds the recorded payload bytes, schema named after the type."""
    records = make_mixed_log(tmp_path / "log")
    out = tmp_path / "log.mcap"
    counts = write_mcap(tmp_path / "log", out, encoding="msgpack")
    assert counts == {"cam": 2, "imu": 4, "raw": 2}
    messages = read_mcap(out)
    assert [m.data for _, _, m in messages] == [p for _, _, p in records]
    assert [m.log_time for _, _, m in messages] == [ORIGIN_NS + e for e, _, _ in records]
    names = [(c.topic, s.name, s.encoding, s.data, c.message_encoding) for s, c, _ in messages]
    assert names[0] == ("cam", "Image", "", b"", "msgpack")
    assert names[3] == ("imu", "Status", "", b"", "msgpack")
    assert names[4] == ("raw", "RawData", "", b"", "msgpack")


def test_json_conversion_of_numpy_bytes_nan_and_raw(tmp_path: Path) -> None:
    """1-D numpy arrays become lists, 2-D {shape, data} row-major, bytes base64, NaN null, int keys strings, raw {'value': ...}."""
    make_mixed_log(tmp_path / "log")
    out = tmp_path / "log.mcap"
    write_mcap(tmp_path / "log", out)
    decoded = [(c.topic, json.loads(m.data)) for _, c, m in read_mcap(out)]
    assert decoded[0] == ("cam", {"name": "Image", "timestamp": 1.5, "pixels": {"shape": [2, 3], "data": [0, 1, 2, 3, 4, 5]}, "tag": "AP8="})
    assert decoded[1] == ("imu", {"name": "Imu", "timestamp": 1.6, "accel": [0.5, None, -1.0], "ok": True})
    assert decoded[3] == ("imu", {"name": "Status", "timestamp": 1.8, "code": 3, "extra": {"1": "one"}})
    assert decoded[4] == ("raw", {"value": [1, 2, 3]})
    assert decoded[5] == ("raw", {"value": "text"})
    assert decoded[7][1]["count"] == 5


def test_json_schema_covers_every_message_of_a_type(tmp_path: Path) -> None:
    """The JSON schema of a type is inferred from all its messages (nulls, NaN, late fields): one type per field."""
    make_mixed_log(tmp_path / "log")
    out = tmp_path / "log.mcap"
    write_mcap(tmp_path / "log", out)
    schemas = {s.name: json.loads(s.data) for s, _, _ in read_mcap(out)}
    assert set(schemas) == {"Image", "Imu", "Status", "RawData"}
    for schema in schemas.values():
        assert schema["type"] == "object"
        assert "$ref" not in json.dumps(schema)  # Foxglove does not support references
    image = schemas["Image"]["properties"]
    assert image["pixels"] == {
        "type": "object",
        "properties": {"shape": {"type": "array", "items": {"type": "integer"}}, "data": {"type": "array", "items": {"type": "integer"}}},
        "mcl.numpy": "|u1",
    }
    assert image["tag"] == {"type": "string", "contentEncoding": "base64"}
    imu = schemas["Imu"]["properties"]
    assert imu["accel"] == {"type": "array", "items": {"type": "number"}, "mcl.numpy": "<f8"}
    assert imu["count"] == {"type": "integer", "mcl.numpy": "<i8"}  # seen only in the last message
    assert imu["ok"] == {"type": "boolean"}
    assert schemas["Status"]["properties"]["extra"] == {"type": "object", "properties": {"1": {"type": "string"}}}
    assert schemas["RawData"]["properties"]["value"]["type"] == "array"  # array wins over string: no unions


def test_two_types_on_one_topic_get_two_channels(tmp_path: Path) -> None:
    """A topic carrying two message types gets one channel per type, both named after the topic."""
    make_mixed_log(tmp_path / "log")
    out = tmp_path / "log.mcap"
    write_mcap(tmp_path / "log", out)
    channels = {(c.id, c.topic, s.name) for s, c, _ in read_mcap(out)}
    assert sorted((topic, name) for _, topic, name in channels) == [
        ("cam", "Image"),
        ("imu", "Imu"),
        ("imu", "Status"),
        ("raw", "RawData"),
    ]
    sequences = [m.sequence for _, c, m in read_mcap(out) if c.topic == "imu" and c.metadata["mcl.type"] == "Imu"]
    assert sequences == [0, 1, 2]


def test_reader_filters_apply_and_reader_stays_open(tmp_path: Path) -> None:
    """A LogReader passed in is exported with its topic filter and time window, and left open."""
    make_mixed_log(tmp_path / "log")
    out = tmp_path / "log.mcap"
    with mcl.open_log(tmp_path / "log", topics=["imu"], end=0.03) as reader:
        counts = write_mcap(reader, out)
        assert len(list(reader)) == 3  # still usable
    assert counts == {"imu": 3}
    assert len(read_mcap(out)) == 3


def test_existing_output_is_never_overwritten(tmp_path: Path) -> None:
    """An existing output file raises LogExistsError and keeps its bytes."""
    make_mixed_log(tmp_path / "log")
    out = tmp_path / "log.mcap"
    out.write_bytes(b"precious")
    with pytest.raises(LogExistsError, match="never overwrites"):
        write_mcap(tmp_path / "log", out)
    assert out.read_bytes() == b"precious"


def test_bad_encoding_and_compression_are_refused(tmp_path: Path) -> None:
    """An unknown encoding or compression is an MclError naming the known ones, and writes nothing."""
    make_mixed_log(tmp_path / "log")
    with pytest.raises(MclError, match="known: json, msgpack"):
        write_mcap(tmp_path / "log", tmp_path / "a.mcap", encoding="cbor")
    with pytest.raises(MclError, match="known: zstd, lz4, none"):
        write_mcap(tmp_path / "log", tmp_path / "a.mcap", compression="gzip")
    assert not (tmp_path / "a.mcap").exists()


def test_payload_that_is_not_msgpack_names_the_record_and_leaves_no_file(tmp_path: Path) -> None:
    """A payload that is not msgpack cannot become JSON: the error names topic and time; msgpack export keeps it."""
    with mcl.LogWriter(tmp_path / "log", "mcl1", origin_ns=ORIGIN_NS) as writer:
        writer.write("ok", encode({"name": "A", "timestamp": 0.0}), 0)
        writer.write("bad", b"\xc1", 2_000_000_000)  # 0xc1 is never valid msgpack
    with pytest.raises(MessageError, match=r"topic 'bad' at 2\.000000 s"):
        write_mcap(tmp_path / "log", tmp_path / "a.mcap")
    assert not (tmp_path / "a.mcap").exists()
    assert write_mcap(tmp_path / "log", tmp_path / "b.mcap", encoding="msgpack") == {"ok": 1, "bad": 1}


def test_missing_mcap_library_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the optional mcap library the export raises MclError telling how to install it."""
    make_mixed_log(tmp_path / "log")
    monkeypatch.setitem(sys.modules, "mcap", None)  # what an uninstalled package looks like to import
    monkeypatch.setitem(sys.modules, "mcap.writer", None)
    with pytest.raises(MclError, match=r"pip install 'mcl\[mcap\]'"):
        write_mcap(tmp_path / "log", tmp_path / "a.mcap")
    assert not (tmp_path / "a.mcap").exists()


def test_to_json_value_rules() -> None:
    """Conversion rules: numpy scalars, complex, structured arrays, infinities, tuples."""
    assert to_json_value(np.float32(1.5)) == 1.5
    assert to_json_value(np.array([1 + 2j])) == [{"values": [1.0, 2.0]}]  # no arrays of arrays
    assert to_json_value(1 + 2j) == [1.0, 2.0]
    assert to_json_value(np.array([math.inf, 1.0])) == [None, 1.0]
    assert to_json_value((1, b"a")) == [1, "YQ=="]
    assert to_json_value(np.array([(1, 2.5)], dtype=[("a", "i4"), ("b", "f8")])) == [{"values": [1, 2.5]}]
    assert to_json_value([np.arange(2), [1, 2]]) == [{"shape": [2], "data": [0, 1]}, {"values": [1, 2]}]
    assert to_json_value(np.arange(8).reshape(2, 2, 2)) == {"shape": [2, 2, 2], "data": list(range(8))}
    json.dumps(to_json_value({"x": [math.nan, np.arange(3)]}), allow_nan=False)


def test_mcl_convert_writes_mcap_of_the_vehicle_log(sample_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`mcl-convert LOG OUT.mcap` writes a JSON MCAP with the same messages per topic as the log, same content."""
    convert = pytest.importorskip("mcl.cli.convert", reason="mcl-convert is not built yet")
    vehicle = sample_logs / "vehicle"
    if not vehicle.is_dir():
        pytest.skip("sample_logs/vehicle is not generated yet")
    out = tmp_path / "vehicle.mcap"
    assert convert.main([str(vehicle), str(out)]) == 0
    capsys.readouterr()
    messages = read_mcap(out)
    with mcl.open_log(vehicle) as reader:
        records = list(reader)
        origin = reader.origin_ns
    assert Counter(c.topic for _, c, _ in messages) == Counter(r.topic for r in records) == {"imu": 1000, "gps": 100, "camera/front": 300}
    for record, (schema, channel, message) in zip(records, messages):
        assert (channel.topic, channel.message_encoding, schema.encoding) == (record.topic, "json", "jsonschema")
        assert message.log_time == origin + record.elapsed_ns
        assert json.loads(message.data) == to_json_value(unpack(record.payload))


def test_one_json_form_for_every_writer() -> None:
    """Plain (mcl-cat, tables) and Foxglove (MCAP, bridge) forms share NaN, bytes and key rules; only arrays differ."""
    from mcl.jsonform import dumps, to_plain_json

    value = {b"\xffk": math.nan, 3: [b"a", np.float32(math.inf)], "m": np.arange(4).reshape(2, 2), "z": 1 + 2j}
    plain, foxglove = to_plain_json(value), to_json_value(value)
    assert plain == {"/2s=": None, "3": ["YQ==", None], "m": [[0, 1], [2, 3]], "z": [1.0, 2.0]}
    assert foxglove == {**plain, "m": {"shape": [2, 2], "data": [0, 1, 2, 3]}}
    assert json.loads(dumps(value)) == plain  # strict JSON text, no NaN
