"""Message types: declaration, registry by name, msgpack encoding (with numpy).

A message type is a class with named fields::

    class Imu(mcl.Message):
        fields = ("accel", "gyro")          # or annotations, or `mandatory`

    msg = Imu(accel=np.zeros(3), gyro=[0, 0, 1])
    payload = msg.encode()                  # msgpack map: name, timestamp, fields
    mcl.decode(payload) == msg              # True

The payload is the one of the original MCL (a msgpack map holding ``name``,
``timestamp`` and the fields), so logs written by the original decode into
the same types. A payload whose type is not registered decodes to a
:class:`GenericMessage`; a payload that is not a named map (raw data) decodes
to the plain Python value.
"""

from __future__ import annotations

import copy as _copy
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import msgpack
import numpy as np

from mcl.exceptions import MessageError

__all__ = [
    "MAX_DEPTH",
    "Message",
    "GenericMessage",
    "decode",
    "encode",
    "get_message_type",
    "message_types",
    "type_name_of",
]

# msgpack extension codes. Documented in docs/log-format.md (payload section).
EXT_NDARRAY = 42  # numpy array: msgpack [descr, shape, raw C-order bytes]
EXT_NPSCALAR = 43  # numpy scalar: same body, shape []

# Deepest nesting of lists and maps a payload may have when decoded. msgpack
# itself stops at 1024 levels, but every consumer of a decoded value (JSON
# output, schema inference, comparisons) recurses once or twice per level and
# would hit Python's recursion limit on a payload of a few hundred bytes.
MAX_DEPTH = 100

_REGISTRY: dict[str, type[Message]] = {}

# Field names that would shadow the API of Message or the payload header.
_RESERVED = frozenset({"name", "timestamp", "fields", "mandatory", "type_name"})


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(EXT_NDARRAY, _pack_array(obj))
    if isinstance(obj, np.generic):
        return msgpack.ExtType(EXT_NPSCALAR, _pack_array(np.asarray(obj)))
    if isinstance(obj, Message):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}")


def _pack_array(arr: np.ndarray) -> bytes:
    if arr.dtype.hasobject:
        raise TypeError("cannot encode a numpy array of Python objects")
    descr = np.lib.format.dtype_to_descr(arr.dtype)
    return msgpack.packb(
        [descr, list(arr.shape), np.ascontiguousarray(arr).tobytes()],
        use_bin_type=True,
    )


def _unpack_array(data: bytes) -> np.ndarray:
    descr, shape, raw = msgpack.unpackb(data, raw=False, use_list=True)
    if isinstance(descr, list):  # structured dtypes come back as lists of lists
        descr = [tuple(field) for field in descr]
    dtype = np.lib.format.descr_to_dtype(descr)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_NDARRAY:
        return _unpack_array(data)
    if code == EXT_NPSCALAR:
        return _unpack_array(data)[()]
    return msgpack.ExtType(code, data)


def encode(value: Any) -> bytes:
    """Encode a message (or any msgpack-able value, numpy included) to bytes."""
    if isinstance(value, Message):
        value = value.to_dict()
    try:
        return msgpack.packb(value, default=_pack_default, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MessageError(f"cannot encode payload: {exc}") from exc


def unpack(payload: bytes) -> Any:
    """Decode payload bytes to plain Python values (maps stay dicts)."""
    try:
        value = msgpack.unpackb(
            payload,
            raw=False,
            ext_hook=_ext_hook,
            strict_map_key=False,
            unicode_errors="surrogateescape",
        )
    except msgpack.StackError:
        raise MessageError(f"payload of {len(payload)} bytes is nested deeper than {MAX_DEPTH} levels") from None
    except Exception as exc:  # msgpack raises several unrelated types
        raise MessageError(f"payload of {len(payload)} bytes is not valid msgpack: {exc}") from exc
    # Every level takes at least one byte: a shorter payload cannot be too deep.
    if len(payload) > MAX_DEPTH and type(value) in _CONTAINERS and _too_deep(value):
        raise MessageError(f"payload of {len(payload)} bytes is nested deeper than {MAX_DEPTH} levels")
    return value


_CONTAINERS = (list, dict)
_CONTAINER_TYPES = frozenset(_CONTAINERS)


def _too_deep(value: list[Any] | dict[Any, Any]) -> bool:
    """True if lists and maps nest deeper than MAX_DEPTH (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        items = container.values() if type(container) is dict else container
        if _CONTAINER_TYPES.isdisjoint(map(type, items)):  # C speed for the usual flat containers
            continue
        stack.extend((item, depth + 1) for item in items if type(item) in _CONTAINERS)
    return False


def decode(payload: bytes) -> Any:
    """Decode payload bytes to a registered message, a GenericMessage or a plain value."""
    return from_value(unpack(payload))


def from_value(value: Any) -> Any:
    """Turn an unpacked payload into a message when it is a named map."""
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str):
            cls = _REGISTRY.get(name)
            if cls is None:
                return GenericMessage._from_map(name, value)
            return cls._from_map(name, value)
    return value


def type_name_of(payload: bytes) -> str | None:
    """The message type name in a payload, or None for raw data / bad bytes."""
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=lambda c, d: None)
    except Exception:
        return None
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str):
            return name
    return None


def get_message_type(name: str) -> type[Message]:
    """The registered message type called `name` (MessageError if none)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MessageError(f"no message type named {name!r} is registered") from None


def message_types() -> dict[str, type[Message]]:
    """A copy of the registry: name -> message type."""
    return dict(_REGISTRY)


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


class Message:
    """Base of message types.

    Declare fields with ``fields = ("a", "b")``, with class annotations, or
    with ``mandatory = (...)`` as in the original MCL. Subclasses register
    under their class name (or ``type_name = "..."``); defining a type again
    with the same name replaces the registered one, and instances of the old
    and new definitions still compare equal.

    Fields read as attributes or items (``msg.a`` or ``msg["a"]``); missing
    fields are None. ``timestamp`` is float seconds since the epoch, set at
    construction unless given.
    """

    fields: ClassVar[tuple[str, ...]] = ()
    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_generic", False):
            return
        own = cls.__dict__
        if "fields" in own:
            declared = tuple(own["fields"])
        elif "mandatory" in own:
            declared = tuple(own["mandatory"])
        else:
            declared = tuple(
                n
                for n, ann in own.get("__annotations__", {}).items()
                if not n.startswith("_") and "ClassVar" not in str(ann)
            )
        inherited = tuple(f for base in cls.__mro__[1:] for f in getattr(base, "fields", ()))
        all_fields = tuple(dict.fromkeys(inherited + declared))
        for field in all_fields:
            if not isinstance(field, str) or not field.isidentifier():
                raise MessageError(f"{cls.__name__}: field name {field!r} is not an identifier")
            if field in _RESERVED or (field in dir(Message)):
                raise MessageError(f"{cls.__name__}: field name {field!r} is reserved")
        cls.fields = all_fields
        if "type_name" not in own:
            cls.type_name = cls.__name__
        _REGISTRY[cls.type_name] = cls

    def __init__(self, *args: Any, timestamp: float | None = None, **kwargs: Any) -> None:
        fields = self.fields
        if len(args) > len(fields):
            raise MessageError(f"{self.name} takes {len(fields)} positional fields, got {len(args)}")
        values: dict[str, Any] = {"timestamp": time.time() if timestamp is None else timestamp}
        values.update(dict.fromkeys(fields))
        values.update(zip(fields, args))
        for key, value in kwargs.items():
            if key not in values:
                raise MessageError(f"{self.name} has no field {key!r} (fields: {', '.join(fields) or 'none'})")
            values[key] = value
        object.__setattr__(self, "_values", values)

    @classmethod
    def _from_map(cls, name: str, mapping: dict[Any, Any]) -> Message:
        msg = cls.__new__(cls)
        values = {"timestamp": mapping.get("timestamp")}
        values.update(dict.fromkeys(cls.fields))
        values.update((k, v) for k, v in mapping.items() if k != "name")
        object.__setattr__(msg, "_values", values)
        return msg

    # -- identity -----------------------------------------------------------------
    @property
    def name(self) -> str:
        """The registered type name."""
        return self.type_name

    # -- field access ---------------------------------------------------------------
    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"{self.name} has no field {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key not in self._values:
            raise AttributeError(f"{self.name} has no field {key!r}")
        self._values[key] = value

    def __getitem__(self, key: str) -> Any:
        if key == "name":
            return self.name
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.__setattr__(key, value)

    def __contains__(self, key: object) -> bool:
        return key == "name" or key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """Field names, ``name`` and ``timestamp`` first."""
        return ["name", *self._values]

    def get(self, key: str, default: Any = None) -> Any:
        """The field `key`, or `default` when there is none."""
        try:
            return self[key]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        """The payload map: name, timestamp and the fields."""
        return {"name": self.name, **self._values}

    def encode(self) -> bytes:
        """msgpack payload bytes (the original MCL layout)."""
        return encode(self.to_dict())

    # -- value semantics ------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.name == other.name and _values_equal(self._values, other._values)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"{self.name}({body})"

    def __copy__(self) -> Message:
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        object.__setattr__(new, "_values", dict(self._values))
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Message:
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(_copy.deepcopy(self.__dict__, memo))
        return new


class GenericMessage(Message):
    """A decoded message whose type is not registered: a name and its fields."""

    _generic = True

    def __init__(self, name: str, fields: dict[str, Any] | None = None, *, timestamp: float | None = None) -> None:
        values = {"timestamp": time.time() if timestamp is None else timestamp}
        values.update(fields or {})
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_name", name)

    @classmethod
    def _from_map(cls, name: str, mapping: dict[Any, Any]) -> Message:
        msg = cls.__new__(cls)
        values = {"timestamp": mapping.get("timestamp")}
        values.update((k, v) for k, v in mapping.items() if k != "name")
        object.__setattr__(msg, "_values", values)
        object.__setattr__(msg, "_name", name)
        return msg

    @property
    def name(self) -> str:
        name: str = self._name
        return name

    @property
    def fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(k for k in self._values if k != "timestamp")
