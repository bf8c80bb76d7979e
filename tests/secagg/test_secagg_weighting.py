"""A client's integer weight in the masked sum: its capped example count, or 1."""

from __future__ import annotations

import pytest

from fedhive.secagg.weighting import Weighting, client_weight


@pytest.mark.parametrize(
    ("num_examples", "expected"), [(0, 1), (1, 1), (500, 500), (1 << 16, 1 << 16), (10**9, 1 << 16)]
)
def test_examples_weighting_caps_the_count_between_1_and_max_weight(
    num_examples: int, expected: int
) -> None:
    assert client_weight(Weighting.EXAMPLES, num_examples, 1 << 16) == expected


@pytest.mark.parametrize("num_examples", [0, 7, 10**9])
def test_uniform_weighting_weighs_every_client_1(num_examples: int) -> None:
    assert client_weight(Weighting.UNIFORM, num_examples, 1 << 16) == 1
