"""A hypothesis strategy for every pipeline the codec specs allow."""

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

fractions = st.floats(min_value=0, max_value=1, exclude_min=True) | st.just(1)
lossy = st.one_of(
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
    stages = [draw(lossy)] if draw(st.booleans()) else []
    if draw(st.booleans()):
        stages.append(Zstd(draw(st.integers(1, MAX_ZSTD_LEVEL))))
    return Pipeline(tuple(stages))
