"""Hypothesis strategies shared by the test suite: topics, payloads, times, records, messages."""

from __future__ import annotations

import json
import string
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mcl.log.record import Record
from mcl.message import GenericMessage, encode

__all__ = [
    "topics",
    "mcl1_topics",
    "type_names",
    "field_names",
    "plain_values",
    "numpy_arrays",
    "field_values",
    "messages",
    "payloads",
    "elapsed_ns",
    "records",
    "MCL1_RESOLUTION_NS",
]

# MCL_LOG 1.0 writes elapsed times with %1.5f: 10 µs resolution.
MCL1_RESOLUTION_NS = 10_000


def topics() -> st.SearchStrategy[str]:
    """Any topic the native format and the bus accept: short unicode strings, '' included."""
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def mcl1_topics() -> st.SearchStrategy[str]:
    """Topics MCL_LOG 1.0 can store: printable ASCII without white space ('' included)."""
    return st.text(st.sampled_from(string.ascii_letters + string.digits + string.punctuation), max_size=16)


def type_names() -> st.SearchStrategy[str]:
    """Message type names: identifiers, often with underscores and a trailing ``_NNN``."""
    word = st.text(st.sampled_from(string.ascii_letters + string.digits), min_size=1, max_size=8)
    return st.one_of(
        st.from_regex(r"[A-Z][A-Za-z0-9]{0,10}", fullmatch=True),
        st.builds(lambda a, b: f"{a}_{b}", word, word),
        st.builds(lambda a, n: f"{a}_{n:03d}", word, st.integers(0, 999)),
    )


def field_names() -> st.SearchStrategy[str]:
    """Field names a message type may declare (identifiers, not reserved)."""
    reserved = {"name", "timestamp", "fields", "mandatory", "type_name", "keys", "get", "encode", "to_dict"}
    return st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda n: n not in reserved)


_INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_FLOATS = st.floats(allow_nan=False)  # NaN != NaN would make plain values unequal to themselves


def plain_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """msgpack values without numpy: None, bools, 64-bit ints, floats, str, bytes, lists, str-keyed maps."""
    scalars = st.one_of(st.none(), st.booleans(), _INT64, _FLOATS, st.text(max_size=20), st.binary(max_size=20))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.text(max_size=8), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


_DTYPES = st.one_of(
    hnp.integer_dtypes(endianness="="),
    hnp.unsigned_integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="=", sizes=(32, 64)),
    hnp.complex_number_dtypes(endianness="="),
    hnp.boolean_dtypes(),
    st.sampled_from([np.dtype(">f8"), np.dtype("<i4"), np.dtype("S4")]),
)


def numpy_arrays() -> st.SearchStrategy[np.ndarray]:
    """numpy arrays of numeric, bool, byte-string and non-native-endian dtypes, 0 to 3 dimensions."""
    return hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


def field_values() -> st.SearchStrategy[Any]:
    """Values a message field may hold: plain msgpack values or numpy arrays."""
    return st.one_of(plain_values(max_leaves=5), numpy_arrays())


def messages() -> st.SearchStrategy[GenericMessage]:
    """Messages with random type names and fields, numpy arrays included."""
    return st.builds(
        lambda name, fields, timestamp: GenericMessage(name, fields, timestamp=timestamp),
        type_names(),
        st.dictionaries(field_names(), field_values(), max_size=5),
        _FLOATS,
    )


def payloads() -> st.SearchStrategy[bytes]:
    """Payload bytes: encoded messages, encoded raw values, or arbitrary bytes."""
    return st.one_of(
        messages().map(encode),
        plain_values().map(encode),
        st.binary(max_size=64),
    )


def elapsed_ns(resolution_ns: int = 1, max_s: int = 100_000) -> st.SearchStrategy[int]:
    """Elapsed times in ns, multiples of `resolution_ns`, from 0 to `max_s` seconds."""
    return st.integers(0, max_s * 1_000_000_000 // resolution_ns).map(lambda n: n * resolution_ns)


def records(
    topic: st.SearchStrategy[str] | None = None,
    payload: st.SearchStrategy[bytes] | None = None,
    resolution_ns: int = 1,
    max_size: int = 30,
) -> st.SearchStrategy[list[Record]]:
    """Lists of records in non-decreasing time order (what a recorder writes)."""
    one = st.tuples(
        elapsed_ns(resolution_ns),
        topic if topic is not None else topics(),
        payload if payload is not None else payloads(),
    )
    return st.lists(one, max_size=max_size).map(
        lambda rows: [Record(t, tp, p) for t, tp, p in sorted(rows, key=lambda r: r[0])]
    )


def same_value(a: Any, b: Any) -> bool:
    """Equal *and* of the same types all the way down (1, 1.0 and True differ; NaN equals NaN).

    ``==`` lets a decoder turn an int into a float or a bool into an int
    unnoticed; round-trip tests use this instead.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return (a != a and b != b) or a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if hasattr(a, "to_dict"):  # messages: compare their payload maps
        return same_value(a.to_dict(), b.to_dict())
    return bool(a == b)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """JSON values as a hostile client sends them: huge integers, NaN, infinities, deep nesting, odd strings."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([1e300, -1e300, 1e-300, 0.0, -0.0, 2.0**63, 9.3e9, 4.9, 0.5]),
        st.text(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
        max_leaves=max_leaves,
    )


CONTROL_COMMANDS = ("status", "pause", "resume", "start", "stop", "step", "seek", "speed", "quit")


def control_requests() -> st.SearchStrategy[list[bytes]]:
    """The frames of one request to a replay control endpoint: JSON objects (mostly), any bytes, several frames."""
    objects = st.fixed_dictionaries(
        {"cmd": st.one_of(st.sampled_from(CONTROL_COMMANDS), json_values(2))},
        optional={"time": json_values(), "speed": json_values(), "extra": json_values()},
    )
    one = st.one_of(
        objects.map(lambda request: json.dumps(request).encode()),
        json_values().map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=64),
        st.sampled_from([b"", b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b'{"cmd": "seek", "time": 1e400}']),
    )
    return st.one_of(one.map(lambda frame: [frame]), st.lists(one, min_size=2, max_size=3))
