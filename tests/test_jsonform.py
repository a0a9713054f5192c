"""One JSON form of payloads: mcl-cat, mcl-info --json and the MCAP export write the same values."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mcl
from mcl.jsonform import dumps, to_json_value, to_plain_json
from mcl.mcap_export import write_mcap

mcap_reader = pytest.importorskip("mcap.reader", reason="the optional 'mcap' extra is not installed")

BIN = Path(sys.executable).parent
ORIGIN_NS = 1_714_555_800_000_000_000


def _payload() -> dict[Any, Any]:
    """A payload with every value the JSON rules have to decide on."""
    return {
        "name": "Odd",
        "timestamp": 1.5,
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "blob": b"\x00\xff\x10",
        b"\x01\x02": "bytes key",
        7: "int key",
        "nested": {"accel": np.array([0.5, math.nan, math.inf]), "ids": np.arange(3, dtype=np.int32), "deeper": {"v": np.float32(2.5)}},
        "list": [1, math.nan, b"\xfe"],
        "grid": np.arange(6, dtype=np.float64).reshape(2, 3),
    }


def _cli(command: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / command), *map(str, args)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _log(path: Path, records: list[tuple[int, str, bytes]]) -> Path:
    with mcl.LogWriter(path, origin_ns=ORIGIN_NS) as writer:
        for elapsed_ns, topic, payload in records:
            writer.write_record(mcl.Record(elapsed_ns, topic, payload))
    return path


def test_the_rules() -> None:
    """NaN and infinity null, bytes values and keys base64, other keys their JSON text, arrays lists."""
    value = to_plain_json(_payload())
    assert value["nan"] is None and value["inf"] is None and value["ninf"] is None
    assert value["blob"] == base64.b64encode(b"\x00\xff\x10").decode()
    assert value[base64.b64encode(b"\x01\x02").decode()] == "bytes key"
    assert value["7"] == "int key"
    assert value["nested"] == {"accel": [0.5, None, None], "ids": [0, 1, 2], "deeper": {"v": 2.5}}
    assert value["grid"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    json.loads(dumps(_payload()), parse_constant=pytest.fail)  # valid JSON: no NaN / Infinity tokens
    # the Foxglove form: the same but for arrays holding arrays
    fox = to_json_value(_payload())
    assert fox["grid"] == {"shape": [2, 3], "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}
    assert {k: v for k, v in fox.items() if k != "grid"} == {k: v for k, v in value.items() if k != "grid"}


@pytest.mark.slow
def test_mcl_cat_and_the_mcap_export_write_the_same_values(tmp_path: Path) -> None:
    """One record through the real mcl-cat and through the MCAP export (read back with mcap): equal JSON values."""
    log = _log(tmp_path / "log", [(0, "odd", mcl.encode(_payload())), (10_000_000, "plain", mcl.encode({"i": 1}))])
    proc = _cli("mcl-cat", log)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = [json.loads(line, parse_constant=pytest.fail) for line in proc.stdout.splitlines()]
    assert [line["topic"] for line in lines] == ["odd", "plain"]
    cat_value = lines[0]["payload"]

    out = tmp_path / "log.mcap"
    write_mcap(log, out)
    with open(out, "rb") as fp:
        messages = list(mcap_reader.make_reader(fp).iter_messages(log_time_order=True))
    assert [(c.topic, c.message_encoding) for _, c, _ in messages] == [("odd", "json"), ("plain", "json")]
    mcap_value = json.loads(messages[0][2].data, parse_constant=pytest.fail)

    # the 2-D array: nested lists in the plain form, {"shape", "data"} in the Foxglove form, same numbers
    grid = mcap_value.pop("grid")
    assert np.array(grid["data"]).reshape(grid["shape"]).tolist() == cat_value.pop("grid") == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert cat_value == mcap_value
    assert cat_value["nan"] is None and cat_value["7"] == "int key" and cat_value["AQI="] == "bytes key"
    assert cat_value["nested"]["accel"] == [0.5, None, None]

    # mcl-info --json goes through the same rules (valid JSON, no NaN token)
    info = _cli("mcl-info", log, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout, parse_constant=pytest.fail)["topics"]


@pytest.mark.slow
def test_mcl_cat_on_payloads_nested_1020_deep_warns_per_record(tmp_path: Path) -> None:
    """Arrays, maps and numpy extensions nested 1,020 deep: one warning line each, the other records printed, no traceback."""
    from mcl.message import EXT_NDARRAY

    import msgpack

    deep = {
        "arrays": b"\x91" * 1020 + b"\xc0",
        "maps": b"\x81\xa1k" * 1020 + b"\xc0",
        "in_ext": msgpack.packb({"a": msgpack.ExtType(EXT_NDARRAY, b"\x93" + b"\x91\x92\xa1f" * 1020 + b"\xa3<f8\x91\x01" + msgpack.packb(bytes(8)))}),
    }
    records = [(i * 1_000_000, topic, payload) for i, (topic, payload) in enumerate(deep.items())]
    records.append((9_000_000, "ok", mcl.encode({"i": 1})))
    log = _log(tmp_path / "log", records)
    proc = _cli("mcl-cat", log)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 0
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 3 and all(w.startswith("mcl-cat: warning: record at ") for w in warnings), warnings
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["topic"] for line in lines] == ["arrays", "maps", "in_ext", "ok"]
    assert all("error" in line and "payload_base64" in line for line in lines[:3])
    assert base64.b64decode(lines[0]["payload_base64"]) == deep["arrays"]
    assert lines[3]["payload"] == {"i": 1}


def test_json_line_falls_back_when_conversion_recurses_too_deep(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A payload that decodes but cannot be converted (RecursionError) is one warning and a payload_base64 line."""
    from mcl.cli import cat

    def too_deep(value: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cat, "to_plain_json", too_deep)
    line = json.loads(cat.json_line(1_000_000, "t", mcl.encode([1])))
    assert line["error"] == "payload of 2 bytes cannot be written as JSON: RecursionError"
    assert capsys.readouterr().err == f"warning: record at 0.001000 s on topic 't': {line['error']}\n"
