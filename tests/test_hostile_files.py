"""Hostile log files: one bad file, forged headers and indexes, bombs, FIFOs, long lines; the good records come back.

Each class of attack has crafted cases (and Hypothesis fuzzing for headers
and indexes). Every test checks that the records of the intact parts all
come back, the exact warning, and, for the commands, that they exit with
one line and no traceback.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zlib
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcl
from mcl.exceptions import LogDamageWarning, LogError, LogFormatError, MclError, MessageError
from mcl.log import mcl1
from mcl.log.native import NativeSource, data_files
from mcl.log.native_layout import (
    CHUNK_HEADER,
    CHUNK_MAGIC,
    COMPRESSION_ZSTD,
    FILE_MAGIC,
    INDEX_ENTRY,
    INDEX_HEADER,
    INDEX_MAGIC,
    MAX_RAW_CHUNK_BYTES,
    encode_topic_table,
    ChunkTopic,
    read_file_header,
)
from mcl.message import MAX_DEPTH

T = TypeVar("T")
BIN = Path(sys.executable).parent
ORIGIN = 1_714_555_800_000_000_000
MS = 1_000_000


# -- helpers --------------------------------------------------------------------------


def _records(n: int, start_ns: int = 0, step_ns: int = 10 * MS, topic: str = "t") -> list[mcl.Record]:
    return [mcl.Record(start_ns + i * step_ns, topic, mcl.encode({"i": i, "topic": topic})) for i in range(n)]


def _native(path: Path, records: list[mcl.Record], **options: Any) -> Path:
    with mcl.LogWriter(path, origin_ns=ORIGIN, **options) as writer:
        for r in records:
            writer.write_record(r)
    return path


def _read(path: Path | str, **options: Any) -> tuple[list[mcl.Record], list[str]]:
    """Every record and the text of every LogDamageWarning (no other warning allowed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mcl.open_log(path, **options) as log:
            records = list(log)
    assert all(issubclass(w.category, LogDamageWarning) for w in caught), [str(w.message) for w in caught]
    return records, [str(w.message) for w in caught]


def _summary(path: Path | str, verify: bool = False) -> mcl.LogSummary:
    from mcl.log.formats import open_source

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = open_source(path)
        try:
            return source.summary(verify=verify)
        finally:
            source.close()


def _cli(command: str, *args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a console script; assert no traceback, stderr only 'warning:' / 'error:' lines, at most one error."""
    proc = subprocess.run(
        [str(BIN / command), *map(str, args)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    _check_stderr(proc, command)
    return proc


def _check_stderr(proc: subprocess.CompletedProcess[str], command: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert all(line.startswith(f"{command}: ") for line in lines), proc.stderr
    errors = [line for line in lines if line.startswith(f"{command}: error: ")]
    if proc.returncode != 0:
        assert proc.returncode == 1 and len(errors) == 1, (proc.returncode, proc.stderr)
    else:
        assert not errors, proc.stderr


_DRIVER = """
import contextlib, io, json, sys
import importlib
results = {}
for name, module, argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = importlib.import_module(module).main(argv)
    results[name] = [status, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def _every_command(log: Path, tmp: Path, *, replay: bool = False) -> dict[str, subprocess.CompletedProcess[str]]:
    """mcl-info (with and without --check), mcl-cat, mcl-export, mcl-convert (native and MCAP), mcl-replay.

    The commands run one after the other in one child process (their
    ``main(argv)``, what the console scripts call): an exception that
    escapes a command is a traceback on the child's stderr and fails the
    test. mcl-replay, which starts processes of its own, runs as its own
    console script.
    """
    commands: list[tuple[str, str, list[Path | str]]] = [
        ("info", "mcl.cli.info", [log]),
        ("info --check", "mcl.cli.info", [log, "--check"]),
        ("info --json", "mcl.cli.info", [log, "--json"]),
        ("cat", "mcl.cli.cat", [log]),
        ("export", "mcl.cli.export", [log, "--fields", "i", "--csv", tmp / "out.csv"]),
        ("convert", "mcl.cli.convert", [log, tmp / "converted"]),
        ("convert mcap", "mcl.cli.convert", [log, tmp / "converted.mcap", "--mcap-encoding", "msgpack"]),
    ]
    argv = json.dumps([(name, module, [os.fsdecode(a) if isinstance(a, Path) else a for a in args]) for name, module, args in commands])
    child = subprocess.run(
        [sys.executable, "-c", _DRIVER, argv], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert child.returncode == 0 and "Traceback" not in child.stderr, child.stderr
    runs = {}
    for name, (status, out, err) in json.loads(child.stdout).items():
        proc = subprocess.CompletedProcess([name], status, out, err)
        _check_stderr(proc, "mcl-" + name.split()[0])
        runs[name] = proc
    if replay:
        runs["replay"] = _cli("mcl-replay", log, "--dry-run", "--max-speed")
    return runs


def _forge_header(doc: Any, *, raw: bytes | None = None) -> bytes:
    """A data file header with a valid CRC around any JSON document (or raw bytes)."""
    body = raw if raw is not None else json.dumps(doc).encode("utf-8")
    fields = struct.pack("<HHI", 1, 0, len(body))
    return FILE_MAGIC + fields + struct.pack("<I", zlib.crc32(fields + body)) + body


def _replace_header(data: Path, header: bytes) -> None:
    """Put `header` in front of the chunks of a data file (its index is then stale)."""
    fd = os.open(data, os.O_RDONLY)
    try:
        old = read_file_header(fd, data).size
    finally:
        os.close(fd)
    data.write_bytes(header + data.read_bytes()[old:])


def _forge_index(data: Path, doc: Any, entries: list[tuple[int, ...]], *, raw_json: bytes | None = None) -> None:
    """An index with a valid CRC and key for `data`, holding any JSON and chunk entries."""
    fd = os.open(data, os.O_RDONLY)
    try:
        key = read_file_header(fd, data).crc
    finally:
        os.close(fd)
    body = raw_json if raw_json is not None else json.dumps(doc).encode("utf-8")
    blob = INDEX_HEADER.pack(INDEX_MAGIC, 1, 0, data.stat().st_size, key, len(body), len(entries))
    blob += body + b"".join(INDEX_ENTRY.pack(*e) for e in entries)
    data.with_suffix(".mcli").write_bytes(blob + struct.pack("<I", zlib.crc32(blob)))


def _index_of(data: Path) -> tuple[dict[str, Any], list[tuple[int, ...]]]:
    blob = data.with_suffix(".mcli").read_bytes()
    json_len, n = INDEX_HEADER.unpack_from(blob)[5:7]
    doc = json.loads(blob[INDEX_HEADER.size : INDEX_HEADER.size + json_len])
    entries = list(INDEX_ENTRY.iter_unpack(blob[INDEX_HEADER.size + json_len : -4]))
    assert len(entries) == n
    return doc, entries


def _forge_chunk(stored: bytes, *, raw_len: int, count: int, topic_bytes: int, compression: int = COMPRESSION_ZSTD) -> bytes:
    """A chunk whose header and body CRCs are right but whose sizes say whatever they are told."""
    table = encode_topic_table([ChunkTopic("bomb", [], count, topic_bytes, 0, 0)])
    rest = CHUNK_HEADER.pack(CHUNK_MAGIC, 0, zlib.crc32(stored), len(table), len(stored), raw_len, count, compression, 0, 0)[8:]
    return CHUNK_MAGIC + struct.pack("<I", zlib.crc32(rest + table)) + rest + table + stored


def _mcl1_file(path: Path, records: list[mcl.Record], *, created: str = "2024-05-01 09:30:00", header: bool = True) -> None:
    text = ""
    if header:
        text = mcl1.format_header(0, "Thing").replace("1970-01-01 00:00:00", created)
    text += "".join(mcl1.format_line(*r) for r in records)
    path.write_text(text, encoding="utf-8")


# -- 1. one unreadable file does not hide the others -----------------------------------------

BAD_DATA_FILES = {
    "zero-filled": lambda size: bytes(size),  # what a power loss leaves
    "foreign text": lambda size: b"these are my notes, not a log\n" * 10,
    "empty": lambda size: b"",
    "another major version": lambda size: _forge_header({"origin_ns": 0}).replace(b"\x01\x00\x00\x00", b"\x07\x00\x00\x00", 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(BAD_DATA_FILES))
def test_an_unreadable_native_data_file_is_skipped(kind: str, tmp_path: Path) -> None:
    """A zero-filled, foreign, empty or other-version data file among good ones: skipped with one warning, the rest read."""
    recs = _records(300)
    log = _native(tmp_path / "log", recs, split_duration=1.0)
    files = data_files(log)
    assert len(files) == 3
    lost = [r for r in recs if 1_000 * MS <= r.elapsed_ns < 2_000 * MS]
    if kind == "another major version":
        # A valid header of major version 7 (CRC recomputed over the new bytes).
        bad = _forge_header({"origin_ns": ORIGIN})
        bad = bad[:8] + struct.pack("<HHI", 7, 0, len(bad) - 20) + struct.pack("<I", zlib.crc32(struct.pack("<HHI", 7, 0, len(bad) - 20) + bad[20:])) + bad[20:]
    else:
        bad = BAD_DATA_FILES[kind](files[1].stat().st_size)
    files[1].write_bytes(bad)
    files[1].with_suffix(".mcli").unlink()
    got, warned = _read(log)
    assert got == [r for r in recs if r not in lost]
    reason = {
        "another major version": "whole file unreadable: native format version 7.0; this reader reads 1.x",
        "empty": "file header cut short (0 bytes)",  # a crash before the header was written
    }.get(kind, "whole file unreadable: not an mcl native data file (bad magic and no chunk)")
    assert warned == [f"{files[1]}: byte {8 if kind == 'another major version' else 0}: {reason}; skipped"]
    summary = _summary(log)
    assert summary.messages == len(recs) - len(lost)
    assert [d.path for d in summary.damage] == [str(files[1])]
    runs = _every_command(log, tmp_path)
    assert runs["cat"].returncode == 0 and len(runs["cat"].stdout.splitlines()) == len(got)
    assert f"{files[1]}: byte" in runs["info"].stdout and reason in runs["info"].stdout
    with pytest.raises(LogFormatError):
        with mcl.open_log(log, strict=True) as reader:
            list(reader)


def test_a_junk_mcln_file_is_skipped(tmp_path: Path) -> None:
    """A stray junk.mcln in a native log directory is reported, every real record still comes back."""
    recs = _records(50)
    log = _native(tmp_path / "log", recs)
    (log / "junk.mcln").write_bytes(b"\x00junk\xff" * 1000)
    got, warned = _read(log)
    assert got == recs
    assert warned == [f"{log / 'junk.mcln'}: byte 0: whole file unreadable: not an mcl native data file (bad magic and no chunk); skipped"]


@pytest.mark.slow
def test_a_log_of_only_unreadable_files_is_an_error(tmp_path: Path) -> None:
    """When no data file of a log can be read, opening it is one LogFormatError (and one error line)."""
    log = tmp_path / "log"
    log.mkdir()
    (log / "data_0000.mcln").write_bytes(bytes(4096))
    (log / "junk.mcln").write_bytes(b"junk")
    with pytest.raises(LogFormatError, match="data_0000.mcln: byte 0: not an mcl native data file"):
        mcl.open_log(log)
    assert _cli("mcl-cat", log).returncode == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.log", b"Notes about this drive: it rained.\n"),
        ("zero.log", bytes(100_000)),  # a power loss
        ("binary.log", bytes(range(256)) * 10),
        ("other_header.log", b"#" + b"-" * 65 + b"\n# NOT_MCL\n"),
        ("version.log", b"#" + b"-" * 65 + b"\n# MCL_LOG\n#     -- version     9.9\n#" + b"-" * 65 + b"\n"),
    ],
    ids=["notes", "zero-filled", "binary", "other header", "other version"],
)
def test_a_foreign_file_in_an_mcl1_dataset_is_skipped(name: str, content: bytes, reference_dir: Path, tmp_path: Path) -> None:
    """A foreign or zero-filled .log among MCL_LOG 1.0 files: skipped with one warning, the other files read."""
    log = tmp_path / "dataset"
    log.mkdir()
    for f in (reference_dir / "dataset").iterdir():
        (log / f.name).write_bytes(f.read_bytes())
    good, none = _read(reference_dir / "dataset")
    assert none == [] and len(good) == 30
    (log / name).write_bytes(content)
    got, warned = _read(log)
    assert got == good
    assert len(warned) == 1 and warned[0].startswith(f"{log / name}: line ") and "whole file unreadable: " in warned[0]
    summary = _summary(log)
    assert summary.messages == 30 and [d.path for d in summary.damage] == [str(log / name)]
    runs = _every_command(log, tmp_path)
    assert len(runs["cat"].stdout.splitlines()) == 30
    with pytest.raises(LogFormatError):
        mcl.open_log(log, strict=True)


def test_the_sample_dataset_with_a_stray_file_reads(sample_logs: Path, tmp_path: Path) -> None:
    """sample_logs/mcl-v1-dataset plus notes.log: the 3 original files all read, one warning."""
    log = tmp_path / "dataset"
    log.mkdir()
    for f in (sample_logs / "mcl-v1-dataset").iterdir():
        (log / f.name).write_bytes(f.read_bytes())
    expected, _ = _read(sample_logs / "mcl-v1-dataset")
    (log / "notes.log").write_text("calibration done at 9:30\n")
    got, warned = _read(log)
    assert got == expected and len(got) > 0 and len(warned) == 1


# -- 2. crafted headers with valid CRCs ---------------------------------------------------------

FORGED_HEADERS = {
    "origin 1e400": _forge_header(None, raw=b'{"origin_ns": 1e400, "file_index": 0, "metadata": {}}'),
    "file_index 1e400": _forge_header(None, raw=b'{"origin_ns": 0, "file_index": 1e400, "metadata": {}}'),
    "origin 2**70": _forge_header({"origin_ns": 1 << 70}),
    "origin a string": _forge_header({"origin_ns": "yesterday"}),
    "origin true": _forge_header({"origin_ns": True}),
    "origin 5000 digits": _forge_header(None, raw=b'{"origin_ns": ' + b"9" * 5000 + b"}"),
    "nested 100000 deep": _forge_header(None, raw=b'{"origin_ns": 0, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "a list": _forge_header([1, 2, 3]),
    "metadata a list": _forge_header({"origin_ns": 0, "metadata": ["host"]}),
    "metadata nested": _forge_header({"origin_ns": 0, "metadata": {"host": {"a": [1]}}}),
    "metadata lone surrogate": _forge_header(None, raw=b'{"origin_ns": 0, "metadata": {"host": "\\ud800"}}'),
    "not UTF-8": _forge_header(None, raw=b'{"origin_ns": 0, "metadata": {"host": "\xff"}}'),
    "not JSON": _forge_header(None, raw=b"origin_ns = 0"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FORGED_HEADERS))
def test_a_forged_header_is_damage_and_the_records_come_back(kind: str, tmp_path: Path) -> None:
    """A header with a valid CRC but unusable values: one warning naming the file, every record read, no traceback."""
    recs = _records(120, step_ns=20 * MS)
    log = _native(tmp_path / "log", recs, split_duration=1.0)
    files = data_files(log)
    _replace_header(files[1], FORGED_HEADERS[kind])
    got, warned = _read(log)
    assert got == recs  # the file's times are elapsed times of the same origin (the other files give it)
    assert len(warned) == 1 and warned[0].startswith(f"{files[1]}: byte 0: file header ")
    summary = _summary(log)
    assert summary.messages == len(recs) and summary.origin_ns == ORIGIN
    assert summary.damage[0].path == str(files[1]) and summary.damage[0].reason.startswith("file header ")
    _every_command(log, tmp_path, replay=kind == "origin 1e400")


@pytest.mark.slow
def test_a_forged_header_in_a_lone_file(tmp_path: Path) -> None:
    """The only data file has an origin of 1e400: its records come back without an origin, every command copes."""
    recs = _records(30)
    log = _native(tmp_path / "log", recs)
    _replace_header(data_files(log)[0], FORGED_HEADERS["origin 1e400"])
    got, warned = _read(log)
    assert got == recs
    assert warned == [
        f"{data_files(log)[0]}: byte 0: file header origin_ns inf is not an integer in the i64 range; skipped"
    ]
    with mcl.open_log(log) as reader:
        assert reader.origin_ns is None
    runs = _every_command(log, tmp_path)
    assert "origin:    -" in runs["info"].stdout


def test_a_header_claiming_a_huge_json_is_damage(tmp_path: Path) -> None:
    """A header length of 4 GiB is refused before anything is read (the file's chunks are still found)."""
    recs = _records(30)
    log = _native(tmp_path / "log", recs)
    data = data_files(log)[0]
    blob = bytearray(data.read_bytes())
    blob[12:16] = struct.pack("<I", 0xFFFF_FFFF)
    data.write_bytes(bytes(blob))
    got, warned = _read(log)
    assert got == recs
    assert len(warned) == 1 and "file header claims 4294967295 bytes of JSON, over the limit of 16777216" in warned[0]


# Values JSON can hold that hurt: out of every integer range, infinities, lone surrogates.
EDGE_VALUES = st.sampled_from(
    [float("inf"), float("-inf"), float("nan"), 1 << 63, -(1 << 63) - 1, 1 << 64, 10**30, -1, 2**32, "\ud800", "", 1.5]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | EDGE_VALUES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(EDGE_VALUES, st.integers(), JSON_VALUES)  # edge values drawn often


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=st.one_of(
        JSON_VALUES,
        st.fixed_dictionaries(
            {"origin_ns": FIELD_VALUES, "file_index": FIELD_VALUES, "metadata": JSON_VALUES},
            optional={"origin_utc": JSON_VALUES, "writer": JSON_VALUES},
        ),
    )
)
def test_any_header_document_reads_the_records(doc: Any) -> None:
    """Hypothesis: any JSON in a header with a valid CRC never raises; the records always come back."""
    with tempfile.TemporaryDirectory() as tmp:
        recs = _records(20)
        log = _native(Path(tmp) / "log", recs)
        data = data_files(log)[0]
        _replace_header(data, _forge_header(None, raw=json.dumps(doc, allow_nan=True).encode("utf-8")))
        got, warned = _read(log)
        assert got == recs
        assert len(warned) <= 1 and all(w.startswith(f"{data}: byte 0: file header ") for w in warned)
        if not warned:
            assert _summary(log).messages == len(recs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("created", "reason"),
    [
        ("0001-01-01 00:00:00", "header 'created' '0001-01-01 00:00:00' is outside the years 1678 to 2261 (i64 ns since 1970)"),
        ("9999-12-31 23:59:59", "header 'created' '9999-12-31 23:59:59' is outside the years 1678 to 2261 (i64 ns since 1970)"),
        ("yesterday", "header 'created' is not a date and time: 'yesterday'"),
    ],
)
def test_an_mcl1_created_date_out_of_range_is_damage(created: str, reason: str, tmp_path: Path) -> None:
    """An MCL_LOG 1.0 `created` in year 1 (or not a date): one warning, the origin unknown, every record kept."""
    log = tmp_path / "dataset"
    log.mkdir()
    good = _records(10, topic="a")
    odd = _records(10, topic="b", start_ns=5 * MS)
    _mcl1_file(log / "A.log", good)
    _mcl1_file(log / "B.log", odd, created=created)
    got, warned = _read(log)
    assert sorted(got) == sorted(good + odd)
    assert warned == [f"{log / 'B.log'}: line 5: {reason}: the time origin is unknown; skipped"]
    summary = _summary(log)
    assert summary.messages == 20 and summary.origin_ns is not None
    _every_command(log, tmp_path)


@pytest.mark.slow
def test_mcl1_times_outside_the_i64_range_are_damage(tmp_path: Path) -> None:
    """A line whose time is 1e200 s (past i64 ns) is a damaged line, not a record the writers cannot store."""
    path = tmp_path / "A.log"
    recs = _records(5)
    _mcl1_file(path, recs)
    with open(path, "a") as fp:
        fp.write("  1e200    't'    80\n")
        fp.write(mcl1.format_line(*_records(6)[5]))
    got, warned = _read(path)
    assert got == _records(6)
    assert len(warned) == 1 and "line 26: line is not a record: \"1e200    't'    80\"" in warned[0]
    _every_command(path.parent, tmp_path)


# -- 3. index files with valid CRCs but wrong contents -------------------------------------------


def _bad_indexes(doc: dict[str, Any], entries: list[tuple[int, ...]], size: int) -> dict[str, tuple[Any, list[Any]]]:
    first = entries[0]
    return {
        "topics a list": ({**doc, "topics": []}, entries),
        "messages a string": ({**doc, "topics": {"t": {**doc["topics"]["t"], "messages": "many"}}}, entries),
        "messages 1e400": ({**doc, "topics": {"t": {**doc["topics"]["t"], "messages": float("inf")}}}, entries),
        "types not strings": ({**doc, "topics": {"t": {**doc["topics"]["t"], "types": [1, 2]}}}, entries),
        "damage a dict": ({**doc, "damage": {}}, entries),
        "damage offset past the end": ({**doc, "damage": [{"offset": size + 10, "reason": "x", "lost_bytes": 1}]}, entries),
        "offset past the end": (doc, [(size + 100, *first[1:])] + entries[1:]),
        "length past the end": (doc, entries[:-1] + [(entries[-1][0], size, *entries[-1][2:])]),
        "overlapping": (doc, [first, first] + entries[1:]),
        "counts do not add up": (doc, [(first[0], first[1], first[2] + 5, *first[3:])] + entries[1:]),
        "start after end": (doc, [(first[0], first[1], first[2], 10**12, 0)] + entries[1:]),
        "wrong chunk times": (doc, [(first[0], first[1], first[2], first[3] + 1, first[4] + 1)] + entries[1:]),
        "no entries": (doc, []),
        "not an object": ([1, 2], entries),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    sorted(_bad_indexes({"topics": {"t": {}}}, [(0, 0, 0, 0, 0)], 0)),
)
def test_an_index_with_wrong_contents_is_stale(kind: str, tmp_path: Path) -> None:
    """An index whose CRC is right but whose contents are not is ignored: the chunk headers are scanned, all records read."""
    recs = _records(400)
    log = _native(tmp_path / "log", recs, chunk_duration_ns=500 * MS)
    data = data_files(log)[0]
    doc, entries = _index_of(data)
    assert len(entries) >= 4
    bad_doc, bad_entries = _bad_indexes(doc, entries, data.stat().st_size)[kind]
    _forge_index(data, bad_doc, bad_entries)
    got, warned = _read(log)
    assert got == recs and warned == []
    summary = _summary(log)
    assert summary.messages == len(recs) and not summary.indexed and summary.damage == []
    assert summary.topics["t"].messages == len(recs)
    _every_command(log, tmp_path)


def test_an_index_with_deeply_nested_json_is_stale(tmp_path: Path) -> None:
    """Index JSON nested 100,000 levels deep (valid CRC): ignored, no RecursionError."""
    recs = _records(50)
    log = _native(tmp_path / "log", recs)
    data = data_files(log)[0]
    _, entries = _index_of(data)
    _forge_index(data, None, entries, raw_json=b'{"topics": ' + b"[" * 100_000 + b"]" * 100_000 + b', "damage": []}')
    assert _read(log) == (recs, [])
    assert not _summary(log).indexed


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_index_contents_read_every_record(data: st.DataObject) -> None:
    """Hypothesis: a valid-CRC index with fuzzed JSON values and chunk entries never loses or invents a record."""
    with tempfile.TemporaryDirectory() as tmp:
        recs = _records(200)
        log = _native(Path(tmp) / "log", recs, chunk_duration_ns=400 * MS)
        path = data_files(log)[0]
        doc, entries = _index_of(path)
        size = path.stat().st_size
        # Perturb some entries (offset, length, count, start, end), keep others.
        fuzzed: list[tuple[int, ...]] = []
        for entry in entries:
            if data.draw(st.booleans(), label="perturb"):
                field = data.draw(st.integers(0, 4), label="field")
                values = list(entry)
                lo, hi = ((0, 2**64 - 1), (0, 2**32 - 1), (0, 2**32 - 1), (-(2**63), 2**63 - 1), (-(2**63), 2**63 - 1))[field]
                values[field] = data.draw(st.integers(lo, hi) | st.integers(max(lo, entry[field] - 3), min(hi, entry[field] + 3)))
                fuzzed.append(tuple(values))
            else:
                fuzzed.append(entry)
        fuzzed = data.draw(st.permutations(fuzzed), label="order") if data.draw(st.booleans()) else fuzzed
        topics = data.draw(st.one_of(st.just(doc["topics"]), JSON_VALUES), label="topics")
        damage = data.draw(st.one_of(st.just(doc["damage"]), JSON_VALUES), label="damage")
        _forge_index(path, {**doc, "topics": topics, "damage": damage}, fuzzed)
        got, warned = _read(log)
        assert got == recs and warned == []
        summary = _summary(log)
        assert summary.messages == len(recs) or summary.indexed  # an index that passes every check is used
        assert size == path.stat().st_size


# -- 4. payloads nested deep -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_payload_nested_500_deep_is_one_bad_record(tmp_path: Path) -> None:
    """A 500-byte payload nested 500 levels: MessageError from decode; mcl-cat prints it as bytes, the rest decoded."""
    deep = b"\x91" * 500 + b"\xc0"
    with pytest.raises(MessageError, match=f"payload of 501 bytes is nested deeper than {MAX_DEPTH} levels"):
        mcl.decode(deep)
    mcl.decode(b"\x91" * MAX_DEPTH + b"\xc0")  # the limit itself is fine
    with pytest.raises(MessageError, match="nested deeper"):
        mcl.message.unpack(b"\x81\xa1a" * 200 + b"\xc0")  # maps too
    with pytest.raises(MessageError, match="nested deeper"):
        mcl.message.unpack(b"\x91" * 2000 + b"\xc0")  # past msgpack's own 1024
    recs = _records(10)
    recs.insert(5, mcl.Record(recs[4].elapsed_ns, "t", deep))
    log = _native(tmp_path / "log", recs)
    proc = _cli("mcl-cat", log)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 11 and [line["payload"]["i"] for line in lines if "payload" in line] == list(range(10))
    assert lines[5]["error"] == f"payload of 501 bytes is nested deeper than {MAX_DEPTH} levels"
    assert proc.stderr.splitlines() == [f"mcl-cat: warning: record at 0.040000 s on topic 't': {lines[5]['error']}"]
    # MCAP: the payload bytes as recorded are fine; as JSON it is one clear error line.
    assert _cli("mcl-convert", log, tmp_path / "a.mcap", "--mcap-encoding", "msgpack").returncode == 0
    proc = _cli("mcl-convert", log, tmp_path / "b.mcap")
    assert proc.returncode == 1 and "nested deeper than 100 levels" in proc.stderr
    assert not (tmp_path / "b.mcap").exists()
    _every_command(log, tmp_path)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 1500), kinds=st.lists(st.sampled_from([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01"]), min_size=1, max_size=3))
def test_any_nesting_decodes_or_raises_message_error(depth: int, kinds: list[bytes]) -> None:
    """Hypothesis: nested arrays and maps of any depth decode (up to MAX_DEPTH) or raise MessageError, never anything else."""
    payload = b"".join(kinds[i % len(kinds)] for i in range(depth)) + b"\xc0"
    try:
        value = mcl.decode(payload)
    except MessageError as exc:
        assert depth > MAX_DEPTH and "nested deeper" in str(exc)
    else:
        assert depth <= MAX_DEPTH
        from mcl.jsonform import dumps

        dumps(value)  # what mcl-cat does next does not recurse too deep


# -- 5. decompression bombs --------------------------------------------------------------------------


def _zeros_frame(size: int, *, content_size: bool = True) -> bytes:
    """A zstd frame of `size` zero bytes, built in 1 MiB steps (1 GiB gives about 33 KB)."""
    import zstandard

    out = io.BytesIO()
    compressor = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    with compressor.stream_writer(out, size=size if content_size else -1, closefd=False) as writer:
        block = bytes(1 << 20)
        for _ in range(size >> 20):
            writer.write(block)
    return out.getvalue()


def _bomb_log(tmp_path: Path, bomb: bytes) -> tuple[Path, list[mcl.Record]]:
    """A native log (no index) with a forged chunk between its real chunks."""
    recs = _records(300)
    log = _native(tmp_path / "log", recs, chunk_duration_ns=1_000 * MS)
    data = data_files(log)[0]
    data.with_suffix(".mcli").unlink()
    with NativeSource(log) as source:
        second = source._files[0].scan.chunks[1].offset
    blob = data.read_bytes()
    data.write_bytes(blob[:second] + bomb + blob[second:])
    return log, recs


def _peak_rss_mib(*argv: str) -> tuple[int, int, str]:
    """Run mcl-cat in a child Python; its exit status, peak resident memory (MiB) and stderr."""
    # VmHWM, not ru_maxrss: on Linux ru_maxrss keeps the parent's peak across fork + exec (a large pytest).
    code = (
        "import sys\n"
        "from mcl.cli import cat\n"
        "rc = cat.main(sys.argv[1:])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(int(hwm) // 1024, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    *lines, peak = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr
    return proc.returncode, int(peak), "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["1 GiB claimed", "no content size", "frame larger than claimed"])
def test_a_zstd_bomb_is_refused_before_allocating(case: str, tmp_path: Path) -> None:
    """A 33 KB zstd chunk claiming a 1 GiB record: refused before decompressing; peak memory stays small, the rest reads."""
    if case == "1 GiB claimed":
        frame = _zeros_frame(1 << 30)
        assert len(frame) < 40_000
        raw_len, reason = (1 << 30) + 14, f"chunk claims a raw body of {(1 << 30) + 14} bytes, over the limit of {MAX_RAW_CHUNK_BYTES}"
    elif case == "no content size":
        frame = _zeros_frame(1 << 20, content_size=False)
        raw_len, reason = 250 << 20, f"zstd frame content size None is not the chunk's raw length {250 << 20}"
    else:
        frame = _zeros_frame(200 << 20)
        raw_len, reason = 1 << 20, f"zstd frame content size {200 << 20} is not the chunk's raw length {1 << 20}"
    bomb = _forge_chunk(frame, raw_len=raw_len, count=1, topic_bytes=raw_len - 14)
    log, recs = _bomb_log(tmp_path, bomb)
    got, warned = _read(log)
    assert got == recs
    assert len(warned) == 1 and reason in warned[0] and warned[0].startswith(f"{data_files(log)[0]}: byte ")
    status, peak, stderr = _peak_rss_mib(str(log))
    assert status == 0 and reason in stderr
    assert peak < 200, f"mcl-cat peaked at {peak} MiB"
    _every_command(log, tmp_path)


def test_a_chunk_whose_sizes_disagree_is_damage(tmp_path: Path) -> None:
    """Raw length that is not 14 N + the topic table's payload bytes, or an uncompressed chunk with S != R: damage."""
    import zstandard

    stored = zstandard.ZstdCompressor().compress(bytes(100))
    for bomb, reason in (
        (_forge_chunk(stored, raw_len=100, count=1, topic_bytes=999), "chunk raw length does not match its record count and payload bytes"),
        (_forge_chunk(bytes(100), raw_len=1 << 27, count=1, topic_bytes=(1 << 27) - 14, compression=0), "uncompressed chunk has different stored and raw lengths"),
    ):
        sub = tmp_path / str(len(reason))
        sub.mkdir()
        log, recs = _bomb_log(sub, bomb)
        got, warned = _read(log)
        assert got == recs and len(warned) == 1 and reason in warned[0]


# -- 6. linear reading ----------------------------------------------------------------------------------


def _nul_log(path: Path, nul_bytes: int) -> None:
    _mcl1_file(path, _records(3))
    with open(path, "ab") as fp:
        block = bytes(1 << 20)
        for _ in range(nul_bytes >> 20):
            fp.write(block)


def _read_seconds(path: Path) -> float:
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        got, warned = _read(path)
        best = min(best, time.perf_counter() - t0)
    assert got == _records(3) and len(warned) == 1
    return best


@pytest.mark.slow
def test_mcl1_reading_is_linear_on_a_line_without_newline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NULs without a newline (a power loss): 8x the bytes cost about 8x the time, not 64x; 32 MiB reads in < 10 s.

    Blocks of 16 KiB instead of 1 MiB make a quadratic re-scan of the growing
    line show at small sizes (2,048 blocks for 32 MiB: 32 GiB copied by the
    old reader); the bound on the ratio sits between linear (8x) and
    quadratic (64x), so a loaded machine does not break it.
    """
    monkeypatch.setattr(mcl1, "_CHUNK_BYTES", 16 << 10)
    small, big = tmp_path / "small.log", tmp_path / "big.log"
    _nul_log(small, 4 << 20)
    _nul_log(big, 32 << 20)
    t_small, t_big = _read_seconds(small), _read_seconds(big)
    assert t_big < 10, (t_small, t_big)
    assert t_big < 24 * max(t_small, 0.01), (t_small, t_big)


def test_a_line_over_the_limit_is_skipped_without_holding_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line over MAX_LINE_BYTES is one damaged line (not kept in memory); the records after it still read."""
    monkeypatch.setattr(mcl1, "MAX_LINE_BYTES", 3 << 20)
    path = tmp_path / "A.log"
    recs = _records(6)
    _mcl1_file(path, recs[:3])
    with open(path, "ab") as fp:
        fp.write(b"7" * (5 << 20) + b"\n")
        fp.write("".join(mcl1.format_line(*r) for r in recs[3:]).encode())
    got, warned = _read(path)
    assert got == recs
    assert warned == [f"{path}: line 24: line longer than {3 << 20} bytes; skipped"]
    # At the end of the file, with no newline at all:
    with open(path, "ab") as fp:
        fp.write(b"\x00" * (4 << 20))
    got, warned = _read(path)
    assert got == recs and warned[-1] == f"{path}: line 28: line longer than {3 << 20} bytes (and cut short); skipped"


def test_long_lines_across_blocks_read_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records whose lines span several read blocks come back byte for byte (the linear reader joins them once)."""
    monkeypatch.setattr(mcl1, "_CHUNK_BYTES", 1000)
    path = tmp_path / "A.log"
    recs = [mcl.Record(i * MS, "t", mcl.encode({"blob": bytes([i]) * (i * 700)})) for i in range(12)]
    _mcl1_file(path, recs)
    assert _read(path) == (recs, [])


# -- 7. only regular files ---------------------------------------------------------------------------


def _unblocked(fifo: Path, action: Callable[[], T], timeout: float = 20) -> T:
    """`action()`, failing the test (not hanging it) if it blocks opening `fifo` for reading."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append((True, action()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append((False, exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():  # blocked in open(): release it with a writer, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout)
        pytest.fail(f"reading blocked on the FIFO {fifo}")
    ok, value = result[0]
    if not ok:
        raise value
    return value


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fifo.log", "fifo.mcln", "fifo"])
def test_a_fifo_given_as_a_log_is_refused_at_once(name: str, tmp_path: Path) -> None:
    """A FIFO as the log path: one error line from every command, nothing blocks (nobody writes to it)."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with pytest.raises(LogError) as excinfo:
        _unblocked(fifo, lambda: mcl.open_log(fifo).close())
    assert str(excinfo.value) == f"{fifo}: not a regular file (a FIFO); mcl reads logs from regular files only"
    for command, args in (
        ("mcl-info", []),
        ("mcl-info", ["--check"]),
        ("mcl-cat", []),
        ("mcl-export", ["--fields", "i", "--csv", tmp_path / "x.csv"]),
        ("mcl-convert", [tmp_path / "out"]),
    ):
        proc = _cli(command, fifo, *args, timeout=30)
        assert proc.returncode == 1 and "not a regular file (a FIFO)" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["data_0007.mcln", "x.mcln", "data_0000.mcli"])
def test_a_fifo_inside_a_native_log_is_skipped(name: str, tmp_path: Path) -> None:
    """A FIFO named like a data file (or an index) inside a log: reported or ignored, never opened for reading."""
    recs = _records(40)
    log = _native(tmp_path / "log", recs)
    if name.endswith(".mcli"):
        (log / name).unlink()
    os.mkfifo(log / name)
    got, warned = _unblocked(log / name, lambda: _read(log))
    assert got == recs
    if name.endswith(".mcln"):
        assert warned == [f"{log / name}: whole file unreadable: not a regular file (a FIFO); mcl reads logs from regular files only; skipped"]
    else:
        assert warned == []
    _every_command(log, tmp_path)


def test_a_fifo_inside_an_mcl1_dataset_is_skipped(reference_dir: Path, tmp_path: Path) -> None:
    """A FIFO named .log in an MCL_LOG 1.0 directory is skipped with a warning; the files read."""
    log = tmp_path / "dataset"
    log.mkdir()
    for f in (reference_dir / "dataset").iterdir():
        (log / f.name).write_bytes(f.read_bytes())
    os.mkfifo(log / "pipe.log")
    got, warned = _unblocked(log / "pipe.log", lambda: _read(log))
    assert len(got) == 30
    assert warned == [f"{log / 'pipe.log'}: whole file unreadable: not a regular file (a FIFO); mcl reads logs from regular files only; skipped"]


# -- 8. MCAP export of times and paths it cannot hold ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("elapsed_ns", [-1, -(1 << 62)])
def test_mcap_export_of_a_time_before_1970_is_one_error(elapsed_ns: int, tmp_path: Path) -> None:
    """A record before 1970 (negative MCAP time): one error line naming the record and the range, no partial file."""
    with mcl.LogWriter(tmp_path / "log", origin_ns=0) as writer:
        writer.write("t", mcl.encode({"i": 0}), 0)
        writer.write("t", mcl.encode({"i": 1}), elapsed_ns)
    for encoding in ("json", "msgpack"):
        out = tmp_path / f"{encoding}.mcap"
        proc = _cli("mcl-convert", tmp_path / "log", out, "--mcap-encoding", encoding)
        assert proc.returncode == 1 and f"has the time {elapsed_ns} ns (UTC ns since 1970), outside 0..{(1 << 63) - 1}" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()


@pytest.mark.slow
def test_mcap_export_of_a_non_utf8_path(tmp_path: Path) -> None:
    """A log under a directory whose name is not UTF-8 exports; the path is kept with the odd byte escaped."""
    from mcap.reader import make_reader

    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    recs = _records(5)
    _native(odd / "log", recs)
    out = tmp_path / "out.mcap"
    assert _cli("mcl-convert", odd / "log", out, "--mcap-metadata").returncode == 0  # paths only when asked
    with open(out, "rb") as fp:
        (meta,) = list(make_reader(fp).iter_metadata())
    assert meta.metadata["source.0.path"].endswith("caf\\xe9/log")
    with open(out, "rb") as fp:
        assert sum(1 for _ in make_reader(fp).iter_messages()) == 5


# -- 9. mcl-info claims only what it verified ---------------------------------------------------------


@pytest.mark.slow
def test_mcl_info_does_not_claim_an_unverified_log_is_whole(tmp_path: Path) -> None:
    """A chunk body that fails its CRC under a valid index: 'not verified' without --check, the damage with it."""
    recs = _records(300)
    log = _native(tmp_path / "log", recs)
    data = data_files(log)[0]
    with NativeSource(log) as source:
        chunks = source._files[0].scan.chunks
    assert len(chunks) == 3  # one per second of log time
    blob = bytearray(data.read_bytes())
    blob[chunks[1].offset + chunks[1].length - 5] ^= 0x01
    data.write_bytes(bytes(blob))
    info = _cli("mcl-info", log).stdout
    assert "damage:    none known, not verified (use --check)" in info
    checked = _cli("mcl-info", log, "--check").stdout
    assert "damage:    1 damaged part(s) skipped" in checked
    assert f"{data}: byte {chunks[1].offset}: damaged chunk (chunk body fails its CRC): 100 records lost" in checked
    assert "not verified" not in checked and "messages:  200" in checked
    as_json = json.loads(_cli("mcl-info", log, "--check", "--json").stdout)
    assert as_json["verified"] is True and as_json["messages"] == 200 and len(as_json["damage"]) == 1
    assert json.loads(_cli("mcl-info", log, "--json").stdout)["verified"] is False
    # The records around the damaged chunk read; the damaged chunk alone is lost.
    got, warned = _read(log)
    assert got == recs[:100] + recs[200:] and len(warned) == 1
    whole = _native(tmp_path / "whole", recs)
    assert "damage:    none (every record read and checked)" in _cli("mcl-info", whole, "--check").stdout


# -- 10. chunks bound what one damaged spot loses ---------------------------------------------------------


def test_default_chunks_span_at_most_one_second(tmp_path: Path) -> None:
    """The default writer starts a new chunk every second of log time (and every 1 MiB), whatever the wall clock."""
    recs = _records(5_000, step_ns=1 * MS)  # 5 s at 1 kHz, written in a few milliseconds
    log = _native(tmp_path / "log", recs)
    with NativeSource(log) as source:
        chunks = source._files[0].scan.chunks
    assert len(chunks) == 5
    assert all(c.end_ns - c.start_ns < 1_000 * MS for c in chunks)
    big = [mcl.Record(i * MS, "t", bytes(100_000)) for i in range(40)]
    log = _native(tmp_path / "big", big)
    with NativeSource(log) as source:
        assert all(c.length < (1 << 20) + 200_000 for c in source._files[0].scan.chunks)


def test_one_flipped_bit_in_the_sample_log_loses_one_chunk(sample_logs: Path, tmp_path: Path) -> None:
    """sample_logs/vehicle has a chunk per second: a flipped bit anywhere in its body loses at most 1/7 of the records."""
    log = tmp_path / "vehicle"
    log.mkdir()
    for f in (sample_logs / "vehicle").iterdir():
        (log / f.name).write_bytes(f.read_bytes())
    recs, _ = _read(log)
    assert len(recs) == 1400
    with NativeSource(log) as source:
        chunks = source._files[0].scan.chunks
    assert len(chunks) >= 10
    data = data_files(log)[0]
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    data.write_bytes(bytes(blob))
    got, warned = _read(log)
    assert len(warned) == 1 and 1400 - 200 <= len(got) < 1400
    assert all(r in recs for r in got)


# -- 11. every API error is an MclError ------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=st.binary(max_size=600), prefix=st.sampled_from([b"", FILE_MAGIC, _forge_header({"origin_ns": 0})]))
def test_any_bytes_as_a_data_file_give_records_warnings_or_mcl_errors(blob: bytes, prefix: bytes) -> None:
    """Hypothesis: any bytes (after no header, a magic, or a valid header) read as records + warnings or raise an MclError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.mcln"
        path.write_bytes(prefix + blob)
        try:
            _read(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LogDamageWarning)
                with NativeSource(path) as source:
                    source.summary(verify=True)
        except MclError:
            pass


def test_reindex_skips_unreadable_files(tmp_path: Path) -> None:
    """mcl-info --reindex on a log with a zero-filled file and a FIFO: the good files are indexed, the others reported."""
    recs = _records(300)
    log = _native(tmp_path / "log", recs, split_duration=1.0)
    files = data_files(log)
    for f in files:
        f.with_suffix(".mcli").unlink()
    files[1].write_bytes(bytes(files[1].stat().st_size))
    os.mkfifo(log / "data_0009.mcln")
    summary = _unblocked(log / "data_0009.mcln", lambda: mcl.log.native.reindex(log))
    assert summary.messages == 200 and summary.indexed  # every readable file now has its index
    assert files[0].with_suffix(".mcli").exists() and files[2].with_suffix(".mcli").exists()
    assert not files[1].with_suffix(".mcli").exists()
    assert sorted(d.path for d in summary.damage) == [str(files[1]), str(log / "data_0009.mcln")]


def test_a_fifo_as_a_later_part_of_a_series_is_skipped(tmp_path: Path) -> None:
    """An MCL_LOG 1.0 split series whose second part is a FIFO: the other parts read, one warning."""
    log = tmp_path / "dataset"
    with mcl.LogWriter(log, format="mcl1", origin_ns=0, split_size=2000) as writer:
        recs = [mcl.Record(i * MS, "t", mcl.encode({"name": "Thing", "i": i})) for i in range(60)]
        for r in recs:
            writer.write_record(r)
    parts = sorted(log.iterdir())
    assert len(parts) >= 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mcl.open_log(parts[1]) as part:
            lost = list(part)
    parts[1].unlink()
    os.mkfifo(parts[1])
    got, warned = _unblocked(parts[1], lambda: _read(log))
    assert got == [r for r in recs if r not in lost] and len(lost) > 0
    assert warned == [f"{parts[1]}: whole file unreadable: not a regular file (a FIFO); mcl reads logs from regular files only; skipped"]
