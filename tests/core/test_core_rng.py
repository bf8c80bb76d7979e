"""Seed streams: children depend only on (parent seed, label), differ per label, and record
their path."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedhive.core.rng import SeedStream, run_stream

seeds = st.integers(min_value=0, max_value=2**64 - 1)
labels = st.text(max_size=16) | st.integers(min_value=0, max_value=10**6)


@given(seeds, labels)
def test_children_are_deterministic(seed: int, label: str | int) -> None:
    a = SeedStream(seed).child(label)
    b = SeedStream(seed).child(label)
    assert a == b
    assert 0 <= a.seed < 2**64


@given(seeds, st.lists(st.text(max_size=12), min_size=2, max_size=20, unique=True))
def test_distinct_labels_give_distinct_seeds(seed: int, names: list[str]) -> None:
    parent = SeedStream(seed)
    children = [parent.child(name).seed for name in names]
    assert len(set(children)) == len(names)
    assert parent.seed not in children


@given(st.lists(seeds, min_size=2, max_size=10, unique=True), labels)
def test_distinct_parents_give_distinct_children(parents: list[int], label: str | int) -> None:
    assert len({SeedStream(p).child(label).seed for p in parents}) == len(parents)


@given(seeds, labels)
def test_child_seed_is_sha256_of_parent_seed_and_label(seed: int, label: str | int) -> None:
    # Pins the derivation: a changed formula would silently change every run's results.
    digest = hashlib.sha256(seed.to_bytes(8, "little") + b"/" + str(label).encode()).digest()
    assert SeedStream(seed).child(label).seed == int.from_bytes(digest[:8], "little")


def test_path_records_every_label() -> None:
    stream = run_stream(42).child(3).child("client-7").child("fit")
    assert stream.path == "run/3/client-7/fit"
    assert SeedStream(1, "custom").child("x").path == "custom/x"


def test_path_does_not_change_the_seed_derivation() -> None:
    assert SeedStream(9, "a").child("x").seed == SeedStream(9, "b").child("x").seed


def test_order_of_derivation_matters() -> None:
    root = run_stream(0)
    assert root.child("a").child("b").seed != root.child("b").child("a").seed


def test_numpy_generators_repeat_per_stream_and_differ_between_streams() -> None:
    stream = run_stream(7).child(1)
    first = stream.numpy().integers(0, 2**62, size=8)
    again = stream.numpy().integers(0, 2**62, size=8)
    other = run_stream(7).child(2).numpy().integers(0, 2**62, size=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@given(seeds)
def test_torch_seed_fits_a_signed_64_bit_int(seed: int) -> None:
    torch_seed = SeedStream(seed).torch_seed
    assert 0 <= torch_seed < 2**63
    assert torch_seed == seed % 2**63


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_outside_64_bits_is_refused(seed: int) -> None:
    with pytest.raises(ValueError, match="seed must be in"):
        SeedStream(seed)


def test_run_stream_wraps_any_int_into_64_bits() -> None:
    assert run_stream(-1).seed == 2**64 - 1
    assert run_stream(2**64 + 5).seed == 5
    assert run_stream(5) == SeedStream(5, "run")


def test_extreme_seeds_derive_children() -> None:
    assert SeedStream(0).child("x") != SeedStream(2**64 - 1).child("x")


def test_streams_are_frozen() -> None:
    stream = run_stream(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stream.seed = 2  # type: ignore[misc]
