"""RecordOptions: the one input of Recorder, validated once, built equally by every form."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import mcl
from mcl.exceptions import ArgumentError, MclError, RecordError
from mcl.recorder import Recorder, RecordOptions


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"split_size": 0}, "split_size"),
        ({"split_duration_ns": -5}, "split_duration_ns"),
        ({"max_files": 0}, "max_files"),
        ({"flush_interval_ns": 0}, "flush_interval_ns"),
        ({"duration_ns": 1.5}, "duration_ns"),
        ({"count": 0}, "count"),
        ({"hwm": True}, "hwm"),
        ({"compression": "lz4"}, "compression"),
        ({"topics": (1,)}, "topics"),
        ({"metadata": (("k", 2),)}, "metadata"),
    ],
)
def test_bad_values_raise_naming_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ArgumentError, match=named) as info:
        RecordOptions(**fields)  # type: ignore[arg-type]
    assert isinstance(info.value, MclError) and isinstance(info.value, ValueError)
    # replace() re-runs the one validation
    with pytest.raises(ArgumentError, match=named):
        dataclasses.replace(RecordOptions(), **fields)


def test_features_a_format_lacks_are_refused_in_the_options() -> None:
    with pytest.raises(RecordError, match=r"rotation \(max_files\).*mcl1.*native"):
        RecordOptions(format="mcl1", max_files=2)
    with pytest.raises(RecordError, match="compression.*mcl1"):
        RecordOptions(format="mcl1", compression="zstd")
    with pytest.raises(MclError, match="unknown log format"):
        RecordOptions(format="nope")
    assert RecordOptions(format="native", max_files=2, compression="zstd").max_files == 2


def test_the_options_and_the_keyword_forms_build_equal_options(tmp_path: Path) -> None:
    keep = str.isalpha
    explicit = RecordOptions(
        bus="tcp://127.0.0.1:1", topics=("imu", "gps"), exact=True, topic_filter=keep, metadata=(("a", "1"),),
        split_size=1000, split_duration_ns=2_000_000_000, flush_interval_ns=50_000_000, duration_ns=3_000_000_000,
        count=7, hwm=10,
    )  # fmt: skip
    by_keywords = Recorder(
        tmp_path / "k", "tcp://127.0.0.1:1", ["imu", "gps"], exact=True, topic_filter=keep, metadata={"a": "1"},
        split_size=1000, split_duration_ns=2_000_000_000, flush_interval_ns=50_000_000, duration_ns=3_000_000_000,
        count=7, hwm=10,
    )  # fmt: skip
    by_options = Recorder(tmp_path / "o", explicit)
    seconds = RecordOptions.from_seconds(
        bus="tcp://127.0.0.1:1", topics=["imu", "gps"], exact=True, topic_filter=keep, metadata={"a": "1"},
        split_size=1000, split_duration=2, flush_interval=0.05, duration=3, count=7, hwm=10,
    )  # fmt: skip
    assert by_keywords.options == explicit == by_options.options == seconds
    assert by_options.options is explicit
    assert by_options.topics == ["imu", "gps"] and by_options.metadata["a"] == "1" and "host" in by_options.metadata
    assert Recorder(None, topics="imu").options.topics == ("imu",)
    assert not (tmp_path / "k").exists()  # nothing is created before start()


def test_options_and_keywords_together_or_unknown_keywords_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="count"):
        Recorder(tmp_path, RecordOptions(), count=3)
    with pytest.raises(TypeError, match="bogus"):
        Recorder(tmp_path, bogus=1)
    with pytest.raises(TypeError, match="bus given twice"):
        Recorder(tmp_path, "tcp://127.0.0.1:1", bus="tcp://127.0.0.1:2")
    with pytest.raises(ArgumentError, match="flush_interval"):
        RecordOptions.from_seconds(flush_interval=-1)


def test_the_old_module_name_is_a_deprecated_alias() -> None:
    import importlib
    import sys

    import mcl.recorder

    sys.modules.pop("mcl.record", None)
    with pytest.warns(DeprecationWarning, match="mcl.recorder"):
        old = importlib.import_module("mcl.record")
    assert old.Recorder is mcl.recorder.Recorder and old.RecordOptions is mcl.recorder.RecordOptions
    from mcl.log.formats import LogWriter
    from mcl.log.reader import LogWriter as OldLogWriter

    assert OldLogWriter is LogWriter and mcl.LogWriter is LogWriter


def test_ns_per_s_is_the_only_spelling_of_the_constant() -> None:
    """mcl.timeutil owns NS_PER_S: no other module of the package spells 10**9 (as 1_000_000_000, 1e9, ...)."""
    import re

    package = Path(mcl.__file__).parent
    spelled = re.compile(r"(?<![\w.])(1_000_000_000|1000000000|1e9|1E9|1e\+9|10\s*\*\*\s*9|1_000_000_000\.0)(?![\w.])")
    allowed = {package / "timeutil.py"}
    found = [
        f"{path.relative_to(package)}:{n}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path not in allowed
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if spelled.search(line.split("#", 1)[0])
    ]
    assert found == []
    from mcl.timeutil import NS_PER_S

    assert NS_PER_S == 10**9 and isinstance(NS_PER_S, int)
    assert "NS_PER_S = 1_000_000_000" in (package / "timeutil.py").read_text(encoding="utf-8")
