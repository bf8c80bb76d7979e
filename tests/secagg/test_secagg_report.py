"""A round's result: the mean of what was unmasked, or the abort as a typed error."""

from __future__ import annotations

import numpy as np
import pytest

from fedhive.errors import SecAggError
from fedhive.secagg import ClientStatus, SecAggResult


def test_the_mean_divides_the_weighted_sum_by_the_total_weight() -> None:
    result = SecAggResult(
        round=3,
        weighted_sum=np.asarray([6.0, -3.0]),
        total_weight=3,
        included=("a", "b"),
        statuses={"a": ClientStatus.OK, "b": ClientStatus.OK},
    )
    assert not result.aborted
    assert result.mean().tolist() == [2.0, -1.0]


@pytest.mark.parametrize(("weighted_sum", "total_weight"), [(None, 2), (np.zeros(2), 0)])
def test_a_result_with_no_sum_or_no_weight_has_no_mean(
    weighted_sum: np.ndarray | None, total_weight: int
) -> None:
    result = SecAggResult(
        round=3, weighted_sum=weighted_sum, total_weight=total_weight, included=(), statuses={}
    )
    with pytest.raises(SecAggError, match="holds no weighted sum") as caught:
        result.mean()
    assert caught.value.round == 3
