"""Columns of flat msgpack maps parsed by numpy, all payloads of a batch at once.

The fast path of :func:`mcl.tables.decode` for messages whose fields are
scalars (nil, booleans, integers, floats, strings) under short string keys,
the usual shape of a numeric message type. The payloads are parsed entry by
entry over every row together (one numpy gather per step), so no Python
object is made per record. Anything else (numpy arrays, nested maps, lists,
bytes, a value mix the column rules would turn into JSON, a payload that is
not exactly one such map) returns None and the caller unpacks the batch with
msgpack instead: both paths give the same columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["flat_columns"]

_NIL, _BOOL, _INT, _FLOAT, _STR = 1, 2, 3, 4, 5
_KIND = np.zeros(256, dtype=np.int8)  # msgpack first byte -> kind (0: not handled here)
_HEAD = np.zeros(256, dtype=np.int64)  # bytes before a string's data / bytes of a fixed-size value, type byte included
for _b in range(0x00, 0x80):  # positive fixint
    _KIND[_b], _HEAD[_b] = _INT, 1
for _b in range(0xE0, 0x100):  # negative fixint
    _KIND[_b], _HEAD[_b] = _INT, 1
for _b in range(0xA0, 0xC0):  # fixstr
    _KIND[_b], _HEAD[_b] = _STR, 1
_KIND[0xC0], _HEAD[0xC0] = _NIL, 1
_KIND[0xC2], _HEAD[0xC2] = _BOOL, 1
_KIND[0xC3], _HEAD[0xC3] = _BOOL, 1
for _b, _size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8), (0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
    _KIND[_b], _HEAD[_b] = _INT, 1 + _size
_KIND[0xCA], _HEAD[0xCA] = _FLOAT, 5
_KIND[0xCB], _HEAD[0xCB] = _FLOAT, 9
for _b, _size in ((0xD9, 1), (0xDA, 2), (0xDB, 4)):  # str8 / str16 / str32
    _KIND[_b], _HEAD[_b] = _STR, 1 + _size


class _Reader:
    """Clipped gathers over the data buffer: a position past the end reads the last byte, and the
    final check (every payload consumed exactly) rejects any parse that went there."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def byte(self, pos: np.ndarray) -> np.ndarray:
        return np.take(self.data, pos, mode="clip").astype(np.int64)

    def big_endian(self, pos: np.ndarray, width: int) -> np.ndarray:
        """Unsigned big-endian integers of `width` bytes at `pos`, as uint64."""
        value = np.zeros(len(pos), dtype=np.uint64)
        for i in range(width):
            value = (value << np.uint64(8)) | self.byte(pos + i).astype(np.uint64)
        return value


def flat_columns(payloads: Any) -> dict[str, tuple[np.ndarray, list[str], list[Any]]] | None:
    """{type name: (row numbers, field names, Arrow arrays)} of a binary array of payloads, or None.

    Every payload must be a map of at most 15 entries with fixstr keys, a
    string ``name`` and scalar values; rows of one name must have the same
    keys in the same order, and each field one kind (ints and floats together
    widen to float64; nil is null).
    """
    import pyarrow as pa

    n = len(payloads)
    if n == 0 or payloads.null_count:
        return None
    buffers = payloads.buffers()
    if buffers[2] is None:
        return None
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=n + 1, offset=payloads.offset * 4).astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    end = offsets[1:]
    pos = offsets[:-1].copy()
    if (end <= pos).any():
        return None
    rd = _Reader(data)
    head = rd.byte(pos)
    if not ((head & 0xF0) == 0x80).all():  # fixmap
        return None
    count = head & 0x0F
    pos += 1
    width = int(count.max())
    key_ids = np.full((n, width), -1, dtype=np.int64)
    value_at = np.zeros((n, width), dtype=np.int64)  # position of each value's type byte
    key_names: list[str] = []
    key_index: dict[bytes, int] = {}
    for k in range(width):
        rows = np.flatnonzero(count > k) if (count <= k).any() else np.arange(n)
        p = pos[rows]
        kb = rd.byte(p)
        if not ((kb & 0xE0) == 0xA0).all():  # fixstr keys only
            return None
        klen = kb & 0x1F
        ids = _key_ids(rd, p + 1, klen, key_names, key_index)
        if ids is None:
            return None
        key_ids[rows, k] = ids
        p = p + 1 + klen
        vb = rd.byte(p)
        kind = _KIND[vb]
        if not kind.all():
            return None
        value_at[rows, k] = p
        p = p + _HEAD[vb] + _string_lengths(rd, p, vb)
        pos[rows] = p
    if (pos != end).any():
        return None
    return _columns(pa, rd, key_ids, value_at, count, key_names)


def _key_ids(rd: _Reader, start: np.ndarray, length: np.ndarray, names: list[str], index: dict[bytes, int]) -> np.ndarray | None:
    """The id of each key (bytes at start[i], length[i]); new keys are added to `names` / `index`."""
    span = int(length.max()) if len(length) else 0
    cols = np.arange(span)
    matrix = np.where(cols < length[:, None], rd.byte(start[:, None] + cols), -1)
    first = matrix[0]
    same = (matrix == first).all(axis=1)
    if same.all():
        unique, inverse = first[None, :], np.zeros(len(matrix), dtype=np.int64)
    else:
        unique, inverse = np.unique(matrix, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    ids = np.empty(len(unique), dtype=np.int64)
    for j, row in enumerate(unique):
        key = bytes(row[row >= 0].astype(np.uint8))
        kid = index.get(key)
        if kid is None:
            try:
                text = key.decode("utf-8")
            except UnicodeDecodeError:
                return None
            kid = index[key] = len(names)
            names.append(text)
        ids[j] = kid
    return ids[inverse]


def _string_lengths(rd: _Reader, p: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Bytes of string data after each value's header (0 for other kinds)."""
    length = np.where((vb & 0xE0) == 0xA0, vb & 0x1F, 0)
    for code, width in ((0xD9, 1), (0xDA, 2), (0xDB, 4)):
        where = np.flatnonzero(vb == code)
        if len(where):
            length[where] = rd.big_endian(p[where] + 1, width).astype(np.int64)
    return length


def _columns(
    pa: Any, rd: _Reader, key_ids: np.ndarray, value_at: np.ndarray, count: np.ndarray, names: list[str]
) -> dict[str, tuple[np.ndarray, list[str], list[Any]]] | None:
    try:
        name_id = names.index("name")
    except ValueError:
        return None
    # Rows grouped by their key sequence; each group must have one string 'name' per row.
    if (key_ids == key_ids[0]).all():
        signatures, group_of = key_ids[:1], np.zeros(len(key_ids), dtype=np.int64)
    else:
        signatures, group_of = np.unique(key_ids, axis=0, return_inverse=True)
        group_of = group_of.reshape(-1)
    out: dict[str, tuple[np.ndarray, list[str], list[Any]]] = {}
    for g, signature in enumerate(signatures):
        keys = [int(k) for k in signature if k >= 0]
        if len(set(keys)) != len(keys) or name_id not in keys:
            return None  # a repeated key (msgpack keeps the last) or no name: the slow path decides
        rows = np.flatnonzero(group_of == g) if len(signatures) > 1 else np.arange(len(group_of))
        where = value_at[rows]
        type_names = _strings(pa, rd, where[:, keys.index(name_id)])
        if type_names is None or type_names.null_count:
            return None
        for type_name, picked in _split(type_names, rows):
            if type_name in out:
                return None  # one type under two key sequences: the slow path unions them
            local = np.searchsorted(rows, picked)
            arrays = []
            for k_pos, kid in enumerate(keys):
                if kid == name_id:
                    continue
                column = _value_column(pa, rd, where[local, k_pos])
                if column is None:
                    return None
                arrays.append(column)
            out[type_name] = (picked, [names[k] for k in keys if k != name_id], arrays)
    return out


def _split(type_names: Any, rows: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Rows of each distinct type name."""
    encoded = type_names.dictionary_encode()
    indices = encoded.indices.to_numpy()
    return [(str(v), rows[indices == i]) for i, v in enumerate(encoded.dictionary.to_pylist())]


def _strings(pa: Any, rd: _Reader, at: np.ndarray) -> Any | None:
    vb = rd.byte(at)
    if not (_KIND[vb] == _STR).all():
        return None
    return _string_array(pa, rd, at, vb, np.zeros(len(at), dtype=bool))


def _string_array(pa: Any, rd: _Reader, at: np.ndarray, vb: np.ndarray, null: np.ndarray) -> Any | None:
    length = np.where(null, 0, _string_lengths(rd, at, vb))
    start = at + _HEAD[vb]
    offsets = np.zeros(len(at) + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    if offsets[-1] > (1 << 31) - 1:
        return None
    picks = np.repeat(start - offsets[:-1], length) + np.arange(int(offsets[-1]), dtype=np.int64)
    data = np.take(rd.data, picks, mode="clip")
    mask = pa.py_buffer(np.packbits(~null, bitorder="little")) if null.any() else None
    array = pa.Array.from_buffers(
        pa.string(), len(at), [mask, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)], null_count=int(null.sum())
    )
    try:
        array.validate(full=True)  # UTF-8
    except pa.ArrowInvalid:
        return None
    return array


def _value_column(pa: Any, rd: _Reader, at: np.ndarray) -> Any | None:
    """One field's values as an Arrow array by the column rules, or None when they do not fit here."""
    vb = rd.byte(at)
    kind = _KIND[vb]
    null = kind == _NIL
    present = np.bincount(kind[~null], minlength=_STR + 1)
    kinds = {int(k) for k in np.flatnonzero(present)}
    mask = null if null.any() else None
    if not kinds:
        return pa.nulls(len(at))
    if kinds == {_STR}:
        return _string_array(pa, rd, at, vb, null)
    if kinds == {_BOOL}:
        return pa.array(vb == 0xC3, type=pa.bool_(), mask=mask)
    if not kinds <= {_INT, _FLOAT}:
        return None
    values = np.zeros(len(at), dtype=np.float64 if _FLOAT in kinds else np.int64)
    ints = np.flatnonzero(kind == _INT)
    if len(ints):
        decoded = _ints(rd, at[ints], vb[ints])
        if decoded is None or _FLOAT in kinds and (np.abs(decoded) > 1 << 53).any():
            return None  # not exact as float64: the msgpack path makes it JSON, as pyarrow refuses
        values[ints] = decoded
    for code, width, dtype in ((0xCA, 4, ">u4"), (0xCB, 8, ">u8")):
        where = np.flatnonzero(vb == code)
        if len(where):
            bits = rd.big_endian(at[where] + 1, width).astype(np.uint32 if width == 4 else np.uint64)
            values[where] = bits.view(np.float32 if width == 4 else np.float64)
    return pa.array(values, mask=mask)


def _ints(rd: _Reader, at: np.ndarray, vb: np.ndarray) -> np.ndarray | None:
    out = np.where(vb < 0x80, vb, vb - 256)  # positive / negative fixint (others overwritten below)
    for code, width, signed in ((0xCC, 1, False), (0xCD, 2, False), (0xCE, 4, False), (0xCF, 8, False),
                                (0xD0, 1, True), (0xD1, 2, True), (0xD2, 4, True), (0xD3, 8, True)):
        where = np.flatnonzero(vb == code)
        if not len(where):
            continue
        raw = rd.big_endian(at[where] + 1, width)
        if signed and width == 8:
            value = raw.view(np.int64)
        elif signed:
            value = raw.astype(np.int64)
            value = np.where(value >= 1 << (8 * width - 1), value - (1 << (8 * width)), value)
        else:
            if width == 8 and (raw > np.uint64((1 << 63) - 1)).any():
                return None  # over int64: the slow path decides
            value = raw.astype(np.int64)
        out[where] = value
    return out
