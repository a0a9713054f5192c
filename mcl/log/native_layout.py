"""Byte layout of the native log format: file header, chunks, index files, scanning.

Everything here follows ``docs/log-format.md``; :mod:`mcl.log.native` builds
the reader and writer on top. All integers are little-endian.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate, chain, compress, islice
from pathlib import Path
from typing import Any, TypeGuard

from mcl.exceptions import LogError, LogFormatError
from mcl.log.record import Damage, Record, TopicFilter, TopicStats, open_regular_file

VERSION_MAJOR = 1  # a reader refuses another major version
VERSION_MINOR = 0  # minor versions only add things an older reader may ignore

DATA_SUFFIX = ".mcln"
INDEX_SUFFIX = ".mcli"
FILE_MAGIC = b"\x89MCLN\r\n\x1a"
INDEX_MAGIC = b"\x89MCLI\r\n\x1a"
CHUNK_MAGIC = b"MCLC"

# File header: magic, major, minor, JSON length, CRC-32 of the JSON; then the JSON.
FILE_HEADER = struct.Struct("<8sHHII")
# Chunk header: magic, header CRC, body CRC, topic table length, stored body
# length, raw body length, record count, compression, 3 reserved, start, end.
CHUNK_HEADER = struct.Struct("<4sIIIIIIB3xqq")
# Topic table entry after its two strings: count, payload bytes, first, last.
TOPIC_STATS = struct.Struct("<IQqq")
# Index file header: magic, major, minor, data file size, data header CRC,
# JSON length, chunk count.
INDEX_HEADER = struct.Struct("<8sHHQIII")
# Index chunk entry: offset, length, record count, start, end.
INDEX_ENTRY = struct.Struct("<QIIqq")

COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1
COMPRESSION_NAMES = {COMPRESSION_NONE: "none", COMPRESSION_ZSTD: "zstd"}

MAX_TOPICS_PER_CHUNK = 0xFFFF
MAX_TYPES_PER_TOPIC = 0xFF
TYPE_SAMPLE = 64  # records per topic per chunk whose type name is read
MAX_CHUNK_BYTES = 0xFFFF_FFFF  # lengths are u32
# Largest raw (uncompressed) chunk body a reader accepts and a writer writes:
# a reader checks a chunk's claimed sizes against it (and against the sum of
# its own record lengths) before allocating anything. A single payload must
# fit in one chunk, so this is also the largest payload of the format.
MAX_RAW_CHUNK_BYTES = 1 << 28  # 256 MiB
MAX_HEADER_JSON_BYTES = 1 << 24  # 16 MiB of header JSON at most
MAX_INDEX_JSON_BYTES = 1 << 26  # 64 MiB of index JSON at most
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
_RESYNC_BLOCK = 1 << 20
_LITTLE = sys.byteorder == "little"
_make_record = partial(tuple.__new__, Record)


def _crc(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFF_FFFF


# -- file header -------------------------------------------------------------------


@dataclass(slots=True)
class FileHeader:
    """The header at byte 0 of a data file."""

    origin_ns: int = 0  # UTC ns since the epoch of elapsed 0
    file_index: int = 0  # 0 for the first data file of a log, then 1, 2, ...
    metadata: dict[str, str] = field(default_factory=dict)  # host, revision, user keys
    extra: dict[str, Any] = field(default_factory=dict)  # every other JSON key, kept as read
    minor: int = VERSION_MINOR
    size: int = 0  # bytes of the header (offset of the first chunk)
    crc: int = 0  # CRC-32 of the JSON (ties an index file to this data file)


def encode_file_header(origin_ns: int, file_index: int, metadata: dict[str, str], writer: str) -> tuple[bytes, int]:
    """The header bytes of a new data file and the CRC of its JSON."""
    from mcl.log.record import ns_to_datetime

    doc = {
        "origin_ns": origin_ns,
        "origin_utc": ns_to_datetime(origin_ns).isoformat().replace("+00:00", "Z"),
        "file_index": file_index,
        "metadata": metadata,
        "writer": writer,
    }
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
    fields = struct.pack("<HHI", VERSION_MAJOR, VERSION_MINOR, len(body))
    crc = _crc(fields + body)
    return FILE_MAGIC + fields + struct.pack("<I", crc) + body, crc


class HeaderDamaged(Exception):
    """The file header is cut short, fails its CRC or holds invalid values (the caller turns it into damage).

    ``end`` is the offset of the first chunk when the header's length can be
    trusted (its CRC is right), else None.
    """

    def __init__(self, reason: str, end: int | None = None) -> None:
        super().__init__(reason)
        self.end = end


class BadMagic(HeaderDamaged):
    """The file does not start with the magic: not a data file, or one whose first bytes are damaged."""

    def __init__(self) -> None:
        super().__init__("file header damaged (bad magic)")


def read_file_header(fd: int, path: Path) -> FileHeader:
    """Parse the header of a data file.

    LogFormatError for another major version; BadMagic if the magic is
    wrong (not a data file, or damage: the caller decides); HeaderDamaged
    if the header is cut short or fails its CRC.
    """
    head = os.pread(fd, FILE_HEADER.size, 0)
    if len(head) < FILE_HEADER.size:
        if FILE_MAGIC.startswith(head[:8]):
            raise HeaderDamaged(f"file header cut short ({len(head)} bytes)")
        raise BadMagic()
    if head[:8] != FILE_MAGIC:
        raise BadMagic()
    _, major, minor, length, crc = FILE_HEADER.unpack(head)
    if length > MAX_HEADER_JSON_BYTES:
        raise HeaderDamaged(f"file header claims {length} bytes of JSON, over the limit of {MAX_HEADER_JSON_BYTES}")
    body = os.pread(fd, length, FILE_HEADER.size)
    if _crc(head[8:16] + body) != crc:
        if len(body) < length:
            raise HeaderDamaged(f"file header cut short ({FILE_HEADER.size + len(body)} of {FILE_HEADER.size + length} bytes)")
        raise HeaderDamaged("file header fails its CRC")
    if major != VERSION_MAJOR:
        raise LogFormatError(path, f"native format version {major}.{minor}; this reader reads {VERSION_MAJOR}.x", offset=8)
    end = FILE_HEADER.size + length
    try:
        doc = parse_json(body)
    except ValueError as exc:
        raise HeaderDamaged(f"file header {exc}", end) from None
    if not isinstance(doc, dict):
        raise HeaderDamaged("file header JSON is not an object", end)
    origin_ns = doc.get("origin_ns")
    if not is_int(origin_ns, I64_MIN, I64_MAX):
        raise HeaderDamaged(f"file header origin_ns {_short(origin_ns)} is not an integer in the i64 range", end)
    file_index = doc.get("file_index", 0)
    if not is_int(file_index, 0, 0xFFFF_FFFF):
        raise HeaderDamaged(f"file header file_index {_short(file_index)} is not an integer from 0 to 2**32 - 1", end)
    metadata = doc.get("metadata", {})
    if not isinstance(metadata, dict) or not all(map(is_text, chain(metadata, metadata.values()))):
        raise HeaderDamaged("file header metadata is not an object of UTF-8 strings", end)
    return FileHeader(
        origin_ns=origin_ns,
        file_index=file_index,
        metadata=dict(metadata),
        extra={k: v for k, v in doc.items() if k not in ("origin_ns", "file_index", "metadata")},
        minor=minor,
        size=end,
        crc=crc,
    )


def parse_json(data: bytes) -> Any:
    """JSON read from a file; ValueError (one line) for bad UTF-8, bad syntax or nesting past the recursion limit."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON is nested too deep") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"JSON is not valid ({exc})") from None


def is_int(value: Any, lo: int, hi: int) -> TypeGuard[int]:
    """True for a JSON integer (not a bool, not a float) within [lo, hi]."""
    return type(value) is int and lo <= value <= hi


def is_text(value: Any) -> bool:
    """True for a str that is valid UTF-8 (JSON's \\ud800 escapes give lone surrogates, which are not)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- chunks ------------------------------------------------------------------------


@dataclass(slots=True)
class ChunkTopic:
    """One entry of a chunk's topic table."""

    name: str
    types: list[str]  # message type names seen (empty: raw data); see docs/log-format.md
    messages: int
    bytes: int
    first_ns: int
    last_ns: int


@dataclass(slots=True)
class ChunkInfo:
    """Where a chunk is and what it holds (from an index entry or a header)."""

    offset: int
    length: int  # whole chunk: header + topic table + stored body
    count: int
    start_ns: int
    end_ns: int
    topics: list[ChunkTopic] | None = None  # known when read from the chunk header


def encode_topic_table(topics: list[ChunkTopic]) -> bytes:
    parts = [struct.pack("<H", len(topics))]
    for t in topics:
        name = t.name.encode("utf-8")
        parts.append(struct.pack("<H", len(name)) + name + struct.pack("<B", len(t.types)))
        for type_name in t.types:
            encoded = type_name.encode("utf-8")
            parts.append(struct.pack("<H", len(encoded)) + encoded)
        parts.append(TOPIC_STATS.pack(t.messages, t.bytes, t.first_ns, t.last_ns))
    return b"".join(parts)


def decode_topic_table(data: bytes) -> list[ChunkTopic]:
    """Parse a topic table (ValueError / struct.error if malformed)."""
    (n,) = struct.unpack_from("<H", data, 0)
    pos = 2
    topics = []
    for _ in range(n):
        (ln,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2 : pos + 2 + ln].decode("utf-8")
        pos += 2 + ln
        (ntypes,) = struct.unpack_from("<B", data, pos)
        pos += 1
        types = []
        for _ in range(ntypes):
            (lt,) = struct.unpack_from("<H", data, pos)
            types.append(data[pos + 2 : pos + 2 + lt].decode("utf-8"))
            pos += 2 + lt
        messages, nbytes, first, last = TOPIC_STATS.unpack_from(data, pos)
        pos += TOPIC_STATS.size
        topics.append(ChunkTopic(name, types, messages, nbytes, first, last))
    if pos != len(data):
        raise ValueError("topic table has trailing bytes")
    return topics


def encode_chunk(
    times: array,
    ids: array,
    payloads: list[bytes],
    topics: list[ChunkTopic],
    compressor: Any | None,
) -> bytes:
    """A whole chunk. `times` ('q'), `ids` ('H') and `payloads` are in time order."""
    lengths = array("I", map(len, payloads))
    if not _LITTLE:
        times, ids, lengths = array("q", times), array("H", ids), array("I", lengths)
        for a in (times, ids, lengths):
            a.byteswap()
    raw = b"".join((times.tobytes(), lengths.tobytes(), ids.tobytes(), b"".join(payloads)))
    stored, method = raw, COMPRESSION_NONE
    if compressor is not None:
        packed = compressor.compress(raw)
        if len(packed) < len(raw):
            stored, method = packed, COMPRESSION_ZSTD
    table = encode_topic_table(topics)
    if len(raw) > MAX_RAW_CHUNK_BYTES:
        raise LogError(f"a chunk of {len(raw)} bytes is over the format limit of {MAX_RAW_CHUNK_BYTES} bytes")
    rest = CHUNK_HEADER.pack(
        CHUNK_MAGIC, 0, _crc(stored), len(table), len(stored), len(raw), len(times), method, times[0], max(times)
    )[8:]
    header_crc = _crc(rest + table)
    return b"".join((CHUNK_MAGIC, struct.pack("<I", header_crc), rest, table, stored))


class ChunkDamaged(Exception):
    """A chunk fails a check; the message says which."""


@dataclass(slots=True)
class ChunkHeader:
    body_crc: int
    topics_len: int
    stored_len: int
    raw_len: int
    count: int
    compression: int
    start_ns: int
    end_ns: int

    @property
    def length(self) -> int:
        return CHUNK_HEADER.size + self.topics_len + self.stored_len


def parse_chunk_header(head: bytes) -> ChunkHeader:
    """The fixed header fields (magic checked, CRC not: it covers the topic table too)."""
    magic, _, body_crc, topics_len, stored_len, raw_len, count, method, start, end = CHUNK_HEADER.unpack_from(head)
    if magic != CHUNK_MAGIC:
        raise ChunkDamaged("no chunk magic")
    return ChunkHeader(body_crc, topics_len, stored_len, raw_len, count, method, start, end)


def check_chunk_header(data: bytes | memoryview, header: ChunkHeader) -> list[ChunkTopic]:
    """Verify the header CRC over ``data`` (the chunk from its start) and parse the topic table."""
    end = CHUNK_HEADER.size + header.topics_len
    (crc,) = struct.unpack_from("<I", data, 4)
    if _crc(data[8:end]) != crc:
        raise ChunkDamaged("chunk header fails its CRC")
    if header.compression not in COMPRESSION_NAMES:
        raise ChunkDamaged(f"unknown compression {header.compression}")
    if header.start_ns > header.end_ns:
        raise ChunkDamaged("chunk start time is after its end time")
    if header.raw_len > MAX_RAW_CHUNK_BYTES:
        raise ChunkDamaged(f"chunk claims a raw body of {header.raw_len} bytes, over the limit of {MAX_RAW_CHUNK_BYTES}")
    if header.compression == COMPRESSION_NONE and header.stored_len != header.raw_len:
        raise ChunkDamaged("uncompressed chunk has different stored and raw lengths")
    try:
        topics = decode_topic_table(bytes(data[CHUNK_HEADER.size : end]))
    except (ValueError, struct.error, UnicodeDecodeError):
        raise ChunkDamaged("chunk topic table is malformed") from None
    if sum(t.messages for t in topics) != header.count:
        raise ChunkDamaged("chunk topic counts do not add up to its record count")
    # The raw length must be what the records need: checked before anything is
    # decompressed, so a forged length cannot make the reader allocate it.
    if header.raw_len != 14 * header.count + sum(t.bytes for t in topics):
        raise ChunkDamaged("chunk raw length does not match its record count and payload bytes")
    return topics


_decompressor: Any = None


def _zstd_decompress(stored: bytes, raw_len: int) -> bytes:
    global _decompressor
    if _decompressor is None:
        try:
            import zstandard
        except ImportError:
            raise LogError("this log is compressed with zstd: install the 'zstandard' package (pip install mcl[compress])") from None
        _decompressor = zstandard.ZstdDecompressor()
    # The frame must state its size, and state the size the (checked) chunk
    # header claims: then decompress() allocates exactly that and no more.
    claimed = _zstd_content_size(stored)
    if claimed != raw_len:
        raise ChunkDamaged(f"zstd frame content size {claimed} is not the chunk's raw length {raw_len}")
    return bytes(_decompressor.decompress(stored, max_output_size=raw_len))


def _zstd_content_size(stored: bytes) -> int | None:
    import zstandard

    try:
        size = zstandard.frame_content_size(stored)
    except zstandard.ZstdError:
        return None
    return size if size >= 0 else None


def decode_body(chunk: bytes, header: ChunkHeader) -> bytes:
    """The raw body of a chunk whose header was checked (body CRC checked here)."""
    start = CHUNK_HEADER.size + header.topics_len
    stored = chunk[start : start + header.stored_len]
    if len(stored) != header.stored_len:
        raise ChunkDamaged("chunk is cut short")
    if _crc(stored) != header.body_crc:
        raise ChunkDamaged("chunk body fails its CRC")
    if header.compression == COMPRESSION_ZSTD:
        try:
            raw = _zstd_decompress(stored, header.raw_len)
        except (LogError, ChunkDamaged):
            raise
        except Exception as exc:  # zstd raises its own error type
            raise ChunkDamaged(f"chunk body does not decompress: {exc}") from None
    else:
        raw = stored
    n = header.count
    if len(raw) != header.raw_len or header.raw_len < 14 * n:
        raise ChunkDamaged("chunk body has the wrong length")
    return raw


def split_columns(raw: bytes, count: int, ntopics: int) -> tuple[array, array, list[int]]:
    """Times, topic ids and payload end offsets of a raw chunk body (ChunkDamaged if they do not fit it)."""
    n = count
    times = array("q")
    times.frombytes(raw[: 8 * n])
    lengths = array("I")
    lengths.frombytes(raw[8 * n : 12 * n])
    ids = array("H")
    ids.frombytes(raw[12 * n : 14 * n])
    if not _LITTLE:
        times.byteswap()
        lengths.byteswap()
        ids.byteswap()
    ends = list(accumulate(lengths, initial=14 * n))
    if ends[-1] != len(raw):
        raise ChunkDamaged("chunk payload lengths do not add up to its body")
    if max(ids, default=0) >= ntopics:
        raise ChunkDamaged("chunk names a topic its table does not hold")
    return times, ids, ends


def iter_body(
    raw: bytes,
    count: int,
    names: list[str],
    topics: TopicFilter | None,
    start_ns: int | None,
    end_ns: int | None,
    shift: int = 0,
) -> Iterator[Record]:
    """The records of a raw chunk body, built with a handful of C-level calls.

    `start_ns` / `end_ns` are in the chunk's own time (before `shift`).
    """
    from bisect import bisect_left, bisect_right

    n = count
    times, ids, ends = split_columns(raw, count, len(names))
    lo = 0 if start_ns is None else bisect_left(times, start_ns)
    hi = n if end_ns is None else bisect_right(times, end_ns)
    if lo >= hi:
        return iter(())
    if lo or hi < n:
        times, ids = times[lo:hi], ids[lo:hi]
    payloads = map(raw.__getitem__, map(slice, islice(ends, lo, hi), islice(ends, lo + 1, hi + 1)))
    stamps: Any = times if not shift else map(shift.__add__, times)
    records = map(_make_record, zip(stamps, map(names.__getitem__, ids), payloads))
    if topics is not None:
        keep = [bool(topics(name)) for name in names]
        if not all(keep):
            return compress(records, map(keep.__getitem__, ids))
    return records


# -- scanning a data file (no index) ------------------------------------------------


@dataclass(slots=True)
class FileScan:
    """What a data file holds, from its index or from reading its chunk headers."""

    chunks: list[ChunkInfo] = field(default_factory=list)
    topics: dict[str, TopicStats] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    size: int = 0  # bytes of the data file when indexed / scanned


def add_topic_stats(stats: dict[str, TopicStats], topics: list[ChunkTopic]) -> None:
    for t in topics:
        s = stats.get(t.name)
        if s is None:
            s = stats[t.name] = TopicStats()
        s.messages += t.messages
        s.bytes += t.bytes
        s.types.update(t.types)
        s.first_ns = t.first_ns if s.first_ns is None else min(s.first_ns, t.first_ns)
        s.last_ns = t.last_ns if s.last_ns is None else max(s.last_ns, t.last_ns)


def _read_chunk_at(fd: int, offset: int, size: int) -> tuple[ChunkHeader, list[ChunkTopic]]:
    """Header and topic table of the chunk at `offset` (ChunkDamaged if it is not a good one)."""
    head = os.pread(fd, CHUNK_HEADER.size, offset)
    if len(head) < CHUNK_HEADER.size:
        raise ChunkDamaged("cut short")
    header = parse_chunk_header(head)
    if header.topics_len > 0xFFFF * 4 * 1024:
        raise ChunkDamaged("implausible topic table length")
    table = os.pread(fd, header.topics_len, offset + CHUNK_HEADER.size)
    if len(table) < header.topics_len:
        raise ChunkDamaged("cut short")
    topics = check_chunk_header(head + table, header)
    if offset + header.length > size:
        raise ChunkDamaged("cut short")
    return header, topics


def _resync(fd: int, start: int, size: int) -> int:
    """Offset of the next chunk with a valid header at or after `start`, or `size`."""
    pos = start
    while pos < size:
        block = os.pread(fd, _RESYNC_BLOCK + len(CHUNK_MAGIC) - 1, pos)
        if not block:
            break
        at = block.find(CHUNK_MAGIC)
        while at != -1 and at < _RESYNC_BLOCK:
            try:
                _read_chunk_at(fd, pos + at, size)
                return pos + at
            except ChunkDamaged:
                at = block.find(CHUNK_MAGIC, at + 1)
        pos += _RESYNC_BLOCK
    return size


def scan_file(fd: int, path: Path, first: int, size: int, *, verify: bool = False) -> FileScan:
    """Chunk headers of a data file from offset `first` (no body is read unless `verify`).

    A bad header makes the scan look for the next valid chunk header; the
    bytes between are one damage entry. `verify` also reads every body and
    checks its CRC, its size and its columns (what ``reindex`` and ``mcl-info --check`` do).
    """
    scan = FileScan(size=size)
    offset = first
    while offset < size:
        try:
            header, topics = _read_chunk_at(fd, offset, size)
        except ChunkDamaged as exc:
            nxt = _resync(fd, offset + 1, size)
            if nxt >= size and str(exc) == "cut short":
                reason = f"truncated tail: the last {size - offset} bytes are an incomplete chunk"
            else:
                reason = f"damaged chunk ({exc}): {nxt - offset} bytes skipped"
            scan.damage.append(Damage(path=str(path), reason=reason, offset=offset, lost_bytes=nxt - offset))
            offset = nxt
            continue
        if verify:
            try:
                split_columns(decode_body(os.pread(fd, header.length, offset), header), header.count, len(topics))
            except ChunkDamaged as exc:
                scan.damage.append(
                    Damage(path=str(path), reason=f"damaged chunk ({exc}): {header.count} records lost", offset=offset, lost_bytes=header.length)
                )
                offset += header.length
                continue
        scan.chunks.append(ChunkInfo(offset, header.length, header.count, header.start_ns, header.end_ns, topics))
        add_topic_stats(scan.topics, topics)
        offset += header.length
    return scan


# -- index files -------------------------------------------------------------------


def index_path_for(data_path: Path) -> Path:
    return data_path.with_suffix(INDEX_SUFFIX)


def _stats_to_json(stats: dict[str, TopicStats]) -> dict[str, Any]:
    return {
        name: {"messages": s.messages, "bytes": s.bytes, "types": sorted(s.types), "first_ns": s.first_ns, "last_ns": s.last_ns}
        for name, s in stats.items()
    }


def file_key(fd: int, header: FileHeader | None) -> int:
    """What ties an index to its data file: the header CRC, or for a file with an
    unreadable header the CRC-32 of its first 64 bytes."""
    return header.crc if header is not None else _crc(os.pread(fd, 64, 0))


def write_index(data_path: Path, header: FileHeader | None, scan: FileScan, key: int) -> None:
    """Write the index of a data file atomically (temporary file, then rename)."""
    doc = {
        "topics": _stats_to_json(scan.topics),
        "damage": [{"offset": d.offset, "reason": d.reason, "lost_bytes": d.lost_bytes} for d in scan.damage],
        "origin_ns": header.origin_ns if header else None,
        "metadata": header.metadata if header else {},
    }
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
    entries = b"".join(INDEX_ENTRY.pack(c.offset, c.length, c.count, c.start_ns, c.end_ns) for c in scan.chunks)
    head = INDEX_HEADER.pack(
        INDEX_MAGIC, VERSION_MAJOR, VERSION_MINOR, scan.size, key, len(body), len(scan.chunks)
    )
    data = head + body + entries
    data += struct.pack("<I", _crc(data))
    target = index_path_for(data_path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "wb") as fp:
            fp.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)  # never leave a half-written index behind (disk full)
        except OSError:
            pass
        raise LogError(f"{target}: cannot write the index: {exc.strerror}") from None


def read_index(
    data_path: Path, size: int, key: int, first: int = len(FILE_MAGIC), data_fd: int | None = None
) -> FileScan | None:
    """The index of a data file, or None if it is missing, damaged, stale or not consistent.

    `first` is the offset where the data file's chunks start (after its
    header). An index whose CRC is right but whose contents are not (wrong
    JSON types, chunks past the end of the file or overlapping, counts that
    do not add up) is treated like a stale one: the caller scans the chunk
    headers instead. With `data_fd` (the open data file), each entry is also
    compared with the fixed fields of the chunk header it points at (one
    48-byte read per chunk), so an index that does not describe this file
    is never used.
    """
    path = index_path_for(data_path)
    if not path.is_file():
        return None
    try:
        fd = open_regular_file(path)
    except LogError:
        return None
    try:
        limit = INDEX_HEADER.size + MAX_INDEX_JSON_BYTES + INDEX_ENTRY.size * (size // CHUNK_HEADER.size + 1) + 4
        if os.fstat(fd).st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fp:
            data = fp.read(limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) < INDEX_HEADER.size + 4 or data[:8] != INDEX_MAGIC:
        return None
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if _crc(memoryview(data)[:-4]) != crc:
        return None
    _, major, _, data_size, header_crc, json_len, nchunks = INDEX_HEADER.unpack_from(data)
    if major != VERSION_MAJOR or data_size != size or header_crc != key:
        return None
    if INDEX_HEADER.size + json_len + nchunks * INDEX_ENTRY.size + 4 != len(data):
        return None
    try:
        doc = parse_json(data[INDEX_HEADER.size : INDEX_HEADER.size + json_len])
        scan = _index_doc(doc, data_path, size)
    except ValueError:
        return None
    scan.chunks = [ChunkInfo(*e) for e in INDEX_ENTRY.iter_unpack(data[INDEX_HEADER.size + json_len : -4])]
    if not _entries_fit(scan.chunks, first, size):
        return None
    if sum(s.messages for s in scan.topics.values()) != sum(c.count for c in scan.chunks):
        return None
    if data_fd is not None and not all(_entry_matches(data_fd, c) for c in scan.chunks):
        return None
    return scan


def _entry_matches(fd: int, chunk: ChunkInfo) -> bool:
    head = os.pread(fd, CHUNK_HEADER.size, chunk.offset)
    if len(head) < CHUNK_HEADER.size:
        return False
    try:
        h = parse_chunk_header(head)
    except ChunkDamaged:
        return False  # damaged since the index was written? the scan tells
    return (h.length, h.count, h.start_ns, h.end_ns) == (chunk.length, chunk.count, chunk.start_ns, chunk.end_ns)


def _index_doc(doc: Any, data_path: Path, size: int) -> FileScan:
    """The topics and damage of an index JSON document (ValueError if a value has the wrong type)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("topics"), dict) or not isinstance(doc.get("damage"), list):
        raise ValueError("index JSON is not an object with topics and damage")
    scan = FileScan(size=size)
    for name, s in doc["topics"].items():
        if not isinstance(s, dict) or not is_text(name):
            raise ValueError("topic stats are not an object")
        messages, nbytes, types, first, last = (s.get(k) for k in ("messages", "bytes", "types", "first_ns", "last_ns"))
        if not (is_int(messages, 0, I64_MAX) and is_int(nbytes, 0, I64_MAX)):
            raise ValueError("topic counts are not integers")
        if not isinstance(types, list) or not all(map(is_text, types)):
            raise ValueError("topic types are not a list of strings")
        if not all(v is None or is_int(v, I64_MIN, I64_MAX) for v in (first, last)):
            raise ValueError("topic times are not i64 integers")
        scan.topics[name] = TopicStats(messages, nbytes, set(types), first, last)
    for d in doc["damage"]:
        if not isinstance(d, dict) or not is_text(d.get("reason")):
            raise ValueError("damage entry is not an object with a reason")
        offset, lost = d.get("offset"), d.get("lost_bytes")
        if not all(v is None or is_int(v, 0, size) for v in (offset, lost)):
            raise ValueError("damage offsets are not within the file")
        scan.damage.append(Damage(path=str(data_path), reason=d["reason"], offset=offset, lost_bytes=lost))
    return scan


def _entries_fit(chunks: list[ChunkInfo], first: int, size: int) -> bool:
    """True if the chunk entries are in file order, do not overlap and lie within the file."""
    end = first
    for c in chunks:
        if c.offset < end or c.length < CHUNK_HEADER.size or c.offset + c.length > size:
            return False
        if c.count < 1 or c.start_ns > c.end_ns:
            return False
        end = c.offset + c.length
    return True


# -- columnar reading (pyarrow) -------------------------------------------------------

MAX_BINARY_BYTES = (1 << 31) - 1  # payload bytes one Arrow binary column can address (int32 offsets)
_BATCH_SCHEMA: Any = None


def batch_schema() -> Any:
    """The schema of every batch: ``time_ns`` int64, ``topic`` dictionary<int32, string>, ``payload`` binary."""
    global _BATCH_SCHEMA
    if _BATCH_SCHEMA is None:
        import pyarrow as pa

        _BATCH_SCHEMA = pa.schema(
            [("time_ns", pa.int64()), ("topic", pa.dictionary(pa.int32(), pa.string())), ("payload", pa.binary())]
        )
    return _BATCH_SCHEMA


def body_batches(
    raw: bytes,
    count: int,
    names: list[str],
    topics: TopicFilter | None,
    start_ns: int | None,
    end_ns: int | None,
    shift: int = 0,
) -> list[Any]:
    """The records of a raw chunk body as ``pyarrow.RecordBatch``es (the columnar twin of :func:`iter_body`).

    Columns ``time_ns`` (int64: chunk time + `shift`), ``topic`` (dictionary
    of the chunk's topic names) and ``payload`` (binary). The columns are
    built from numpy views over `raw`, and the payload column's data buffer
    is `raw` itself: no Python object per record. The same checks as
    :func:`iter_body` raise ChunkDamaged. Usually one batch; several when the
    payloads pass the 2 GiB an Arrow binary column holds.
    """
    import numpy as np
    import pyarrow as pa

    n = count
    times = np.frombuffer(raw, dtype="<i8", count=n, offset=0)
    lengths = np.frombuffer(raw, dtype="<u4", count=n, offset=8 * n)
    ids = np.frombuffer(raw, dtype="<u2", count=n, offset=12 * n)
    ends = np.empty(n + 1, dtype=np.int64)  # ends[i]: offset in `raw` where payload i starts
    ends[0] = 14 * n
    np.cumsum(lengths, out=ends[1:])
    ends[1:] += 14 * n
    if int(ends[-1]) != len(raw):
        raise ChunkDamaged("chunk payload lengths do not add up to its body")
    if n and int(ids.max()) >= len(names):
        raise ChunkDamaged("chunk names a topic its table does not hold")
    lo = 0 if start_ns is None else int(np.searchsorted(times, start_ns, side="left"))
    hi = n if end_ns is None else int(np.searchsorted(times, end_ns, side="right"))
    if lo >= hi:
        return []
    keep = None
    if topics is not None:
        wanted = np.array([bool(topics(name)) for name in names], dtype=bool)
        if not wanted.all():
            keep = wanted[ids]
            if not keep[lo:hi].any():
                return []
    data = pa.py_buffer(raw)
    dictionary = pa.array(names, type=pa.string())
    batches = []
    start = lo
    while start < hi:
        # As many rows as one binary column holds (all of them unless the chunk is over 2 GiB).
        stop = int(np.searchsorted(ends, ends[start] + MAX_BINARY_BYTES, side="right")) - 1
        stop = min(max(stop, start + 1), hi)
        if int(ends[stop] - ends[start]) > MAX_BINARY_BYTES:
            raise LogError(f"a payload of {int(ends[stop] - ends[start])} bytes is over the {MAX_BINARY_BYTES} bytes of an Arrow binary value")
        base = int(ends[start])
        offsets = (ends[start : stop + 1] - base).astype(np.int32)
        payload = pa.Array.from_buffers(pa.binary(), stop - start, [None, pa.py_buffer(offsets), data[base:]])
        stamps = times[start:stop] + shift if shift else times[start:stop]
        indices = pa.array(ids[start:stop].astype(np.int32))
        batch = pa.RecordBatch.from_arrays(
            [pa.array(stamps, type=pa.int64()), pa.DictionaryArray.from_arrays(indices, dictionary), payload],
            schema=batch_schema(),
        )
        if keep is not None:
            batch = batch.filter(pa.array(keep[start:stop]))
        if batch.num_rows:
            batches.append(batch)
        start = stop
    return batches
