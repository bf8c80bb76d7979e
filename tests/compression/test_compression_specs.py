"""Codec specs: validated on construction (read from bytes: test_compression_spec_bytes)."""

from __future__ import annotations

import pytest

from fedhive.core.codecs import (
    Pipeline,
    RandomK,
    StochasticQuantization,
    TopK,
    Zstd,
)
from fedhive.errors import ConfigError


@pytest.mark.parametrize(
    "build",
    [
        lambda: StochasticQuantization(bits=2),
        lambda: StochasticQuantization(bits=8.0),  # type: ignore[arg-type]
        lambda: StochasticQuantization(bits=True),  # type: ignore[arg-type]
        lambda: StochasticQuantization(block_size=0),
        lambda: StochasticQuantization(block_size=True),  # type: ignore[arg-type]
        lambda: TopK(0.0),
        lambda: TopK(1.5),
        lambda: TopK(float("nan")),
        lambda: TopK(True),
        lambda: RandomK(-0.1),
        lambda: RandomK(0.1, error_feedback=1),  # type: ignore[arg-type]
        lambda: Zstd(0),
        lambda: Zstd(23),
        lambda: Pipeline((TopK(0.1), StochasticQuantization())),
        lambda: Pipeline((Zstd(), TopK(0.1))),
        lambda: Pipeline((Zstd(), Zstd())),
        lambda: Pipeline(("zstd",)),  # type: ignore[arg-type]
        lambda: Pipeline([Zstd()]),  # type: ignore[arg-type]
    ],
)
def test_bad_values_are_config_errors(build: object) -> None:
    with pytest.raises(ConfigError):
        build()  # type: ignore[operator]


def test_error_feedback_only_for_the_biased_sparsifiers() -> None:
    assert Pipeline((TopK(0.01), Zstd())).error_feedback
    assert Pipeline((RandomK(0.1, error_feedback=True),)).error_feedback
    assert not Pipeline((RandomK(0.1),)).error_feedback
    assert not Pipeline((StochasticQuantization(4, 64), Zstd())).error_feedback
    assert not Pipeline((Zstd(),)).error_feedback
    assert not Pipeline().error_feedback
