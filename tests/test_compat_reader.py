"""The original MCL's ReadFile / ReadDirectory / dump_to_* contract, and its error types, on the original files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import UnitTestMessageA, UnitTestMessageB

import mcl
from mcl.exceptions import (
    ArgumentError,
    ArgumentRangeError,
    ArgumentTypeError,
    FieldMissingError,
    FieldTypeError,
    LogFormatError,
    LogIOError,
)

REVISION = "ffff" + "0" * 36


pytestmark = pytest.mark.usefixtures("original_types")


def _all(reader: mcl.ReadFile) -> list[dict[str, object]]:
    items = []
    while reader.is_data_pending():
        items.append(reader.read())
    assert reader.read() is None and reader.read() is None  # None at the end, and on every later call
    return items  # type: ignore[return-value]


def test_read_file_header_fields(reference_dir: Path) -> None:
    """header gives version, revision, created and the registered type (None for raw data, None revision when empty)."""
    d = reference_dir / "dataset"
    with mcl.ReadFile(str(d / "UnitTestMessageA.log")) as reader:
        header = reader.header
        assert header is not None
        assert (header["version"], header["revision"], header["created"]) == ("1.0", REVISION, "1970-01-01 00:00:00")
        assert header["type"] is UnitTestMessageA
        assert header["text"].startswith("#" + "-" * 65 + "\n# MCL_LOG\n") and header["end"] == len(header["text"])
    with mcl.ReadFile(d / "RawUnitTestData.log") as reader:
        assert reader.header is not None and reader.header["type"] is None and reader.header["revision"] is None
    with mcl.ReadFile(reference_dir / "dataset_split" / "UnitTestMessageB") as reader:  # a split prefix: _000's header
        assert reader.header is not None and reader.header["type"] is UnitTestMessageB
    with mcl.ReadFile(reference_dir / "dataset_split" / "UnitTestMessageB_002.log") as reader:  # headerless part
        assert reader.header is None and len(_all(reader)) == 2
    with mcl.ReadFile(d) as reader:  # a directory of several files has no single header
        assert reader.header is None


def test_read_file_protocol_and_window(reference_dir: Path) -> None:
    """read() / is_data_pending() / reset(), inclusive min_time / max_time, and the read-only properties."""
    with mcl.ReadFile(reference_dir / "dataset" / "UnitTestMessageA.log", min_time=0.05, max_time=0.05) as reader:
        assert (reader.min_time, reader.max_time) == (0.05, 0.05)
        items = _all(reader)
        assert items == [{"elapsed_time": 0.05, "topic": "", "payload": {"timestamp": 0.05, "data": 0.05, "name": "UnitTestMessageA"}}]
        reader.reset()
        assert reader.is_data_pending() and reader.read() == items[0]
        with pytest.raises(AttributeError):
            reader.min_time = 1.0  # type: ignore[misc]


def test_max_time_zero_is_a_bound(reference_dir: Path) -> None:
    """max_time=0 keeps the records at 0 s only (the original read it as no limit); None is no limit."""
    source = reference_dir / "dataset" / "UnitTestMessageA.log"
    with mcl.ReadFile(source, max_time=0) as reader:
        assert [i["elapsed_time"] for i in _all(reader)] == [0.0]
    with mcl.ReadFile(source, min_time=0, max_time=None) as reader:
        assert len(_all(reader)) == 10
    assert [i["elapsed_time"] for i in mcl.dump_to_list(source, max_time=0)] == [0.0]


def test_message_forces_the_decoded_type(reference_dir: Path) -> None:
    """message=True decodes by name; a class or a type name forces that type, whatever the payload names."""
    source = reference_dir / "dataset" / "UnitTestMessageA.log"
    with mcl.ReadFile(source, message=True) as reader:
        payload = reader.read()["payload"]  # type: ignore[index]
        assert isinstance(payload, UnitTestMessageA)
    for forced in (UnitTestMessageB, "UnitTestMessageB"):
        with mcl.ReadFile(source, max_time=0.01, message=forced) as reader:
            payloads = [i["payload"] for i in _all(reader)]
        assert [type(p) for p in payloads] == [UnitTestMessageB, UnitTestMessageB]
        assert payloads[1].data == 0.01 and payloads[1].timestamp == 0.01 and payloads[1].name == "UnitTestMessageB"
    with mcl.ReadFile(reference_dir / "dataset" / "RawUnitTestData.log", message=UnitTestMessageB) as reader:
        assert reader.read()["payload"] == []  # type: ignore[index]  # raw data stays a plain value
    assert isinstance(mcl.dump_to_list(source, message="UnitTestMessageB", metadata=False)[0], UnitTestMessageB)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"message": []}, ArgumentTypeError, "message must be"),
        ({"message": "NoSuchMessage"}, ArgumentTypeError, "no message type of that name"),
        ({"message": dict}, ArgumentTypeError, "message must be"),  # the original raised AttributeError
        ({"message": 1}, ArgumentTypeError, "message must be"),
        ({"min_time": "0"}, ArgumentTypeError, "min_time must be None or a number"),
        ({"max_time": -1}, ArgumentRangeError, "max_time must be a number of seconds >= 0"),
        ({"min_time": float("nan")}, ArgumentRangeError, "min_time"),
        ({"min_time": 2, "max_time": 1}, ArgumentError, "min_time 2 s is after max_time 1 s"),
    ],
)
def test_read_file_argument_checks(reference_dir: Path, kwargs: dict[str, object], error: type, text: str) -> None:
    """Bad arguments raise the original's TypeError (a negative time also ValueError; min > max ValueError)."""
    with pytest.raises(error, match=text) as info:
        mcl.ReadFile(reference_dir / "dataset" / "UnitTestMessageA.log", **kwargs)  # type: ignore[arg-type]
    original = ValueError if error is ArgumentError else TypeError
    assert isinstance(info.value, (mcl.MclError, original))
    assert isinstance(info.value, mcl.MclError) and isinstance(info.value, original)
    with pytest.raises(TypeError, match="filename must be a path"):
        mcl.ReadFile(42)  # type: ignore[arg-type]


def test_missing_and_malformed_logs_are_io_errors(reference_dir: Path, tmp_path: Path) -> None:
    """A missing log is a FileNotFoundError, a file that is not a log an OSError: `except IOError` still works."""
    for call in (
        lambda: mcl.ReadFile(tmp_path / "missing.log"),
        lambda: mcl.ReadDirectory(str(tmp_path / "missing")),
        lambda: mcl.dump_to_list(tmp_path / "missing"),
        lambda: mcl.dump_to_array(tmp_path / "missing", ["data"]),
        lambda: mcl.open_log(tmp_path / "missing"),
    ):
        with pytest.raises(FileNotFoundError) as info:
            call()
        assert isinstance(info.value, mcl.LogNotFound) and isinstance(info.value, IOError)
    bad = tmp_path / "bad.log"
    bad.write_text("# just a comment\n")
    try:
        mcl.ReadFile(bad)
    except IOError as exc:  # the original's IOError('File does not appear to be a network dump file.')
        assert isinstance(exc, LogFormatError) and exc.line == 1 and str(bad) in str(exc)
    else:
        pytest.fail("a file that is not a log was read")
    undecodable = tmp_path / "undecodable.log"
    undecodable.write_text("     0.50000    'x'         c1\n")  # 0xc1 is never valid msgpack
    with mcl.ReadFile(undecodable) as reader:
        with pytest.raises(IOError, match=r"record at 0\.500000 s on topic 'x': .*not valid msgpack") as info:
            reader.read()
    assert isinstance(info.value, mcl.MessageError)
    with pytest.raises(LogIOError, match="not a directory"):
        mcl.ReadDirectory(reference_dir / "dataset" / "UnitTestMessageA.log")
    with pytest.raises(OSError):
        mcl.dump_to_list(bad)


def test_read_directory_contract(reference_dir: Path) -> None:
    """ReadDirectory: raw files included unless ignore_raw=True, messages listed with message=True, bool checks."""
    d = reference_dir / "dataset"
    with mcl.ReadDirectory(str(d)) as reader:
        assert len(_all(reader)) == 30 and reader.messages is None
    with mcl.ReadDirectory(str(d), message=True, ignore_raw=True) as reader:
        items = _all(reader)
        assert reader.messages == [UnitTestMessageA, UnitTestMessageB]
    assert len(items) == 20 and [type(i["payload"]) for i in items] == [UnitTestMessageA] * 10 + [UnitTestMessageB] * 10
    with mcl.ReadDirectory(d, 0.05, 0.1, False, True) as reader:  # the original's positional order
        assert [i["elapsed_time"] for i in _all(reader)] == [0.05, 0.06, 0.07, 0.08, 0.09, 0.1]
    for kwargs, text in (({"message": "yes"}, "message must be True or False"), ({"ignore_raw": 1}, "ignore_raw")):
        with pytest.raises(TypeError, match=text):
            mcl.ReadDirectory(d, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="source must be a path"):
        mcl.ReadDirectory(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after max_time"):
        mcl.ReadDirectory(d, min_time=1, max_time=0.5)


def test_dump_functions_check_arguments_as_the_original(reference_dir: Path, tmp_path: Path) -> None:
    """dump_to_*: metadata / keys / times checked (TypeError), a missing field a KeyError, mixed types a TypeError."""
    d = reference_dir / "dataset"
    with pytest.raises(TypeError, match="metadata must be True or False"):
        mcl.dump_to_list(d, metadata="bool")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="message must be"):
        mcl.dump_to_list(d, message=[])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keys must be"):
        mcl.dump_to_array(d, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="min_time"):
        mcl.dump_to_csv(d, tmp_path / "x.csv", ["data"], min_time=-1)
    with pytest.raises(TypeError, match="source must be a log path"):
        mcl.dump_to_list(3)  # type: ignore[arg-type]
    a = d / "UnitTestMessageA.log"
    with pytest.raises(KeyError) as missing:
        mcl.dump_to_array(a, ["data", "nope"])
    assert isinstance(missing.value, FieldMissingError) and "has no field 'nope'" in str(missing.value)
    with pytest.raises(TypeError) as mixed:
        mcl.dump_to_csv(d, tmp_path / "mixed.csv", ["data"])
    assert isinstance(mixed.value, FieldTypeError) and not (tmp_path / "mixed.csv").exists()
    with pytest.raises(TypeError, match="not a number"):
        mcl.dump_to_array(a, ["name"])
    assert mcl.dump_to_array(a, []).shape == (10, 0)  # as the original
    np.testing.assert_array_equal(mcl.dump_to_array(a, "data")[:, 0], np.arange(10) / 100)  # one str key: one field
