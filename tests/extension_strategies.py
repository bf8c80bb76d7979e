"""Hypothesis strategies for fedhive's typed client instructions (any valid set of them)."""

from __future__ import annotations

from hypothesis import strategies as st

from fedhive.core.codecs import (
    MAX_ZSTD_LEVEL,
    Pipeline,
    RandomK,
    StochasticQuantization,
    TopK,
    Zstd,
)
from fedhive.core.extensions import (
    ClipAndNoise,
    Compression,
    DpSgd,
    Extension,
    PartialWork,
    Proximal,
    SecAggWeighting,
    Weighting,
)

positive = st.floats(min_value=1e-300, max_value=1e300)
non_negative = st.just(0.0) | positive


@st.composite
def clip_and_noise(draw: st.DrawFn) -> ClipAndNoise:
    norm = draw(st.none() | positive)
    return ClipAndNoise(
        noise_multiplier=draw(positive),
        clipping_norm=norm,
        noise_std=0.0 if norm is None else draw(non_negative),
        seeded=draw(st.booleans()),
    )


fractions = st.floats(min_value=0, max_value=1, exclude_min=True) | st.just(1)
lossy_stages = st.one_of(
    st.builds(
        StochasticQuantization,
        bits=st.sampled_from([4, 8]),
        block_size=st.none() | st.integers(1, 2**31),
    ),
    st.builds(TopK, fraction=fractions),
    st.builds(RandomK, fraction=fractions, error_feedback=st.booleans()),
)


@st.composite
def pipelines(draw: st.DrawFn) -> Pipeline:
    """At most one lossy stage, then optionally zstd, with any valid field values."""
    stages = [draw(lossy_stages)] if draw(st.booleans()) else []
    if draw(st.booleans()):
        stages.append(Zstd(draw(st.integers(1, MAX_ZSTD_LEVEL))))
    return Pipeline(tuple(stages))


def compressions() -> st.SearchStrategy[Compression]:
    """A :class:`Compression` of any valid pipeline."""
    return pipelines().map(lambda pipeline: Compression(pipeline=pipeline))


one_of_each: list[st.SearchStrategy[Extension]] = [
    st.builds(Proximal, mu=non_negative),
    st.builds(PartialWork, max_local_steps=st.integers(1, 2**32 - 1)),
    clip_and_noise(),
    st.builds(SecAggWeighting, weighting=st.sampled_from(Weighting)),
    st.builds(
        DpSgd,
        noise_multiplier=positive,
        max_grad_norm=positive,
        delta=st.floats(min_value=1e-300, max_value=1.0, exclude_max=True),
    ),
    compressions(),
]


@st.composite
def extensions(draw: st.DrawFn) -> tuple[Extension, ...]:
    """Any subset of the instruction types, one valid value of each."""
    chosen = draw(st.lists(st.sampled_from(range(len(one_of_each))), unique=True))
    return tuple(draw(one_of_each[i]) for i in chosen)
