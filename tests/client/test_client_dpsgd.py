"""DP-SGD in the torch adapter: per-sample clipping and noise through Opacus, accounted."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")
dp_accounting = pytest.importorskip("dp_accounting")
from torch import nn  # noqa: E402

from fedhive.client.base import Context, TaskOrigin  # noqa: E402
from fedhive.client.pipeline import run_fit  # noqa: E402
from fedhive.client.privacy import load_ledger  # noqa: E402
from fedhive.client.torch import TorchClient, weights_from_module  # noqa: E402
from fedhive.core import ClientConfig, Weights, run_stream  # noqa: E402
from fedhive.core.extensions import DpSgd  # noqa: E402
from fedhive.core.messages import FitReply, FitTask, PrivacyBudget  # noqa: E402
from fedhive.errors import ConfigError  # noqa: E402
from fedhive.privacy import GaussianEvent, epsilon  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def client() -> tuple[TorchClient, Weights]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(64, 4)
    y = torch.randint(0, 3, (64,))
    return TorchClient(model=model, train_data=(x, y)), weights_from_module(model)


def config(z: float, clip: float = 1.0, epochs: int = 1) -> ClientConfig:
    dp = DpSgd(noise_multiplier=z, max_grad_norm=clip)
    return ClientConfig(local_epochs=epochs, batch_size=16, learning_rate=0.5, extensions=(dp,))


def fit(
    z: float, seed: int = 0, clip: float = 1.0, *, simulated: bool = True
) -> tuple[Weights, dict[str, float]]:
    model_client, weights = client()
    ctx = Context(client_id="c", round=1, seed=run_stream(seed).child("c"), simulated=simulated)
    result = model_client.fit(weights, config(z, clip), ctx)
    assert result.weights is not None
    update = Weights({k: result.weights[k] - weights[k] for k in weights})
    return update, dict(result.metrics)


def norm(update: Weights) -> float:
    return float(np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in update.values())))


def test_per_sample_clipping_bounds_each_step() -> None:
    # Without noise, a step moves by lr * mean of clipped per-sample gradients: at most
    # lr * clip per step; 4 steps of lr 0.5 with clip 0.01 move less than 0.02.
    update, _ = fit(z=1e-6, clip=0.01)
    assert 0 < norm(update) <= 4 * 0.5 * 0.01 + 1e-6


def test_simulated_noise_is_added_and_seeded() -> None:
    quiet, _ = fit(z=1e-6)
    noisy, _ = fit(z=5.0)
    again, _ = fit(z=5.0)
    other, _ = fit(z=5.0, seed=1)
    assert norm(noisy) > 3 * norm(quiet)
    assert all(np.array_equal(noisy[k], again[k]) for k in noisy)
    assert not all(np.array_equal(noisy[k], other[k]) for k in noisy)


def test_deployed_noise_is_not_reproducible_from_the_task_seed() -> None:
    # The server knows the task's seed: outside simulation Opacus's generator is seeded
    # from the OS, so two fits of the same task draw different noise.
    noisy, _ = fit(z=5.0, simulated=False)
    again, _ = fit(z=5.0, simulated=False)
    seeded, _ = fit(z=5.0)
    assert not all(np.array_equal(noisy[k], again[k]) for k in noisy)
    assert not all(np.array_equal(noisy[k], seeded[k]) for k in noisy)


def test_a_dpsgd_release_charges_the_device_ledger() -> None:
    model_client, weights = client()
    budget = PrivacyBudget(epsilon_max=50.0, delta=1e-5)
    fit_config = replace(config(1.2), privacy_budget=budget)
    state: dict[str, Any] = {}
    for index in range(2):
        task = FitTask(round=1, client_id="c", version="v", seed=3, config=fit_config)
        origin = TaskOrigin(run_id="r", task_id=f"t{index}")
        outcome = run_fit(model_client, task, weights, state, origin=origin)
        assert isinstance(outcome, FitReply)
    event = GaussianEvent(noise_multiplier=1.2, sample_rate=16 / 64, count=4)
    ledger = load_ledger(state)
    assert [e.event for e in ledger.entries] == [event, event]
    accountant = dp_accounting.rdp.RdpAccountant()
    step = dp_accounting.PoissonSampledDpEvent(16 / 64, dp_accounting.GaussianDpEvent(1.2))
    accountant.compose(dp_accounting.SelfComposedDpEvent(step, 8))
    assert ledger.spent(target_delta=1e-5) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)


def test_reported_epsilon_counts_every_step_at_the_batch_sampling_rate() -> None:
    _, metrics = fit(z=1.2)
    expected = epsilon(
        [GaussianEvent(noise_multiplier=1.2, sample_rate=16 / 64, count=4)], target_delta=1e-5
    )
    assert metrics["dpsgd_epsilon"] == pytest.approx(expected)


def test_incomplete_settings_are_refused() -> None:
    with pytest.raises(TypeError, match="max_grad_norm"):
        DpSgd(noise_multiplier=1.0)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="max_grad_norm"):
        DpSgd(noise_multiplier=1.0, max_grad_norm=0.0)
