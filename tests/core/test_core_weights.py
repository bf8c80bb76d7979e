"""Weights keep order and refuse bad values; Layout flattens and restores them exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedhive.client import scaffold as client_side
from fedhive.core.weights import AUX_PREFIX, SCAFFOLD_PREFIX, Layout, Weights
from fedhive.errors import (
    DTypeMismatchError,
    NameMismatchError,
    NonFiniteError,
    ShapeMismatchError,
    ValidationError,
)
from fedhive.strategy import scaffold as server_side


def model() -> Weights:
    return Weights(
        {
            "conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
            "conv.bias": np.zeros(3, dtype=np.float32),
            "bn.num_batches": np.array(7, dtype=np.int64),
        }
    )


# --- Weights as a mapping ---------------------------------------------------------------


def test_order_is_kept_not_sorted() -> None:
    w = Weights({"z": np.zeros(1), "a": np.zeros(2), "m": np.zeros(3)})
    assert list(w) == ["z", "a", "m"]
    assert w.layout().names == ("z", "a", "m")


def test_mapping_protocol_and_sizes() -> None:
    w = model()
    assert len(w) == 3
    assert "conv.bias" in w
    assert "missing" not in w
    np.testing.assert_array_equal(w["conv.weight"], np.arange(6).reshape(2, 3))
    assert w.num_parameters == 6 + 3 + 1
    assert w.nbytes == 6 * 4 + 3 * 4 + 8
    with pytest.raises(KeyError):
        w["missing"]


def test_lists_become_arrays() -> None:
    w = Weights({"a": [1.0, 2.0]})  # type: ignore[dict-item]
    assert isinstance(w["a"], np.ndarray)
    assert w["a"].shape == (2,)


def test_empty_weights() -> None:
    w = Weights()
    assert len(w) == 0
    assert w.num_parameters == 0
    assert w.layout() == Layout(names=(), shapes=(), dtypes=())


@pytest.mark.parametrize("name", ["", 3, None])
def test_names_must_be_non_empty_strings(name: object) -> None:
    with pytest.raises(NameMismatchError, match="non-empty strings"):
        Weights({name: np.zeros(1)})  # type: ignore[dict-item]


def test_object_dtype_is_refused() -> None:
    with pytest.raises(DTypeMismatchError, match="object"):
        Weights({"a": np.array([object()], dtype=object)})


def test_repr_names_dtype_and_shape() -> None:
    assert repr(Weights({"a": np.zeros((2, 3), np.float32)})) == "Weights(a: float32[2, 3])"


# --- validate_like ----------------------------------------------------------------------


def test_validate_like_accepts_a_matching_model_and_its_layout() -> None:
    w = model()
    other = Weights({k: v.copy() + 1 for k, v in w.items()})
    other.validate_like(w)
    other.validate_like(w.layout())


def test_missing_name_is_a_name_mismatch_naming_it() -> None:
    w = model()
    partial = Weights({k: v for k, v in w.items() if k != "conv.bias"})
    with pytest.raises(NameMismatchError, match=r"missing \['conv.bias'\]"):
        partial.validate_like(w)


def test_extra_name_is_a_name_mismatch_naming_it() -> None:
    w = model()
    more = Weights({**w, "head.weight": np.zeros(2, np.float32)})
    with pytest.raises(NameMismatchError, match=r"unexpected \['head.weight'\]"):
        more.validate_like(w)


def test_same_names_in_another_order_is_a_name_mismatch() -> None:
    w = model()
    reordered = Weights({k: w[k] for k in reversed(list(w))})
    with pytest.raises(NameMismatchError, match="order differs"):
        reordered.validate_like(w)


def test_shape_mismatch() -> None:
    w = model()
    bad = Weights({**w, "conv.weight": np.zeros((3, 2), np.float32)})
    with pytest.raises(ShapeMismatchError, match=r"conv\.weight"):
        bad.validate_like(w)


def test_zero_d_versus_one_element_is_a_shape_mismatch() -> None:
    w = model()
    bad = Weights({**w, "bn.num_batches": np.array([7], dtype=np.int64)})
    with pytest.raises(ShapeMismatchError, match=r"bn\.num_batches"):
        bad.validate_like(w)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_dtype_mismatch(dtype: type) -> None:
    w = model()
    bad = Weights({**w, "conv.bias": np.zeros(3, dtype=dtype)})
    with pytest.raises(DTypeMismatchError, match=r"conv\.bias"):
        bad.validate_like(w)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_non_finite(dtype: type, bad_value: float) -> None:
    ref = Weights({"a": np.zeros(4, dtype=dtype)})
    values = np.zeros(4, dtype=dtype)
    values[2] = bad_value
    with pytest.raises(NonFiniteError, match="'a'"):
        Weights({"a": values}).validate_like(ref)


def test_typed_validation_errors_are_value_errors() -> None:
    ref = Weights({"a": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="NaN or infinity"):
        Weights({"a": np.array([np.nan], np.float32)}).validate_like(ref)
    assert issubclass(NonFiniteError, ValidationError)


def test_integer_and_bool_tensors_need_no_finiteness_check() -> None:
    ref = Weights({"i": np.zeros(2, np.int64), "b": np.zeros(2, bool)})
    Weights({"i": np.array([-(2**62), 2**62]), "b": np.array([True, False])}).validate_like(ref)


# --- Layout -----------------------------------------------------------------------------


def test_layout_sizes_count_zero_d_as_one_and_zero_size_as_zero() -> None:
    w = Weights(
        {
            "s": np.array(1.0, np.float32),
            "e": np.zeros((0, 4), np.float32),
            "m": np.zeros((2, 3), np.int8),
        }
    )
    layout = w.layout()
    assert layout.shapes == ((), (0, 4), (2, 3))
    assert layout.sizes == (1, 0, 6)
    assert layout.total_size == 7
    assert layout.dtypes == (np.dtype(np.float32), np.dtype(np.float32), np.dtype(np.int8))


def test_flatten_is_float64_in_layout_order() -> None:
    w = Weights({"b": np.array([3, 4], np.int32), "a": np.array([[1.5], [2.5]], np.float32)})
    flat = w.layout().flatten(w)
    assert flat.dtype == np.float64
    np.testing.assert_array_equal(flat, [3.0, 4.0, 1.5, 2.5])


def test_flatten_of_empty_layout_is_empty() -> None:
    flat = Layout(names=(), shapes=(), dtypes=()).flatten(Weights())
    assert flat.shape == (0,)
    assert flat.dtype == np.float64


def test_unflatten_rounds_integers_to_nearest() -> None:
    layout = Layout(
        names=("i", "u", "b"),
        shapes=((3,), (2,), (2,)),
        dtypes=(np.dtype(np.int32), np.dtype(np.uint8), np.dtype(bool)),
    )
    w = layout.unflatten(np.array([2.6, -2.6, 0.4, 254.7, 3.2, 0.2, 0.9]))
    np.testing.assert_array_equal(w["i"], [3, -3, 0])
    np.testing.assert_array_equal(w["u"], [255, 3])
    np.testing.assert_array_equal(w["b"], [False, True])
    assert [w[n].dtype for n in w] == [np.dtype(np.int32), np.dtype(np.uint8), np.dtype(bool)]


def test_unflatten_does_not_alias_or_change_its_input() -> None:
    layout = Layout(names=("a",), shapes=((2,),), dtypes=(np.dtype(np.float64),))
    flat = np.array([1.0, 2.0])
    w = layout.unflatten(flat)
    w["a"][0] = 99.0  # our own copy; the caller's vector must not change
    np.testing.assert_array_equal(flat, [1.0, 2.0])


# Values a float64 vector holds exactly, per dtype.
_EXACT_DTYPES = [
    np.dtype(np.float16),
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(np.int8),
    np.dtype(np.int16),
    np.dtype(np.int32),
    np.dtype(np.uint8),
    np.dtype(bool),
]


@st.composite
def exact_weights(draw: st.DrawFn) -> Weights:
    names = draw(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=5))
    arrays = {}
    for name in names:
        dtype = draw(st.sampled_from([*_EXACT_DTYPES, np.dtype(np.int64)]))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
        if dtype == np.int64:
            # int64 goes through float64: exact within +-2**53
            elements = st.integers(min_value=-(2**53), max_value=2**53)
        elif dtype.kind == "f":
            elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
        else:
            elements = None
        arrays[name] = draw(hnp.arrays(dtype, shape, elements=elements))
    return Weights(arrays)


@settings(deadline=None)
@given(exact_weights())
def test_flatten_unflatten_round_trip(w: Weights) -> None:
    layout = w.layout()
    flat = layout.flatten(w)
    assert flat.shape == (layout.total_size,)
    back = layout.unflatten(flat)
    assert list(back) == list(w)
    for name in w:
        assert back[name].dtype == w[name].dtype
        assert back[name].shape == w[name].shape
        np.testing.assert_array_equal(back[name], w[name])
    back.validate_like(layout)


def test_scaffolds_control_variates_travel_as_auxiliary_tensors() -> None:
    # One prefix for the strategy that sends c and the client that reads it back.
    assert SCAFFOLD_PREFIX == AUX_PREFIX + "scaffold/"
    assert not hasattr(client_side, "CONTROL_PREFIX")
    assert not hasattr(server_side, "CONTROL_PREFIX")
    sent = Weights({"w": np.zeros(2), SCAFFOLD_PREFIX + "w": np.ones(2)})
    model, aux = sent.split_aux()
    assert list(model) == ["w"]
    assert list(aux) == [SCAFFOLD_PREFIX + "w"]
