"""Tests of mcl.message: declaration, registry, msgpack encoding, numpy, generic messages."""

from __future__ import annotations

import copy
import pickle

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from strategies import messages, numpy_arrays, plain_values, same_value

import mcl
from mcl.message import GenericMessage, Message, decode, encode, get_message_type, type_name_of, unpack


class Pose(Message):
    """A test message type declared with a fields tuple."""

    fields = ("x", "y", "heading")


class Scan(Message):
    """A test message type declared with annotations."""

    ranges: np.ndarray
    frame: str


def test_fields_declared_by_tuple_and_annotations() -> None:
    """Both declaration styles give the fields in order, and missing fields are None."""
    assert Pose.fields == ("x", "y", "heading")
    assert Scan.fields == ("ranges", "frame")
    pose = Pose(1.0, y=2.0)
    assert (pose.x, pose["y"], pose.heading) == (1.0, 2.0, None)


def test_original_mandatory_declaration() -> None:
    """A type declared with the original ``mandatory`` tuple gets those fields."""

    class Legacy(Message):
        mandatory = ("a", "b")

    assert Legacy.fields == ("a", "b")
    assert get_message_type("Legacy") is Legacy


def test_payload_is_the_original_mcl_map() -> None:
    """encode() gives a msgpack map of name, timestamp and the fields."""
    pose = Pose(x=1, y=2, heading=3, timestamp=12.5)
    assert msgpack.unpackb(pose.encode()) == {"name": "Pose", "timestamp": 12.5, "x": 1, "y": 2, "heading": 3}


def test_original_payload_decodes_to_registered_type(reference_dir) -> None:
    """A payload written by the original MCL decodes into the registered type."""

    class UnitTestMessageA(Message):
        fields = ("data",)

    line = (reference_dir / "dataset" / "UnitTestMessageA.log").read_text().splitlines()[21]
    msg = decode(bytes.fromhex(line.split()[2]))
    assert type(msg) is UnitTestMessageA
    assert (msg.data, msg.timestamp) == (0.01, 0.01)


def test_unknown_type_decodes_to_generic_message() -> None:
    """A name that is not registered gives a GenericMessage with its fields, not an error."""
    payload = msgpack.packb({"name": "NobodyKnowsMe", "timestamp": 1.0, "speed": 3})
    msg = decode(payload)
    assert isinstance(msg, GenericMessage)
    assert (msg.name, msg.speed, msg.fields) == ("NobodyKnowsMe", 3, ("speed",))


def test_raw_values_decode_to_plain_python() -> None:
    """Payloads that are not named maps decode to the plain value."""
    assert decode(encode([1, 2, 3])) == [1, 2, 3]
    assert decode(encode({"no": "name"})) == {"no": "name"}
    assert type_name_of(encode([1])) is None
    assert type_name_of(b"\xc1") is None


def test_invalid_payload_raises_message_error() -> None:
    """Bytes that are not msgpack raise MessageError naming the size."""
    with pytest.raises(mcl.MessageError, match="3 bytes is not valid msgpack"):
        decode(b"\x93\x01\x02")


def test_numpy_fields_round_trip_exactly() -> None:
    """Arrays keep dtype, shape and values, including non-contiguous and big-endian arrays."""
    arrays = [
        np.arange(12, dtype=np.int16).reshape(3, 4)[:, ::2],
        np.array([1.5, np.nan, -np.inf], dtype=">f8"),
        np.zeros((0, 3), dtype=np.float32),
        np.array(7, dtype=np.uint64),
        np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
    ]
    for arr in arrays:
        back = decode(Scan(ranges=arr, frame="lidar").encode()).ranges
        assert back.dtype == arr.dtype and back.shape == arr.shape
        assert back.tobytes() == np.ascontiguousarray(arr).tobytes()


def test_numpy_scalar_round_trip() -> None:
    """numpy scalars that are not Python floats keep their dtype."""
    back = unpack(encode({"v": np.int8(-3), "b": np.bool_(True)}))
    assert back["v"].dtype == np.int8 and back["v"] == -3
    assert type(back["b"]) is np.bool_ and bool(back["b"]) is True


def test_object_arrays_are_rejected() -> None:
    """An array of Python objects cannot be encoded: MessageError, not a crash."""
    with pytest.raises(mcl.MessageError, match="Python objects"):
        encode({"a": np.array([object()])})


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(messages())
def test_messages_round_trip(msg: GenericMessage) -> None:
    """Any message with any fields (numpy included) decodes back equal to itself."""
    back = decode(msg.encode())
    assert back == msg
    assert same_value(back, msg), (back, msg)


@settings(max_examples=100, deadline=None)
@given(plain_values())
def test_plain_values_round_trip(value: object) -> None:
    """Raw (unnamed) values round-trip through encode / unpack."""
    back = unpack(encode(value))
    assert GenericMessage("X", {"v": back}, timestamp=0) == GenericMessage("X", {"v": value}, timestamp=0)
    assert same_value(back, value), (back, value)


@settings(max_examples=50, deadline=None)
@given(numpy_arrays())
def test_arrays_round_trip(arr: np.ndarray) -> None:
    """Arrays of every supported dtype and shape round-trip."""
    back = unpack(encode(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()


def test_redefinition_replaces_registered_type_and_keeps_equality() -> None:
    """Defining a type again (notebook, reload) registers the new class; old instances still compare equal."""

    class Reloaded(Message):
        fields = ("a",)

    old = Reloaded(a=1, timestamp=0.0)

    class Reloaded(Message):  # type: ignore[no-redef]  # noqa: F811
        fields = ("a",)

    new = Reloaded(a=1, timestamp=0.0)
    assert get_message_type("Reloaded") is Reloaded
    assert old == new and type(decode(old.encode())) is Reloaded


def test_equality_repr_copy_and_pickle() -> None:
    """Messages compare by value, repr shows fields, copies are independent, pickling works."""
    a = Scan(ranges=np.arange(3.0), frame="f", timestamp=1.0)
    assert a == Scan(ranges=np.arange(3.0), frame="f", timestamp=1.0)
    assert a != Scan(ranges=np.arange(3.0), frame="g", timestamp=1.0)
    assert a != Scan(ranges=np.arange(3, dtype=np.int64), frame="f", timestamp=1.0)
    assert repr(a).startswith("Scan(timestamp=1.0, ranges=array(")
    shallow, deep = copy.copy(a), copy.deepcopy(a)
    shallow.frame = "other"
    deep.ranges[0] = 99
    assert a.frame == "f" and a.ranges[0] == 0
    assert pickle.loads(pickle.dumps(a)) == a
    generic = decode(msgpack.packb({"name": "Gen", "timestamp": 0, "v": 1}))
    assert pickle.loads(pickle.dumps(generic)) == generic


def test_bad_declarations_and_fields_raise() -> None:
    """Reserved or invalid field names, unknown fields and too many arguments raise MessageError."""
    with pytest.raises(mcl.MessageError, match="reserved"):

        class Bad(Message):
            fields = ("name",)

    with pytest.raises(mcl.MessageError, match="not an identifier"):

        class Bad2(Message):
            fields = ("not valid",)

    with pytest.raises(mcl.MessageError, match="no field 'z'"):
        Pose(z=1)
    with pytest.raises(mcl.MessageError, match="3 positional"):
        Pose(1, 2, 3, 4)
    with pytest.raises(AttributeError):
        Pose().z = 1
    with pytest.raises(mcl.MessageError, match="no message type named"):
        get_message_type("NoSuchType")
