"""Canonical bytes: weights and records round-trip, versions are content hashes, and any
bytes that are not such a file are refused with SerializationError only."""

from __future__ import annotations

import hashlib
import json
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fedhive.core.serde import (
    model_version,
    record_from_bytes,
    record_to_bytes,
    sha256_hex,
    weights_from_bytes,
    weights_to_bytes,
)
from fedhive.core.weights import Weights
from fedhive.errors import SerializationError

DTYPES = [
    np.dtype(t)
    for t in (
        np.float16,
        np.float32,
        np.float64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        bool,
    )
]

# "__metadata__" is safetensors' reserved header key.
names = st.text(min_size=1, max_size=12).filter(lambda s: s != "__metadata__")


def arrays(min_dims: int = 1) -> st.SearchStrategy[np.ndarray]:
    """Any supported dtype and shape (incl. zero-size), NaN and inf included for floats."""
    return st.sampled_from(DTYPES).flatmap(
        lambda dtype: hnp.arrays(
            dtype, hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=0, max_side=4)
        )
    )


@st.composite
def weights(draw: st.DrawFn, min_dims: int = 1) -> Weights:
    keys = draw(st.lists(names, unique=True, max_size=6))
    return Weights({k: draw(arrays(min_dims)) for k in keys})


def assert_same_weights(a: Weights, b: Weights) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name  # bit-exact, NaN payloads too


# --- weights ----------------------------------------------------------------------------


@settings(deadline=None)
@given(weights(min_dims=0))
def test_weights_round_trip(w: Weights) -> None:
    assert_same_weights(weights_from_bytes(weights_to_bytes(w)), w)


@settings(deadline=None)
@given(weights(min_dims=0))
def test_bytes_are_a_standard_safetensors_file(w: Weights) -> None:
    loaded = st_load(weights_to_bytes(w))
    assert set(loaded) == set(w)
    for name, array in loaded.items():
        assert array.dtype == w[name].dtype
        assert array.shape == w[name].shape
        assert array.tobytes() == np.ascontiguousarray(w[name]).tobytes()


def test_zero_d_weights_keep_their_shape() -> None:
    w = Weights({"step": np.array(5, dtype=np.int64), "t": np.array(0.5, np.float32)})
    back = weights_from_bytes(weights_to_bytes(w))
    assert back["step"].shape == ()
    assert back["t"].shape == ()
    assert back["step"] == 5


def test_weights_round_trip_keeps_declared_order_and_every_dtype() -> None:
    w = Weights({f"p{i:02d}_{d.name}": np.ones((2, 1), dtype=d) for i, d in enumerate(DTYPES)})
    w = Weights({k: w[k] for k in reversed(list(w))})
    assert_same_weights(weights_from_bytes(weights_to_bytes(w)), w)


def test_non_contiguous_arrays_serialize_their_logical_values() -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    w = Weights({"t": base.T, "s": base[:, ::2]})
    back = weights_from_bytes(weights_to_bytes(w))
    np.testing.assert_array_equal(back["t"], base.T)
    np.testing.assert_array_equal(back["s"], base[:, ::2])


def test_empty_weights_round_trip() -> None:
    assert len(weights_from_bytes(weights_to_bytes(Weights()))) == 0


@pytest.mark.parametrize(
    "dtype", [np.complex64, np.complex128, np.longdouble, "datetime64[s]", "U3"]
)
def test_dtypes_without_a_safetensors_code_are_refused(dtype: object) -> None:
    w = Weights({"a": np.zeros(2, dtype=dtype)})  # type: ignore[call-overload]
    with pytest.raises(SerializationError, match="'a'"):
        weights_to_bytes(w)


# --- canonical bytes and versions -------------------------------------------------------


@settings(deadline=None, max_examples=50)
@given(weights(min_dims=0))
def test_same_weights_give_the_same_bytes_every_time(w: Weights) -> None:
    copy = Weights({k: np.array(v, copy=True) for k, v in w.items()})
    assert len({weights_to_bytes(w) for _ in range(8)} | {weights_to_bytes(copy)}) == 1
    assert model_version(w) == model_version(copy)


def test_memory_layout_and_byte_order_do_not_change_the_bytes() -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    plain = Weights({"a": values, "i": np.arange(3, dtype=np.int64)})
    fortran = Weights({"a": np.asfortranarray(values), "i": np.arange(3, dtype=">i8")})
    assert weights_to_bytes(plain) == weights_to_bytes(fortran)
    assert record_to_bytes({"a": values, "n": 1}) == record_to_bytes({"n": 1, "a": values.T.T})


def test_model_version_is_hex_sha256_of_the_bytes() -> None:
    w = Weights({"a": np.zeros(3, np.float32)})
    version = model_version(w)
    assert version == hashlib.sha256(weights_to_bytes(w)).hexdigest()
    assert len(version) == 64
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_order_is_part_of_the_version() -> None:
    a, b = np.zeros(2, np.float32), np.ones(3, np.float32)
    assert model_version(Weights({"a": a, "b": b})) != model_version(Weights({"b": b, "a": a}))


def test_values_names_shapes_and_dtypes_are_part_of_the_version() -> None:
    base = model_version(Weights({"a": np.zeros(2, np.float32)}))
    assert base != model_version(Weights({"a": np.array([0, 1e-30], np.float32)}))
    assert base != model_version(Weights({"b": np.zeros(2, np.float32)}))
    assert base != model_version(Weights({"a": np.zeros(2, np.float64)}))
    assert base != model_version(Weights({"a": np.zeros((1, 2), np.float32)}))
    assert base != model_version(Weights({"a": np.array([0, -0.0], np.float32)}))


def test_reserved_name_is_refused() -> None:
    with pytest.raises(SerializationError, match="__metadata__"):
        weights_to_bytes(Weights({"__metadata__": np.zeros(1)}))


# --- records ----------------------------------------------------------------------------

scalars = (
    st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, object]:
    keys = draw(st.lists(names, unique=True, max_size=8))
    return {k: draw(arrays(min_dims=0) | scalars) for k in keys}


@settings(deadline=None)
@given(records())
def test_record_round_trip(record: dict[str, object]) -> None:
    back = record_from_bytes(record_to_bytes(record))  # type: ignore[arg-type]
    assert set(back) == set(record)
    for key, value in record.items():
        got = back[key]
        if isinstance(value, np.ndarray):
            assert isinstance(got, np.ndarray)
            assert got.dtype == value.dtype
            assert got.shape == value.shape
            assert got.tobytes() == value.tobytes()
        else:
            assert type(got) is type(value), key  # bool stays bool, 1.0 stays float
            assert got == value


def test_record_scalar_types_survive_exactly() -> None:
    record = {"t": True, "n": 3, "x": 1.0, "s": "adam", "big": 2**64 + 1, "neg": -0.5}
    back = record_from_bytes(record_to_bytes(record))
    assert back == record
    assert {k: type(v) for k, v in back.items()} == {k: type(v) for k, v in record.items()}


def test_zero_d_record_array_round_trips() -> None:
    back = record_from_bytes(record_to_bytes({"count": np.array(3, np.int64)}))
    assert back["count"].shape == ()  # type: ignore[union-attr]


@pytest.mark.parametrize("value", [None, [1, 2], {"a": 1}, b"raw", np.array([None])])
def test_record_refuses_unsupported_values(value: object) -> None:
    with pytest.raises(SerializationError, match="'k'"):
        record_to_bytes({"k": value})  # type: ignore[dict-item]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_record_refuses_non_finite_scalars_with_a_typed_error(value: float) -> None:
    with pytest.raises(SerializationError, match="finite"):
        record_to_bytes({"k": value})


def test_record_array_refusal_is_not_blamed_on_scalars() -> None:
    with pytest.raises(SerializationError) as info:
        record_to_bytes({"z": np.zeros(2, np.complex64), "n": 1})
    assert "finite" not in str(info.value)


def test_weights_and_records_are_not_confused() -> None:
    w_bytes = weights_to_bytes(Weights({"a": np.zeros(1)}))
    r_bytes = record_to_bytes({"a": np.zeros(1)})
    with pytest.raises(SerializationError, match="not a fedhive record"):
        record_from_bytes(w_bytes)
    with pytest.raises(SerializationError, match="not a fedhive weights"):
        weights_from_bytes(r_bytes)


# --- refusing bad bytes -----------------------------------------------------------------


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_a_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError):
        weights_from_bytes(data)
    with pytest.raises(SerializationError):
        record_from_bytes(data)


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_behind_a_plausible_length_prefix_are_refused(body: bytes) -> None:
    data = struct.pack("<Q", len(body)) + body
    with pytest.raises(SerializationError):
        weights_from_bytes(data)


@settings(deadline=None)
@given(weights(), st.data())
def test_truncated_weights_bytes_are_refused(w: Weights, data: st.DataObject) -> None:
    blob = weights_to_bytes(w)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    with pytest.raises(SerializationError):
        weights_from_bytes(blob[:cut])


def test_every_prefix_of_valid_bytes_is_refused() -> None:
    w_blob = weights_to_bytes(Weights({"a": np.arange(5, dtype=np.float32), "b": np.ones(2)}))
    r_blob = record_to_bytes({"m": np.ones(3, np.float32), "lr": 0.1, "name": "x"})
    for cut in range(len(w_blob)):
        with pytest.raises(SerializationError):
            weights_from_bytes(w_blob[:cut])
    for cut in range(len(r_blob)):
        with pytest.raises(SerializationError):
            record_from_bytes(r_blob[:cut])


@settings(deadline=None)
@given(st.data())
def test_corrupted_header_bytes_are_refused_or_decode_to_weights(data: st.DataObject) -> None:
    blob = bytearray(weights_to_bytes(Weights({"a": np.arange(3, dtype=np.float32)})))
    header_len = int.from_bytes(blob[:8], "little")
    pos = data.draw(st.integers(min_value=0, max_value=8 + header_len - 1))
    blob[pos] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        out = weights_from_bytes(bytes(blob))
    except SerializationError:
        return
    assert isinstance(out, Weights)


@pytest.mark.parametrize("value", ["not bytes", 12, None])
def test_non_bytes_input_is_a_serialization_error(value: object) -> None:
    with pytest.raises(SerializationError, match="expected bytes"):
        weights_from_bytes(value)  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted() -> None:
    blob = weights_to_bytes(Weights({"a": np.ones(2, np.float32)}))
    np.testing.assert_array_equal(weights_from_bytes(bytearray(blob))["a"], [1, 1])
    np.testing.assert_array_equal(weights_from_bytes(memoryview(blob))["a"], [1, 1])


def _file(
    meta: object, tensors: dict[str, np.ndarray] | None = None, key: str = "fedhive"
) -> bytes:
    """A valid safetensors file whose fedhive metadata is ``meta`` (JSON-encoded if not str)."""
    value = meta if isinstance(meta, str) else json.dumps(meta)
    return bytes(st_save(tensors or {}, metadata={key: value}))


def test_a_file_in_the_current_format_decodes() -> None:
    # Guards the helpers below: a hand-made file in the same layout is accepted.
    data = _file({"format": "weights/1", "names": ["b", "a"]}, {"a": np.ones(1), "b": np.zeros(2)})
    assert list(weights_from_bytes(data)) == ["b", "a"]


@pytest.mark.parametrize(
    ("meta", "tensors", "match"),
    [
        ({"format": "weights/2", "names": []}, None, "not a fedhive weights"),
        ({"format": "record/1", "scalars": {}}, None, "not a fedhive weights"),
        ([1, 2], None, "not a fedhive weights"),
        ("[oops", None, "invalid fedhive"),
        ({"format": "weights/1"}, None, "does not match"),
        ({"format": "weights/1", "names": {"a": 1}}, {"a": np.zeros(1)}, "does not match"),
        ({"format": "weights/1", "names": ["a", "b"]}, {"a": np.zeros(1)}, "does not match"),
        ({"format": "weights/1", "names": ["a", "a"]}, {"a": np.zeros(1)}, "does not match"),
        ({"format": "weights/1", "names": []}, {"a": np.zeros(1)}, "does not match"),
    ],
)
def test_crafted_weights_headers_are_refused(
    meta: object, tensors: dict[str, np.ndarray] | None, match: str
) -> None:
    with pytest.raises(SerializationError, match=match):
        weights_from_bytes(_file(meta, tensors))


def test_safetensors_without_fedhive_metadata_is_refused() -> None:
    for data in (
        bytes(st_save({"a": np.zeros(2, np.float32)})),
        _file({"format": "weights/1", "names": ["a"]}, {"a": np.zeros(1)}, key="other"),
    ):
        with pytest.raises(SerializationError):
            weights_from_bytes(data)
        with pytest.raises(SerializationError):
            record_from_bytes(data)


@pytest.mark.parametrize(
    ("scalars", "tensors", "match"),
    [
        (None, None, "must be bool, int, float or str"),
        ([1, 2], None, "must be bool, int, float or str"),
        ({"a": [1]}, None, "must be bool, int, float or str"),
        ({"a": None}, None, "must be bool, int, float or str"),
        ({"a": {"b": 1}}, None, "must be bool, int, float or str"),
        ({"a": 1}, {"a": np.zeros(1)}, "both an array and a scalar"),
    ],
)
def test_crafted_record_headers_are_refused(
    scalars: object, tensors: dict[str, np.ndarray] | None, match: str
) -> None:
    meta: dict[str, object] = {"format": "record/1"}
    if scalars is not None:
        meta["scalars"] = scalars
    with pytest.raises(SerializationError, match=match):
        record_from_bytes(_file(meta, tensors))


def _raw_header(header: object, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_header_claiming_more_bytes_than_exist_is_refused() -> None:
    with pytest.raises(SerializationError, match="longer than the data"):
        weights_from_bytes(struct.pack("<Q", 2**63) + b"{}")


def test_tensor_data_out_of_bounds_is_refused() -> None:
    header = {
        "__metadata__": {"fedhive": json.dumps({"format": "weights/1", "names": ["a"]})},
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
    }
    with pytest.raises(SerializationError):
        weights_from_bytes(_raw_header(header, b"\0" * 8))


@pytest.mark.parametrize("header", [[1, 2], "text", {"__metadata__": "x"}, {"__metadata__": [1]}])
def test_headers_of_the_wrong_shape_are_refused(header: object) -> None:
    with pytest.raises(SerializationError):
        weights_from_bytes(_raw_header(header))


def test_dtype_numpy_cannot_hold_is_refused() -> None:
    header = {
        "__metadata__": {"fedhive": json.dumps({"format": "weights/1", "names": ["a"]})},
        "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
    }
    with pytest.raises(SerializationError):
        weights_from_bytes(_raw_header(header, b"\0" * 4))


_GARBAGE_THAT_ESCAPES = {
    "non-string names": _file(
        {"format": "weights/1", "names": [1, "a"]}, {"a": np.zeros(1, np.float32)}
    ),
    "deeply nested header JSON": struct.pack("<Q", 100_000) + b"[" * 100_000,
}


@pytest.mark.parametrize("case", sorted(_GARBAGE_THAT_ESCAPES))
def test_hostile_bytes_are_a_serialization_error(case: str) -> None:
    with pytest.raises(SerializationError):
        weights_from_bytes(_GARBAGE_THAT_ESCAPES[case])


def _peak_bytes_decoding(data: bytes) -> int:
    """Python memory allocated at the peak of refusing ``data`` (beyond ``data`` itself)."""
    tracemalloc.start()
    try:
        with pytest.raises(SerializationError):
            weights_from_bytes(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_json_array_header_is_refused_without_being_parsed() -> None:
    bomb = b"[" + b"[]," * (4 << 20) + b"[]]"  # 12 MiB of JSON, ~250 MiB as Python lists
    data = struct.pack("<Q", len(bomb)) + bomb
    assert _peak_bytes_decoding(data) < 1 << 20


def _beside_a_tensor(pad: bytes, meta: bytes) -> bytes:
    header = (
        b'{"__metadata__":{"fedhive":' + meta + b'},"a":{"dtype":"F32","shape":[1],'
        b'"data_offsets":[0,4]' + pad + b"}}"
    )
    return struct.pack("<Q", len(header)) + header + b"\0" * 4


_LISTS = b"[" + b"[]," * (1 << 20) + b"[]]"  # 3 MiB of JSON, ~60 MiB as Python lists
_META = {"format": "weights/1", "names": ["a"]}
_BOMBS = {
    "in a field safetensors ignores": _beside_a_tensor(
        b',"pad":' + _LISTS, json.dumps(json.dumps(_META)).encode()
    ),
    "in the metadata": _beside_a_tensor(
        b"", json.dumps(json.dumps(_META)[:-1] + ', "pad": ' + _LISTS.decode() + "}").encode()
    ),
}


@pytest.mark.parametrize("where", sorted(_BOMBS))
def test_a_header_bomb_beside_a_real_tensor_is_refused_without_being_parsed(where: str) -> None:
    data = _BOMBS[where]
    with pytest.raises(SerializationError, match="more than its tensors"):
        weights_from_bytes(data)
    assert _peak_bytes_decoding(data) < 1 << 20


def test_a_header_over_the_limit_is_refused_by_its_length() -> None:
    from fedhive.core.serde import MAX_HEADER_BYTES

    data = struct.pack("<Q", MAX_HEADER_BYTES + 1) + b" " * (MAX_HEADER_BYTES + 1)
    with pytest.raises(SerializationError, match="at most"):
        weights_from_bytes(data)
