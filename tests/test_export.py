"""Tests of mcl.export: dump_to_list, dump_to_array and dump_to_csv (original semantics, defects fixed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mcl
from mcl.message import GenericMessage, encode

S = 1_000_000_000


def _log(path: Path, values: list[dict[str, object]], name: str = "Imu", topic: str = "imu") -> Path:
    with mcl.LogWriter(path, format="mcl1", origin_ns=0) as writer:
        for i, fields in enumerate(values):
            writer.write(topic, GenericMessage(name, fields, timestamp=i * 0.1).encode(), i * S // 10)
    return path


def test_csv_is_byte_identical_to_the_original(reference_dir: Path, tmp_path: Path) -> None:
    """dump_to_csv of UnitTestMessageA.log with name,data,timestamp reproduces the original CSV byte for byte."""
    out = tmp_path / "a.csv"
    rows = mcl.dump_to_csv(reference_dir / "dataset" / "UnitTestMessageA.log", out, ["name", "data", "timestamp"])
    assert rows == 10
    assert out.read_bytes() == (reference_dir / "dataset" / "UnitTestMessageA.csv").read_bytes()


def test_dump_to_list_items_and_modes(reference_dir: Path) -> None:
    """Items are {'elapsed_time', 'topic', 'payload'}; metadata=False gives payloads; message=True decodes."""
    d = reference_dir / "dataset"
    items = mcl.dump_to_list(d, min_time=0.05, max_time=1.0)
    assert [i["elapsed_time"] for i in items][:2] == [0.05, 0.06]
    assert len(items) == 5 + 10 + 1  # A 0.05..0.09, B 0.1..1.0, raw at 1.0
    assert items[0]["payload"] == {"name": "UnitTestMessageA", "timestamp": 0.05, "data": 0.05}
    payloads = mcl.dump_to_list(d, metadata=False)
    assert len(payloads) == 30 and payloads[-1] == list(range(9)) * 9
    messages = mcl.dump_to_list(d / "UnitTestMessageB.log", message=True, metadata=False)
    assert all(isinstance(m, mcl.Message) and m.name == "UnitTestMessageB" for m in messages)


def test_dump_to_array_of_scalars(reference_dir: Path) -> None:
    """dump_to_array gives one float row per message of the chosen keys; raw records are skipped."""
    array = mcl.dump_to_array(reference_dir / "dataset_split" / "UnitTestMessageB", ["data", "timestamp"])
    assert array.shape == (10, 2) and array.dtype == np.float64
    np.testing.assert_allclose(array[:, 0], np.arange(1, 11) / 10)
    raw_and_a = mcl.dump_to_array(reference_dir / "dataset", "data", max_time=0.09)
    assert raw_and_a.shape == (10, 1)


def test_dump_to_array_flattens_numpy_fields(tmp_path: Path) -> None:
    """An array field fills one column per element (C order); None becomes NaN."""
    values = [{"accel": np.arange(3.0) + i, "temp": i, "fix": None if i == 1 else True} for i in range(3)]
    array = mcl.dump_to_array(_log(tmp_path / "log", values), ["temp", "accel", "fix"])
    assert array.shape == (3, 5)
    np.testing.assert_array_equal(array[2], [2, 2, 3, 4, 1])
    assert np.isnan(array[1, 4])


def test_dump_to_array_errors_name_the_record(tmp_path: Path) -> None:
    """Shape changes, text fields, missing keys and mixed types raise MessageError naming record and field."""
    log = _log(tmp_path / "shape", [{"v": np.zeros(3)}, {"v": np.zeros(2)}])
    with pytest.raises(mcl.MessageError, match=r"record at 0\.100000 s on topic 'imu': field 'v' has shape \(2,\)"):
        mcl.dump_to_array(log, ["v"])
    log = _log(tmp_path / "text", [{"v": 1.0}, {"v": "high"}])
    with pytest.raises(mcl.MessageError, match=r"field 'v' holds a str \('high'\), which is not a number"):
        mcl.dump_to_array(log, ["v"])
    log = _log(tmp_path / "missing", [{"v": 1.0}, {"w": 2.0}])
    with pytest.raises(mcl.MessageError, match=r"0\.100000 s .* has no field 'v' \(fields: name, timestamp, w\)"):
        mcl.dump_to_array(log, ["v"])
    with pytest.raises(TypeError, match="keys"):
        mcl.dump_to_array(log, [1])  # type: ignore[list-item]
    assert mcl.dump_to_array(_log(tmp_path / "ok", [{"v": 1.0}, {"v": 2.0}]), []).shape == (2, 0)  # as the original


def test_mixed_message_types_are_refused(reference_dir: Path, tmp_path: Path) -> None:
    """A selection holding two message types raises MessageError and writes no CSV."""
    out = tmp_path / "mixed.csv"
    with pytest.raises(mcl.MessageError, match="'UnitTestMessageB' message; every exported message must be of one type"):
        mcl.dump_to_csv(reference_dir / "dataset", out, ["data"])
    assert not out.exists()


def test_empty_selection_gives_empty_results(reference_dir: Path, tmp_path: Path) -> None:
    """No message in the window: an empty list, a (0, n) array and an empty CSV file (the original returned None)."""
    source = reference_dir / "dataset" / "UnitTestMessageA.log"
    assert mcl.dump_to_list(source, min_time=5.0) == []
    assert mcl.dump_to_array(source, ["data", "timestamp"], min_time=5.0).shape == (0, 2)
    assert mcl.dump_to_csv(source, tmp_path / "e.csv", ["data"], min_time=5.0) == 0
    assert (tmp_path / "e.csv").read_bytes() == b""


def test_csv_of_numpy_fields_stays_on_one_line(tmp_path: Path) -> None:
    """numpy arrays and scalars are written like Python lists and numbers."""
    with mcl.LogWriter(tmp_path / "log", format="mcl1", origin_ns=0) as writer:
        writer.write("t", encode({"name": "N", "timestamp": 0.5, "v": np.array([[1, 2], [3, 4]]), "s": np.int8(3)}), 0)
    mcl.dump_to_csv(tmp_path / "log", tmp_path / "n.csv", ["v", "s", "timestamp"])
    assert (tmp_path / "n.csv").read_bytes() == b'"[[1, 2], [3, 4]]",3,0.5\r\n'
