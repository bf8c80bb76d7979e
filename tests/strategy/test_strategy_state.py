"""Typed strategy state (fedhive.strategy.state): the codec round-trips every component
state bit for bit, refuses records of another format, kind, version or shape with a
StateError, and an algorithm refuses a resumed state that is not its own."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedhive.core.serde import RecordValue, record_from_bytes, record_to_bytes
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError, SerializationError, StateError
from fedhive.strategy import (
    BufferState,
    Control,
    Moments,
    Stateless,
    StrategyState,
    fedadam,
    fedavg,
    fedbuff,
    scaffold,
    state_from_bytes,
    state_to_bytes,
)
from fedhive.strategy.state import FORMAT, ComponentState

# --- round trip ---------------------------------------------------------------------------

# Every float64 bit pattern the codec may meet: NaNs (of any payload), infinities, -0.0,
# subnormals.
FLOAT_BITS = st.integers(min_value=0, max_value=2**64 - 1).map(
    lambda bits: np.array([bits], dtype=np.uint64).view(np.float64)[0]
)


def vectors(size: int) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, size, elements=FLOAT_BITS | st.floats(width=64))


COUNTS = st.integers(min_value=0, max_value=2**63 - 1)
moments = st.integers(min_value=0, max_value=12).flatmap(
    lambda n: st.builds(Moments, m=vectors(n), v=vectors(n), step=COUNTS)
)
controls = st.integers(min_value=0, max_value=12).flatmap(
    lambda n: st.builds(Control, c=vectors(n))
)
buffers = st.builds(BufferState, version=COUNTS)
parts = st.one_of(moments, controls, buffers, st.just(Stateless()))
states = st.lists(parts, max_size=6).map(lambda p: StrategyState(tuple(p)))


def assert_identical(got: ComponentState, want: ComponentState) -> None:
    assert type(got) is type(want)
    got_fields, want_fields = got.fields(), want.fields()
    assert set(got_fields) == set(want_fields)
    for name, value in want_fields.items():
        restored = got_fields[name]
        if isinstance(value, np.ndarray):
            assert isinstance(restored, np.ndarray), name
            assert restored.dtype == np.float64, name
            assert restored.shape == value.shape, name
            # bit for bit: NaN payloads, signed zeros and all
            assert restored.view(np.uint64).tolist() == value.view(np.uint64).tolist(), name
        else:
            assert type(restored) is type(value), name
            assert restored == value, name


@given(states)
def test_every_state_round_trips_bit_for_bit(state: StrategyState) -> None:
    data = state_to_bytes(state)
    restored = state_from_bytes(data)
    assert len(restored.parts) == len(state.parts)
    for got, want in zip(restored.parts, state.parts, strict=True):
        assert_identical(got, want)
    assert state_to_bytes(restored) == data  # and writing it again gives the same bytes


def test_a_buffer_version_field_is_not_the_codecs_version() -> None:
    # BufferState has a field named `version`, the codec a per-part version: 7 is the
    # number of committed versions, 1 the state format's version
    state = StrategyState((Stateless(), BufferState(7)))
    assert state_from_bytes(state_to_bytes(state)).of(BufferState).version == 7


def test_state_error_is_a_config_error() -> None:
    assert issubclass(StateError, ConfigError)


# --- refusals of the codec ----------------------------------------------------------------

WEIGHTS = Weights({"w": np.zeros(2)})


def record_of(state: StrategyState) -> dict[str, RecordValue]:
    """The record a state is stored as (meta keys ``<i>:kind``/``<i>:version``, fields
    ``<i>.<name>``), to edit into a bad one."""
    record = record_from_bytes(state_to_bytes(state))
    assert record["format"] == FORMAT
    return record


def adam_record() -> dict[str, RecordValue]:
    return record_of(fedadam().initial_state(WEIGHTS))  # Moments, then Stateless


def test_a_record_of_format_1_is_refused() -> None:
    # what earlier releases stored: a string-keyed dict of arrays and scalars
    old = record_to_bytes({"opt.m": np.zeros(2), "opt.v": np.full(2, 1e-6), "opt.step": 3})
    with pytest.raises(StateError, match=r"format None, this release reads 2 .*start a new run"):
        state_from_bytes(old)
    old_scaffold = record_to_bytes({"scaffold.c": np.zeros(2)})
    with pytest.raises(StateError, match=r"format None, this release reads 2"):
        state_from_bytes(old_scaffold)
    marked = record_to_bytes({"format": 1, "opt.m": np.zeros(2)})
    with pytest.raises(StateError, match=r"format 1, this release reads 2"):
        state_from_bytes(marked)


def test_bytes_that_are_no_record_are_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        state_from_bytes(b"not a record")


@pytest.mark.parametrize("kind", ["adam_moments", "", 3], ids=["unknown", "empty", "int"])
def test_an_unknown_kind_is_refused(kind: Any) -> None:
    record = adam_record()
    record["0:kind"] = kind
    with pytest.raises(StateError, match=rf"component 0 has unknown kind {kind!r}"):
        state_from_bytes(record_to_bytes(record))


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_a_wrong_version_is_refused(version: Any) -> None:
    record = adam_record()
    record["0:version"] = version
    with pytest.raises(
        StateError, match=rf"adaptive_moments state version {version!r}, this release reads 1"
    ):
        state_from_bytes(record_to_bytes(record))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("parts", r"parts must be an int >= 0, got None"),
        ("0:kind", r"component 0 has unknown kind None"),
        ("0:version", r"adaptive_moments state version None"),
        ("0.m", r"adaptive_moments state: m must be a float vector, got None"),
        ("0.v", r"adaptive_moments state: v must be a float vector, got None"),
        ("0.step", r"adaptive_moments state: step must be an int >= 0, got None"),
        ("1:kind", r"component 1 has unknown kind None"),  # a part short
    ],
)
def test_a_missing_field_is_refused(key: str, message: str) -> None:
    record = adam_record()
    del record[key]
    with pytest.raises(StateError, match=message):
        state_from_bytes(record_to_bytes(record))


def test_missing_fields_of_the_other_kinds_are_refused() -> None:
    for state, key, message in (
        (scaffold().initial_state(WEIGHTS), "1.c", r"control_variate state: c must be"),
        (fedbuff().initial_state(WEIGHTS), "1.version", r"buffer state: version must be"),
    ):
        record = record_of(state)
        del record[key]
        with pytest.raises(StateError, match=message):
            state_from_bytes(record_to_bytes(record))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("parts", "3", r"parts must be an int >= 0, got '3'"),
        ("parts", -1, r"parts must be an int >= 0, got -1"),
        ("parts", True, r"parts must be an int >= 0, got True"),
        ("0.m", 0.0, r"m must be a float vector, got 0\.0"),
        ("0.m", np.zeros((1, 2)), r"m must be a float vector, got an array of shape \(1, 2\)"),
        ("0.m", np.zeros(2, np.int64), r"m must be a float vector, got .* dtype int64"),
        ("0.v", "v", r"v must be a float vector, got 'v'"),
        ("0.step", 1.0, r"step must be an int >= 0, got 1\.0"),
        ("0.step", True, r"step must be an int >= 0, got True"),
        ("0.step", -1, r"step must be an int >= 0, got -1"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused(key: str, value: Any, message: str) -> None:
    record = adam_record()
    record[key] = value
    with pytest.raises(StateError, match=message):
        state_from_bytes(record_to_bytes(record))


def test_fields_of_the_wrong_type_in_the_other_kinds_are_refused() -> None:
    for state, key, value, message in (
        (scaffold().initial_state(WEIGHTS), "1.c", "c", r"c must be a float vector, got 'c'"),
        (scaffold().initial_state(WEIGHTS), "1.c", np.zeros((2, 1)), r"c must be a float vector"),
        (fedbuff().initial_state(WEIGHTS), "1.version", 1.5, r"version must be an int >= 0"),
        (fedbuff().initial_state(WEIGHTS), "1.version", -3, r"version must be an int >= 0"),
    ):
        record = record_of(state)
        record[key] = value
        with pytest.raises(StateError, match=message):
            state_from_bytes(record_to_bytes(record))


def test_moments_of_two_sizes_are_refused() -> None:
    record = record_of(StrategyState((Moments(np.zeros(5), np.ones(5), 2),)))
    record["0.v"] = np.ones(3)
    with pytest.raises(StateError, match=r"the second moment holds 3 values, the model needs 5"):
        state_from_bytes(record_to_bytes(record))


# --- reading parts ------------------------------------------------------------------------

STATE = StrategyState((Moments(np.zeros(2), np.ones(2), 1), Control(np.zeros(2)), Stateless()))


def test_part_reads_a_component_of_its_kind() -> None:
    assert STATE.part(1, Control) is STATE.parts[1]
    assert STATE.of(Moments) is STATE.parts[0]


@pytest.mark.parametrize("index", [3, -1, 100])
def test_part_with_an_index_out_of_range_is_refused(index: int) -> None:
    with pytest.raises(
        StateError,
        match=rf"3 component states, the algorithm reads component {index} \(control_variate\)",
    ):
        STATE.part(index, Control)


def test_part_of_another_kind_is_refused() -> None:
    with pytest.raises(
        StateError,
        match=r"component 0 holds 'adaptive_moments' state, the algorithm expects "
        r"'control_variate'",
    ):
        STATE.part(0, Control)
    with pytest.raises(StateError, match=r"component 2 holds 'none' state, .* expects 'buffer'"):
        STATE.part(2, BufferState)


def test_of_needs_exactly_one_state_of_the_kind() -> None:
    with pytest.raises(StateError, match=r"holds 0 'buffer' states, not one"):
        STATE.of(BufferState)
    with pytest.raises(StateError, match=r"holds 2 'control_variate' states, not one"):
        StrategyState((Control(np.zeros(1)), Control(np.zeros(1)))).of(Control)
    with pytest.raises(StateError, match=r"holds 0 'none' states, not one"):
        StrategyState(()).of(Stateless)


# --- an algorithm checks a resumed state --------------------------------------------------


def test_an_algorithms_own_state_passes_its_check() -> None:
    for algorithm in (fedavg(), fedadam(), scaffold(), fedbuff()):
        state = algorithm.initial_state(WEIGHTS)
        algorithm.check_state(state, WEIGHTS)
        algorithm.check_state(state_from_bytes(state_to_bytes(state)), WEIGHTS)


@pytest.mark.parametrize("size", [1, 3, 0])
def test_scaffolds_variate_of_another_size_is_refused(size: int) -> None:
    algorithm = scaffold()
    state = algorithm.initial_state(WEIGHTS).replace_part(1, Control(np.zeros(size)))
    with pytest.raises(
        StateError, match=rf"control variate c holds {size} values, the model needs 2"
    ):
        algorithm.check_state(state, WEIGHTS)


def test_moments_of_another_size_are_refused() -> None:
    algorithm = fedadam()
    tau2 = algorithm.optimizer.tau**2
    for moments, which, size in (
        (Moments(np.zeros(3), np.full(3, tau2)), "first", 3),  # another model
        (Moments(np.zeros(2), np.full(4, tau2)), "second", 4),  # only v
    ):
        state = algorithm.initial_state(WEIGHTS).replace_part(0, moments)
        with pytest.raises(
            StateError, match=rf"optimizer's {which} moment holds {size} values, the model needs 2"
        ):
            algorithm.check_state(state, WEIGHTS)


def test_fedavgs_state_given_to_scaffold_is_refused() -> None:
    state = fedavg().initial_state(WEIGHTS)
    with pytest.raises(StateError, match=r"2 component states, the algorithm has 3"):
        scaffold().check_state(state, WEIGHTS)
    # and the other way round
    with pytest.raises(StateError, match=r"3 component states, the algorithm has 2"):
        fedavg().check_state(scaffold().initial_state(WEIGHTS), WEIGHTS)


def test_fedadams_state_given_to_fedavg_is_refused() -> None:
    with pytest.raises(
        StateError,
        match=r"component 0 holds 'adaptive_moments' state, the algorithm expects 'none'",
    ):
        fedavg().check_state(fedadam().initial_state(WEIGHTS), WEIGHTS)
    with pytest.raises(
        StateError,
        match=r"component 0 holds 'none' state, the algorithm expects 'adaptive_moments'",
    ):
        fedadam().check_state(fedavg().initial_state(WEIGHTS), WEIGHTS)
    # the schedule's state too: a buffered run's state is not a synchronous one's
    with pytest.raises(StateError, match=r"component 1 holds 'buffer' state, .* expects 'none'"):
        fedavg().check_state(fedbuff().initial_state(WEIGHTS), WEIGHTS)


def test_the_refusals_survive_a_store_round_trip() -> None:
    # the resumed path: bytes from the store, then the algorithm's check
    stored = state_to_bytes(fedadam().initial_state(Weights({"w": np.zeros(3)})))
    restored = state_from_bytes(stored)
    assert math.isclose(float(restored.of(Moments).v[0]), fedadam().optimizer.tau ** 2)
    with pytest.raises(StateError, match=r"first moment holds 3 values, the model needs 2"):
        fedadam().check_state(restored, WEIGHTS)
