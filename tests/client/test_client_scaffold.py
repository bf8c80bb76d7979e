"""TorchClient under SCAFFOLD: the drift correction enters each step, the variate updates."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fedhive.client.base import Context  # noqa: E402
from fedhive.client.torch import TorchClient, weights_from_module  # noqa: E402
from fedhive.core import ClientConfig, Weights, run_stream  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE_STEP = ClientConfig(local_epochs=1, batch_size=16, learning_rate=0.1)


def setup() -> tuple[TorchClient, Weights]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    x = torch.randn(16, 3)
    y = torch.randn(16, 2)
    client = TorchClient(model=model, train_data=(x, y), loss_fn=nn.MSELoss())
    return client, weights_from_module(model)


def context(aux: Weights, state: dict[str, object] | None = None) -> Context:
    return Context(
        client_id="c0",
        round=1,
        seed=run_stream(0).child("c0"),
        state=dict(state or {}),  # type: ignore[arg-type]
        aux=aux,
    )


def controls(weights: Weights, value: float) -> Weights:
    floats = {k: v for k, v in weights.items() if v.dtype.kind == "f"}
    return Weights({f"@scaffold/{k}": np.full_like(v, value) for k, v in floats.items()})


def test_one_step_moves_by_minus_lr_times_the_correction() -> None:
    client, weights = setup()
    plain = client.fit(weights, ONE_STEP, context(Weights())).weights
    ctx = context(controls(weights, 0.5))
    result = client.fit(weights, ONE_STEP, ctx)
    assert plain is not None
    assert result.weights is not None
    assert result.aux is not None
    # c - c_i = 0.5 on every parameter (c_i starts at zero): y = y_plain - lr * 0.5
    for name in ("0.weight", "0.bias", "1.weight", "1.bias"):
        np.testing.assert_allclose(result.weights[name], plain[name] - 0.05, rtol=1e-5, atol=1e-6)
    # buffers (running statistics) get a variate but no correction
    np.testing.assert_array_equal(result.weights["1.running_mean"], plain["1.running_mean"])
    assert sorted(result.aux) == sorted(controls(weights, 0.0))
    assert "scaffold/0.weight" in ctx.state


def test_variate_change_is_option_two_and_persists_in_state() -> None:
    client, weights = setup()
    ctx = context(controls(weights, 0.2), {"scaffold/0.bias": np.full(2, 0.1, np.float32)})
    result = client.fit(weights, ONE_STEP, ctx)
    assert result.weights is not None
    assert result.aux is not None
    step = (weights["0.bias"] - result.weights["0.bias"]) / ONE_STEP.learning_rate
    expected = 0.1 - 0.2 + step  # c_i - c + (x - y) / (K lr), K = 1
    # float32 arithmetic on terms of magnitude |c_i| + |c| + |step|: a few roundings of
    # float32 epsilon each (values here are near zero, so a relative tolerance is meaningless).
    atol = 8 * np.finfo(np.float32).eps * float(np.max(0.1 + 0.2 + np.abs(step)))
    np.testing.assert_allclose(ctx.state["scaffold/0.bias"], expected, rtol=0, atol=atol)
    np.testing.assert_allclose(result.aux["@scaffold/0.bias"], expected - 0.1, rtol=0, atol=atol)
