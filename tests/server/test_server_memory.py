"""Server memory: aggregating many updates is streaming, bounded by the model's size.

The exact sum (two int64 words per parameter: 4x a float32 model) is the floor; one
update in flight adds its received bytes and its decoded arrays (2x). The issue's
target of 3x cannot be met without giving up exact, order-independent sums (which the
seeded model hashes rest on); the bound below is the streaming design's, 7x, and a
path that kept a float64 copy of each update, or the updates, fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fedhive
from fedhive.core.weights import Weights
from fedhive.strategy.aggregate import ExactWeightedSum

ROOT = Path(__file__).resolve().parents[2]
PARAMS = 5_000_000
UPDATES = 1000


@pytest.mark.slow
def test_aggregating_1000_updates_of_5m_parameters_stays_within_7x_the_model() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(fedhive.__file__).parents[1]), str(ROOT)]),
    }
    out = subprocess.run(
        [sys.executable, "-m", "tests.server.aggregation_memory", str(PARAMS), str(UPDATES)],
        check=True,
        capture_output=True,
        text=True,
        timeout=540,
        env=env,
        cwd=ROOT,
    )
    figures = json.loads(out.stdout)
    model = figures["model_bytes"]
    assert model == 4 * PARAMS
    above = figures["peak"] - figures["baseline"]
    assert above <= 7 * model, f"peak {above / model:.2f}x the model above the baseline"


def test_the_chunked_exact_sum_has_the_bits_of_the_flat_one() -> None:
    rng = np.random.default_rng(5)
    sizes = (70_001, 3, 65_536, 1)
    layouts = []
    flat_sum, chunked_sum = ExactWeightedSum(sum(sizes)), ExactWeightedSum(sum(sizes))
    for step in range(4):
        weights = Weights(
            {
                f"t{i}": rng.normal(0, 10.0 ** (step - 2), n).astype(np.float32)
                for i, n in enumerate(sizes)
            }
        )
        layout = weights.layout()
        layouts.append(layout)
        flat_sum.add(layout.flatten(weights), step + 3)
        chunked_sum.add_weights(layout, weights, step + 3)
    np.testing.assert_array_equal(flat_sum.total(), chunked_sum.total())
    assert chunked_sum.total_weight == flat_sum.total_weight
    pieces = np.concatenate(list(layouts[0].chunks(weights)))
    np.testing.assert_array_equal(pieces, layouts[0].flatten(weights))


def test_a_refused_chunked_update_leaves_the_sum_untouched() -> None:
    weights = Weights({"a": np.ones(70_000, np.float32), "b": np.ones(5, np.float32)})
    weights["b"][-1] = np.nan
    total = ExactWeightedSum(70_005)
    with pytest.raises(fedhive.errors.AggregationError, match="not finite"):
        total.add_weights(weights.layout(), weights, 2)
    assert total.count == 0
    assert not total.total().any()
