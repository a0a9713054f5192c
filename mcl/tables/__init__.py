"""Logs as tables: Arrow record batches, decoded columns, Parquet datasets, Dask data frames.

Needs the optional extra ``mcl[tables]`` (pyarrow; dask and distributed for
:func:`read_dask`)::

    with mcl.open_log("sample_logs/vehicle") as log:
        raw = log.to_arrow()                        # time_ns, topic, payload
    imu = mcl.tables.decode(raw, type="ImuSample")  # time, elapsed, topic, accel, gyro, ...
    frame = mcl.tables.read_dask(["logs/*"], type="GpsFix")   # dask.dataframe, lazy

See the user guide, section "Logs as tables", for the column types.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "iter_batches",
    "to_arrow",
    "decode",
    "decode_all",
    "export_parquet",
    "ParquetExport",
    "ParquetOptions",
    "read_dask",
    "ORIGIN_KEY",
    "RAW_DIR",
]

_EXPORTS = {
    "iter_batches": "mcl.tables.batches",
    "to_arrow": "mcl.tables.batches",
    "ORIGIN_KEY": "mcl.tables.batches",
    "decode": "mcl.tables.columns",
    "decode_all": "mcl.tables.columns",
    "export_parquet": "mcl.tables.parquet",
    "ParquetExport": "mcl.tables.parquet",
    "ParquetOptions": "mcl.tables.parquet",
    "RAW_DIR": "mcl.tables.parquet",
    "read_dask": "mcl.tables.frames",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcl.tables' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def require(module: str, what: str = "this") -> Any:
    """Import an optional dependency of mcl.tables, or raise MclError saying how to install it."""
    from mcl.exceptions import MclError

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MclError(f"{what} needs the '{module.split('.')[0]}' package: pip install mcl[tables]") from None
