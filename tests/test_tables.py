"""Tests of mcl.tables: Arrow batches, decoded columns, Parquet datasets (DuckDB, pandas, Polars), Dask."""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from conftest import wait_until

import mcl
import mcl.tables
from mcl.cli import export as export_cli
from mcl.exceptions import LogDamageWarning, LogError
from mcl.log.record import Record

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ORIGIN = 1_700_000_000_000_000_000
TOPICS = ["a", "b", "c/d"]


def _payload(i: int) -> bytes:
    return mcl.encode({"name": "Sample", "timestamp": 1.7e9 + i, "i": i, "x": i * 0.5, "label": f"n{i % 5}", "ok": i % 2 == 0})


def _make_log(path: Path, n: int = 2000, origin_ns: int = ORIGIN, payload=_payload, **options: object) -> list[Record]:
    """A native log of `n` records on three topics in chunks of about 4 KiB (many chunks)."""
    records = []
    opts = {"chunk_size": 4096, "flush_interval_ns": None, **options}
    with mcl.LogWriter(path, origin_ns=origin_ns, **opts) as writer:
        for i in range(n):
            record = Record(i * 1_000_000, TOPICS[i % 3], payload(i))
            writer.write_record(record)
            records.append(record)
    return records


def _rows(batches) -> list[tuple[int, str, bytes]]:
    table = pa.Table.from_batches(list(batches)) if not isinstance(batches, pa.Table) else batches
    return list(zip(table.column("time_ns").to_pylist(), table.column("topic").to_pylist(), table.column("payload").to_pylist()))


def _expected(reader: mcl.LogReader) -> list[tuple[int, str, bytes]]:
    return [(r.elapsed_ns + (reader.origin_ns or 0), r.topic, r.payload) for r in reader.iter_records()]


# -- batches ---------------------------------------------------------------------------


def test_batches_hold_every_record_with_absolute_times(tmp_path: Path) -> None:
    """iter_batches of a native log: same records as iter_records, time_ns = origin + elapsed, one batch per chunk."""
    _make_log(tmp_path / "log")
    with mcl.open_log(tmp_path / "log") as reader:
        batches = list(reader.iter_batches())
        assert len(batches) > 10  # one per chunk
        assert all(b.schema.field("topic").type == pa.dictionary(pa.int32(), pa.string()) for b in batches)
        assert batches[0].schema.field("payload").type == pa.binary()
        assert _rows(batches) == _expected(reader)
        table = reader.to_arrow()
        assert table.num_rows == 2000 and table.schema.metadata[b"mcl.origin_ns"] == str(ORIGIN).encode()
        assert table.column("time_ns")[0].as_py() == ORIGIN


@pytest.mark.parametrize(
    ("topics", "start", "end", "narrow"),
    [(["a"], None, None, None), (None, 0.3, 0.9, None), (["b", "c/d"], 0.25, 1.5, (500_000_000, 700_000_000)), (["zz"], None, None, None)],
)
def test_batches_apply_the_same_filters_as_records(tmp_path: Path, topics, start, end, narrow) -> None:
    """Topic and time filters (of open_log and of the call) select exactly the records iter_records selects."""
    _make_log(tmp_path / "log")
    with mcl.open_log(tmp_path / "log", topics=topics, start=start, end=end) as reader:
        lo, hi = narrow or (None, None)
        got = _rows(reader.iter_batches(lo, hi)) if narrow else _rows(reader.to_arrow())
        want = [(r.elapsed_ns + ORIGIN, r.topic, r.payload) for r in reader.iter_records(lo, hi)]
        assert got == want
        assert (len(want) > 0) == (topics != ["zz"])


def test_several_logs_merge_by_time_like_records(tmp_path: Path, sample_logs: Path) -> None:
    """Batches of several logs (native with another origin, MCL_LOG 1.0 through records) come in time order."""
    _make_log(tmp_path / "one", n=900)
    _make_log(tmp_path / "two", n=700, origin_ns=ORIGIN + 333_333)
    with mcl.open_log(tmp_path / "one", tmp_path / "two") as reader:
        rows = _rows(reader.iter_batches())
        assert sorted(rows) == sorted(_expected(reader))
        times = [t for t, _, _ in rows]
        assert times == sorted(times) and len(rows) == 1600
    with mcl.open_log(sample_logs / "mcl-v1-dataset") as reader:
        assert _rows(reader.to_arrow()) == _expected(reader)


def test_overlapping_chunks_come_out_in_time_order(tmp_path: Path) -> None:
    """Chunks whose time ranges overlap (records written out of order across flushes) read as records do."""
    with mcl.LogWriter(tmp_path / "log", origin_ns=ORIGIN, flush_interval_ns=None) as writer:
        for i in range(100):
            writer.write("a", _payload(i), i * 10)
        writer.flush()
        for i in range(100):
            writer.write("b", _payload(i), 500 + i * 10)
    with mcl.open_log(tmp_path / "log") as reader:
        assert _rows(reader.iter_batches()) == _expected(reader)


def test_a_damaged_chunk_is_skipped_with_the_same_warning_as_records(tmp_path: Path) -> None:
    """A flipped byte in one chunk body: batches lose that chunk only, with the LogDamageWarning record reading gives."""
    _make_log(tmp_path / "log")
    data = tmp_path / "log" / "data_0000.mcln"
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    data.write_bytes(bytes(blob))
    with mcl.open_log(tmp_path / "log") as reader:
        with pytest.warns(LogDamageWarning) as record_warnings:
            want = _expected(reader)
        with pytest.warns(LogDamageWarning) as batch_warnings:
            got = _rows(reader.iter_batches())
    assert got == want and 1500 < len(got) < 2000
    assert [str(w.message) for w in batch_warnings] == [str(w.message) for w in record_warnings]


# -- decoding --------------------------------------------------------------------------


def test_decode_gives_typed_columns(sample_logs: Path) -> None:
    """GpsFix of the sample log: numbers, strings, a 3x3 float64 array as nested fixed-size lists; time and elapsed."""
    with mcl.open_log(sample_logs / "vehicle") as reader:
        table = mcl.tables.decode(reader.to_arrow(), type="GpsFix")
        records = [r for r in reader if r.topic == "gps"]
        origin = reader.origin_ns
    assert table.num_rows == len(records) == 100
    schema = table.schema
    assert schema.field("time").type == pa.timestamp("ns", tz="UTC")
    assert schema.field("elapsed").type == pa.float64()
    assert schema.field("satellites").type == pa.int64() and schema.field("fix").type == pa.string()
    assert schema.field("covariance").type == pa.list_(pa.list_(pa.float64(), 3), 3)
    assert "name" not in schema.names
    first = mcl.message.unpack(records[7].payload)
    row = table.slice(7, 1).to_pylist()[0]
    assert row["latitude"] == first["latitude"] and row["fix"] == first["fix"]
    assert np.array_equal(np.array(row["covariance"]), first["covariance"])
    assert table.column("time")[7].value == origin + records[7].elapsed_ns
    assert math.isclose(row["elapsed"], records[7].elapsed_ns / 1e9)
    cams = mcl.tables.decode(reader_table := _vehicle(sample_logs), type="CameraFrame")
    assert cams.schema.field("histogram").type == pa.list_(pa.uint32(), 16) and reader_table.num_rows == 1400


def _vehicle(sample_logs: Path):
    with mcl.open_log(sample_logs / "vehicle") as reader:
        return reader.to_arrow()


def _table_of(payloads: list[bytes]):
    n = len(payloads)
    schema = pa.schema([("time_ns", pa.int64()), ("topic", pa.dictionary(pa.int32(), pa.string())), ("payload", pa.binary())])
    return pa.Table.from_arrays(
        [pa.array(range(n), pa.int64()), pa.array(["t"] * n).dictionary_encode(), pa.array(payloads, pa.binary())], schema=schema
    )


@pytest.mark.parametrize("n", [5, 200])  # below and above the sample of the fast path
def test_decode_widens_or_falls_back_never_drops(n: int) -> None:
    """Mixed types widen (int+float: double) or become JSON text; missing fields are null; later fields are kept."""
    payloads = []
    for i in range(n):
        value = {
            "name": "T",
            "num": i if i % 2 else i + 0.5,
            "mixed": "s" if i == n - 1 else i,
            "flag": i % 3 == 0,
            "nested": {"a": i, "b": {"c": f"x{i}"}},
            "f32": np.arange(4, dtype=np.float32) + i,
            "var": np.arange(i % 4, dtype=np.int16),
            "time": i,  # collides with the time column
        }
        if i == n - 1:
            value["late"] = 1.5
            del value["flag"]
        payloads.append(mcl.encode(value))
    payloads.append(mcl.encode({"name": "Other", "v": 1}))
    payloads.append(b"\xc1 not msgpack")
    payloads.append(mcl.encode([1, 2, 3]))
    table = mcl.tables.decode(_table_of(payloads), type="T")
    types = {f.name: f.type for f in table.schema}
    assert table.num_rows == n
    assert types["num"] == pa.float64()
    assert types["mixed"] == pa.string()
    assert table.column("mixed").to_pylist()[:2] == ["0", "1"] and table.column("mixed")[-1].as_py() == '"s"'
    assert types["flag"] == pa.bool_() and table.column("flag")[-1].as_py() is None
    assert types["nested"] == pa.struct([("a", pa.int64()), ("b", pa.struct([("c", pa.string())]))])
    assert types["f32"] == pa.list_(pa.float32(), 4)
    assert types["var"] == pa.list_(pa.int16())
    assert table.column("var")[3].as_py() == [0, 1, 2]
    assert table.column("time_").to_pylist() == list(range(n))
    assert table.column("late").null_count == n - 1 and table.column("late")[-1].as_py() == 1.5
    everything = mcl.tables.decode_all(_table_of(payloads), raw=True)
    assert set(everything) == {"T", "Other", None}
    assert everything[None].column("payload").to_pylist() == payloads[-2:]


def test_decode_without_the_type_is_an_empty_table() -> None:
    """Asking for a type the data does not hold gives zero rows with the time, elapsed and topic columns."""
    table = mcl.tables.decode(_table_of([_payload(1)]), type="Nope")
    assert table.num_rows == 0 and table.column_names == ["time", "elapsed", "topic"]


# -- Parquet -----------------------------------------------------------------------------


def test_parquet_dataset_matches_mcl_in_duckdb_pandas_and_polars(tmp_path: Path, sample_logs: Path) -> None:
    """mcl-export --parquet of two logs: DuckDB per-topic counts and values equal mcl's; pandas and Polars open it."""
    duckdb = pytest.importorskip("duckdb")
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    _make_log(tmp_path / "mine", n=1500, payload=lambda i: _payload(i) if i % 10 else msgpack.packb(i))
    out = tmp_path / "ds"
    logs = [str(sample_logs / "vehicle"), str(tmp_path / "mine")]
    assert export_cli.main([*logs, "--parquet", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["raw", "type=CameraFrame", "type=GpsFix", "type=ImuSample", "type=Sample"]
    glob = f"read_parquet('{out}/**/*.parquet', hive_partitioning = true)"
    counts = dict(((t, lg), n) for t, lg, n in duckdb.sql(f"SELECT topic, log, count(*) FROM {glob} GROUP BY ALL").fetchall())
    with mcl.open_log(*logs) as reader:
        mine = {}
        for label, source in zip(logs, reader.sources):
            for r in source.iter_records():
                mine[(r.topic, label)] = mine.get((r.topic, label), 0) + 1
    assert counts == mine
    # Values: the mean speed per topic and every latitude, as mcl decodes them.
    gps = mcl.tables.decode(_vehicle(sample_logs), type="GpsFix")
    lat = duckdb.sql(f"SELECT latitude FROM read_parquet('{out}/type=GpsFix/*.parquet') ORDER BY time").fetchall()
    assert [x for (x,) in lat] == gps.column("latitude").to_pylist()
    assert duckdb.sql(f"SELECT count(*) FROM {glob} WHERE type = 'raw'").fetchall() == [(150,)]
    raw_rows = duckdb.sql(f"SELECT payload FROM read_parquet('{out}/raw/*/*.parquet') ORDER BY time").fetchall()
    assert [bytes(p) for (p,) in raw_rows] == [msgpack.packb(i) for i in range(0, 1500, 10)]
    whole = pd.read_parquet(out)  # every type, hive key included, no options
    assert len(whole) == 2900 and whole.groupby("type", observed=True).size().to_dict() == {
        "CameraFrame": 300, "GpsFix": 100, "ImuSample": 1000, "Sample": 1350, "raw": 150
    }
    frame = pd.read_parquet(out / "type=Sample")
    assert len(frame) == 1350 and set(frame["log"]) == {str(tmp_path / "mine")}
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    polars_frame = pl.read_parquet(out / "type=ImuSample" / "*.parquet")
    assert polars_frame.height == 1000 and polars_frame["temperature"].mean() == pytest.approx(_mean_temperature(sample_logs))


def _mean_temperature(sample_logs: Path) -> float:
    imu = mcl.tables.decode(_vehicle(sample_logs), type="ImuSample")
    return float(np.mean(imu.column("temperature").to_numpy()))


def test_parquet_filters_and_one_schema_per_type(tmp_path: Path) -> None:
    """--topics / --start / --end select as open_log does; a field that changes type between row groups is unified."""
    def payload(i: int) -> bytes:
        # "v" is null, then int, then float: row groups of different schemas, one schema at the end.
        return mcl.encode({"name": "Sample", "v": None if i < 300 else (i if i < 600 else i + 0.5), "i": i})

    _make_log(tmp_path / "log", n=900, payload=payload)
    result = mcl.tables.export_parquet(
        tmp_path / "log", tmp_path / "ds", options=mcl.tables.ParquetOptions(row_group_rows=300)
    )
    assert result.rows == {"Sample": 900}
    parts = sorted((tmp_path / "ds" / "type=Sample").glob("*.parquet"))
    assert len(parts) >= 2 and len({str(pq.read_schema(p)) for p in parts}) == 1
    assert pq.read_schema(parts[0]).field("v").type == pa.float64()
    table = pq.read_table(tmp_path / "ds" / "type=Sample").sort_by("i")
    assert table.column("v").to_pylist()[299:302] == [None, 300.0, 301.0]
    assert export_cli.main([str(tmp_path / "log"), "--parquet", str(tmp_path / "f"), "--topics", "a", "--start", "0.3", "--end", "0.6"]) == 0
    got = pq.read_table(tmp_path / "f" / "type=Sample")
    with mcl.open_log(tmp_path / "log", topics=["a"], start=0.3, end=0.6) as reader:
        assert sorted(got.column("i").to_pylist()) == [mcl.message.unpack(r.payload)["i"] for r in reader]


def test_a_failed_export_leaves_no_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An export that fails half-way leaves neither OUTDIR nor its temporary directory; a non-empty OUTDIR is refused."""
    _make_log(tmp_path / "log")
    calls = []

    def progress(n: int) -> None:
        calls.append(n)
        if len(calls) == 5:
            raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="disk full"):
        mcl.tables.export_parquet(tmp_path / "log", tmp_path / "ds", options=mcl.tables.ParquetOptions(row_group_rows=100), progress=progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    assert export_cli.main([str(tmp_path / "log"), "--parquet", str(tmp_path / "full")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mcl-export: error: ") and "not an empty directory" in err and len(err.splitlines()) == 1
    assert (tmp_path / "full" / "x").read_text() == "keep"
    with pytest.raises(LogError):
        mcl.tables.export_parquet(tmp_path / "log", tmp_path / "no" / "such" / "dir")


def test_csv_header_and_argument_errors(reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--header adds one row of field names before the original rows; --header without --csv exits 2."""
    log = str(reference_dir / "dataset" / "UnitTestMessageA.log")
    assert export_cli.main([log, "--fields", "name,data,timestamp", "--csv", str(tmp_path / "h.csv"), "--header"]) == 0
    original = (reference_dir / "dataset" / "UnitTestMessageA.csv").read_bytes()
    assert (tmp_path / "h.csv").read_bytes() == b"name,data,timestamp\r\n" + original
    assert export_cli.main([log, "--fields", "data", "--npy", str(tmp_path / "x.npy"), "--header"]) == 2
    assert export_cli.main([log, "--csv", str(tmp_path / "y.csv")]) == 2
    assert "--fields is required" in capsys.readouterr().err


# -- Dask ---------------------------------------------------------------------------------


def test_read_dask_splits_a_log_into_chunk_ranges(tmp_path: Path) -> None:
    """One log of many chunks becomes several partitions; the frame equals the decoded to_arrow table."""
    pytest.importorskip("dask.dataframe")
    _make_log(tmp_path / "log", n=3000)
    frame = mcl.tables.read_dask(str(tmp_path / "lo*"), type="Sample", partition_records=500)
    assert frame.npartitions >= 5
    with mcl.open_log(tmp_path / "log") as reader:
        want = mcl.tables.decode(reader.to_arrow(), type="Sample")
    got = frame.compute(scheduler="sync")
    assert got["i"].tolist() == want.column("i").to_pylist()
    assert list(got.columns) == [*want.column_names, "log"]


@pytest.mark.slow
def test_dask_cluster_groupby_over_twenty_logs_equals_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A LocalCluster of 2 worker processes over 20 logs: groupby per topic equals the single-process result,
    and the client process reads no chunk (only indexes)."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("pandas")
    paths = []
    for k in range(20):
        path = tmp_path / "fleet" / f"log{k:02d}"
        _make_log(path, n=300 + 37 * k, origin_ns=ORIGIN + k * 1_000_000_000)
        paths.append(path)
    tables = []
    for path in paths:
        with mcl.open_log(path) as reader:
            tables.append(mcl.tables.decode(reader.to_arrow(), type="Sample"))
    single = pa.concat_tables(tables).to_pandas().groupby("topic").agg(n=("i", "size"), total=("x", "sum"), last=("i", "max"))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster, distributed.Client(cluster) as client:

        def no_chunk_in_the_client(*args: object, **kwargs: object) -> None:
            raise AssertionError("a chunk was read in the client process")

        monkeypatch.setattr(mcl.log.native.NativeSource, "_read_chunk", no_chunk_in_the_client)
        frame = mcl.tables.read_dask(str(tmp_path / "fleet" / "*"), type="Sample", topics=["a", "b", "c/d"], partition_records=200)
        assert frame.npartitions > 20
        result = frame.groupby("topic").agg(n=("i", "size"), total=("x", "sum"), last=("i", "max")).compute()
        workers = client.run(os.getpid)
    assert len(workers) == 2 and os.getpid() not in workers.values()
    result = result.sort_index()
    assert result.index.tolist() == single.index.tolist() == TOPICS
    assert result["n"].astype(int).tolist() == single["n"].tolist()
    assert result["last"].astype(int).tolist() == single["last"].tolist()
    assert np.allclose(result["total"].astype(float), single["total"])


def test_read_dask_raw_columns_and_missing_patterns(tmp_path: Path, sample_logs: Path) -> None:
    """type=None gives time, elapsed, topic, payload and log for every record; a glob matching nothing is LogNotFound."""
    pytest.importorskip("dask.dataframe")
    frame = mcl.tables.read_dask([sample_logs / "vehicle", str(sample_logs / "mcl-v1-*")])
    assert list(frame.columns) == ["time", "elapsed", "topic", "payload", "log"]
    counts = frame.groupby(["log", "topic"]).size().compute(scheduler="sync").to_dict()
    assert counts == {
        (str(sample_logs / "vehicle"), "camera/front"): 300,
        (str(sample_logs / "vehicle"), "gps"): 100,
        (str(sample_logs / "vehicle"), "imu"): 1000,
        (str(sample_logs / "mcl-v1-dataset"), ""): 30,
    }
    with pytest.raises(mcl.LogNotFound, match="no log matches"):
        mcl.tables.read_dask(str(tmp_path / "nothing-*"))


def test_a_missing_optional_dependency_is_one_mcl_error() -> None:
    """mcl.tables names the extra to install when a package it needs is missing."""
    from mcl.tables import require

    with pytest.raises(mcl.MclError, match=r"needs the 'no_such_module_x' package: pip install mcl\[tables\]"):
        require("no_such_module_x.sub", "this export")


@pytest.mark.slow
def test_sigterm_during_an_export_leaves_nothing(tmp_path: Path) -> None:
    """mcl-export --parquet killed with SIGTERM half-way exits 143 and leaves neither OUTDIR nor its temporary directory."""
    import signal
    import subprocess
    import sys

    _make_log(tmp_path / "log", n=200_000, chunk_size=1 << 16)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcl.cli.export", str(tmp_path / "log"), "--parquet", str(tmp_path / "ds")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        def started() -> bool:
            assert proc.poll() is None, "the export ended before it started writing"
            return any(p.name.startswith(".ds.partial-") for p in tmp_path.iterdir())

        wait_until(started, 60, 0.01, "the export did not start")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert b"Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]


def test_every_exported_name_resolves() -> None:
    """Each name in mcl.tables.__all__ is importable from mcl.tables; LogReader has the columnar methods."""
    for name in mcl.tables.__all__:
        assert getattr(mcl.tables, name) is not None
    assert callable(mcl.LogReader.iter_batches) and callable(mcl.LogReader.to_arrow)
    with pytest.raises(AttributeError):
        mcl.tables.no_such_name  # noqa: B018


def test_decode_keeps_fields_of_maps_of_equal_size_but_other_keys() -> None:
    """Messages with as many fields as the first but other names: every field is a column (nulls elsewhere)."""
    payloads = [mcl.encode({"name": "T", "x": i, ("y" if i % 2 else "z"): i * 1.0, "w": None}) for i in range(200)]
    table = mcl.tables.decode(_table_of(payloads), type="T")
    assert table.column_names == ["time", "elapsed", "topic", "x", "z", "w", "y"]
    assert table.column("y").to_pylist()[:4] == [None, 1.0, None, 3.0]
    assert table.column("z").to_pylist()[:4] == [0.0, None, 2.0, None]
    assert table.column("w").null_count == 200


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.integers(0, 300),
    st.integers(1 << 63, (1 << 64) - 1),  # over int64: the msgpack path decides
    st.floats(allow_nan=False),
    st.floats(width=32, allow_nan=False).map(np.float32),
    st.text(max_size=40),
)
_values = st.one_of(_scalars, st.binary(max_size=3), st.lists(st.integers(0, 9), max_size=2), st.dictionaries(st.sampled_from("ab"), st.integers(0, 9), max_size=2))
_maps = st.fixed_dictionaries(
    {"name": st.sampled_from(["T", "U"])},
    optional={key: _scalars for key in ["x", "y", "é", "a long key name of 31 bytes...", "time"]},
)


_uniform = st.fixed_dictionaries(
    {
        "name": st.just("T"),
        "i": st.one_of(st.integers(-(1 << 63), (1 << 63) - 1), st.none()),
        "f": st.one_of(st.floats(allow_nan=False), st.integers(-5, 5)),
        "s": st.text(max_size=300),
        "b": st.one_of(st.booleans(), st.none()),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.one_of(
        st.lists(st.one_of(_maps, _maps.map(lambda m: {**m, "x": 1.5}), st.builds(lambda m, v: {**m, "z": v}, _maps, _values)), min_size=1, max_size=40),
        st.lists(_uniform, min_size=1, max_size=40),  # one key sequence: mostly the numpy parser
    ),
    split=st.integers(0, 40),
    junk=st.booleans(),
)
def test_numpy_parser_gives_the_columns_of_the_msgpack_path(rows, split, junk) -> None:
    """decode_all with the numpy parser of flat maps equals decode_all through msgpack, whatever the values."""
    from mcl.tables import columns

    payloads = [msgpack.packb({k: (float(v) if isinstance(v, np.float32) else v) for k, v in r.items()}, use_single_float=False) for r in rows]
    payloads = [mcl.encode(r) if any(isinstance(v, np.float32) for v in r.values()) else p for r, p in zip(rows, payloads)]
    if junk:
        payloads.append(msgpack.packb([1, 2]))
    table = _table_of(payloads)
    batches = table.slice(0, split).to_batches() + table.slice(split).to_batches()
    fast = mcl.tables.decode_all(batches, raw=True)
    columns.FAST_PATH = False
    try:
        slow = mcl.tables.decode_all(batches, raw=True)
    finally:
        columns.FAST_PATH = True
    assert fast.keys() == slow.keys()
    for name in fast:
        assert fast[name].schema == slow[name].schema, name
        assert fast[name].to_pylist() == slow[name].to_pylist(), name


def test_parquet_int_too_large_for_float_falls_back_to_json(tmp_path: Path) -> None:
    """A field int64 (beyond 2**53) in early row groups and float later is not rounded: it becomes JSON text."""
    big = (1 << 60) + 1

    def payload(i: int) -> bytes:
        return mcl.encode({"name": "Sample", "v": big + i if i < 450 else i + 0.5, "i": i})

    _make_log(tmp_path / "log", n=900, payload=payload)
    mcl.tables.export_parquet(tmp_path / "log", tmp_path / "ds", options=mcl.tables.ParquetOptions(row_group_rows=300))
    table = pq.read_table(tmp_path / "ds" / "type=Sample").sort_by("i")
    assert table.schema.field("v").type == pa.string()
    values = table.column("v").to_pylist()
    assert values[0] == str(big) and values[449] == str(big + 449) and values[450] == "450.5"


def _deep_map(levels: int) -> bytes:
    """A message M whose field x nests `levels` maps (msgpack by hand: mcl.encode stops at 512 levels)."""
    return b"\x82\xa4name\xa1M\xa1x" + b"\x81\xa1a" * levels + b"\x01"


def _deep_list(levels: int) -> bytes:
    return b"\x82\xa4name\xa1M\xa1x" + b"\x91" * levels + b"\x01"


@pytest.mark.parametrize("levels", [40, 600, 1020])
def test_deep_nesting_is_bounded_and_the_dataset_stays_readable(tmp_path: Path, levels: int) -> None:
    """Maps / lists nested deeper than MAX_NESTING: JSON text below the bound, no RecursionError, Parquet readable."""
    import json

    from mcl.tables.columns import MAX_NESTING

    for make in (_deep_map, _deep_list):
        table = mcl.tables.decode(_table_of([make(levels)] * 3), type="M")
        column = table.column("x")
        depth, arrow_type = 0, column.type
        while pa.types.is_struct(arrow_type) or pa.types.is_list(arrow_type):
            depth += 1
            arrow_type = arrow_type.field(0).type if pa.types.is_struct(arrow_type) else arrow_type.value_type
        assert depth <= MAX_NESTING and arrow_type == pa.string()
        # the JSON text at the bottom holds the rest of the value: nothing dropped
        leaf = column.to_pylist()[0]
        for _ in range(depth):
            leaf = leaf["a"] if isinstance(leaf, dict) else leaf[0]
        if levels < 900:  # json.loads itself recurses
            rest = json.loads(leaf)
            for _ in range(levels - depth):
                rest = rest["a"] if make is _deep_map else rest[0]
            assert rest == 1
        else:
            assert leaf.count("[") + leaf.count("{") == levels - depth and leaf.strip("[]{}\"a: ") == "1"
        log = tmp_path / f"{make.__name__}_{levels}"
        with mcl.LogWriter(log, origin_ns=ORIGIN) as writer:
            writer.write_record(Record(0, "t", make(levels)))
        out = tmp_path / f"{log.name}.parquet"
        assert export_cli.main([str(log), "--parquet", str(out)]) == 0
        assert pq.read_table(next(out.rglob("*.parquet"))).num_rows == 1  # pyarrow refuses > 100 Parquet levels


def test_a_32_dimensional_numpy_array_keeps_its_fixed_size_lists() -> None:
    """numpy's deepest arrays (32 dimensions) are within the bound: fixed-size lists, not JSON."""
    shape = (1,) * 31 + (2,)
    table = mcl.tables.decode(_table_of([mcl.encode({"name": "M", "x": np.zeros(shape)})] * 2), type="M")
    assert pa.types.is_fixed_size_list(table.column("x").type)


def test_json_fallback_text_is_valid_json_with_the_shared_rules() -> None:
    """The JSON columns follow mcl.jsonform: NaN / infinity null (strict JSON), bytes base64, bytes keys base64."""
    import json

    def strict(text: str) -> object:
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))

    payloads = [mcl.encode({"name": "M", "x": math.nan}), mcl.encode({"name": "M", "x": "s"}),
                mcl.encode({"name": "M", "x": [math.inf, b"\x00"]}), mcl.encode({"name": "M", "x": {b"k": 1, "j": 2}})]
    column = mcl.tables.decode(_table_of(payloads), type="M").column("x").to_pylist()
    assert [strict(text) for text in column] == [None, "s", [None, "AA=="], {"aw==": 1, "j": 2}]
