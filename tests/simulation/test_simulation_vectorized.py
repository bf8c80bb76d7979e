"""The vectorised backend: the local backend's results, trained a cohort at once.

Tolerances. Vectorised and sequential SGD run the same arithmetic in another order: a
batched matmul (and a masked sum for the mean loss) sums each gradient entry's ``K``
products in an order of its own, ``K`` at most the larger of the fan-in (64) and the
batch size. Reordering a float32 sum of ``K`` terms moves it by at most
``K * eps * sum|terms|`` (``eps`` = 2**-23), so one step's parameter update differs by
at most ``lr * K * eps * G``, ``G`` a bound on the gradient magnitudes (``sum|terms|``);
``S`` steps add up to ``S * lr * K * eps * G`` where each step's map is non-expansive
(small-lr SGD on this MLP; the measured differences, at most 1.2e-7, sit three orders of
magnitude below the bound). ``G`` is bounded by ``max|update| / lr`` per step's worth of the largest
update seen, taken >= 1. FedAvg's weighted mean of the clients' results then adds no
more than the largest client's error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fedhive.client.app import ClientApp
from fedhive.client.torch import TorchClient
from fedhive.config import parse_config
from fedhive.config.simulated import Backend
from fedhive.core.extensions import DpSgd
from fedhive.core.messages import ClientConfig, FitReply, FitTask
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.simulation.app import AppSpec
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.backends.vectorized import VectorizedBackend
from fedhive.simulation.backends.vmap_sgd import batch_orders
from fedhive.simulation.engine import run_simulation, simulate
from fedhive.strategy import StrategyName, build_strategy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "digits-mlp"
TESTS = ROOT / "tests"
EPS = float(np.finfo(np.float32).eps)
K = 64  # the longest float32 sum in one gradient entry: fan-in 64 >= batch sizes here
PARAMS = {"num_clients": 10, "alpha": 0.5, "local_test_fraction": 0.0}


def bound(steps: int, lr: float, updates: list[np.ndarray]) -> float:
    """``S * lr * K * eps * G`` with ``G = max(1, max|update| / lr)`` (module docstring)."""
    g = max(1.0, max(float(np.abs(u).max()) for u in updates) / lr)
    return steps * lr * K * EPS * g


def config(backend: str, rounds: int, epochs: int, batch: int) -> Any:
    return parse_config(
        {
            "run": {"app": "app:build", "rounds": rounds, "seed": 7},
            "strategy": {"name": "fedavg", "fraction_fit": 1.0},
            "client": {"local_epochs": epochs, "batch_size": batch, "learning_rate": 0.1},
            "simulation": {"backend": backend},
            "app": PARAMS,
        }
    )


def digits_app() -> Any:
    return AppSpec("app:build", EXAMPLE).build(PARAMS, 7)


def fit_both(
    client_fn: Callable[[str], Any], ids: list[str], cfg: ClientConfig, weights: Weights
) -> tuple[dict[str, Any], dict[str, Any], VectorizedBackend]:
    """One round's replies from the local and the vectorised backend, by client id."""
    tasks = [
        FitTask(round=1, client_id=c, version="v", seed=1000 + i, config=cfg)
        for i, c in enumerate(ids)
    ]
    model = ModelVersion.of(weights)
    local = {o.client_id: o for o in LocalBackend(client_fn).fit(tasks, model)}
    vectorized = VectorizedBackend(client_fn)
    fast = {o.client_id: o for o in vectorized.fit(tasks, model)}
    return local, fast, vectorized


def assert_same_outcome(ours: Any, theirs: Any) -> None:
    """Two fit outcomes equal bit for bit (a reply's arrays compared as arrays)."""
    assert type(ours) is type(theirs)
    if not isinstance(theirs, FitReply):
        assert ours == theirs
        return
    assert (ours.client_id, ours.num_examples, ours.metrics, ours.payload) == (
        theirs.client_id,
        theirs.num_examples,
        theirs.metrics,
        theirs.payload,
    )
    assert list(ours.update) == list(theirs.update)
    for name, delta in theirs.update.items():
        np.testing.assert_array_equal(ours.update[name], delta)


def test_final_model_matches_the_local_backend() -> None:
    epochs, batch, rounds = 2, 8, 2
    local = simulate(config("local", rounds, epochs, batch), base_dir=EXAMPLE)
    fast = simulate(config("vectorized", rounds, epochs, batch), base_dir=EXAMPLE)
    app = digits_app()
    sizes = [len(app.client.client_fn(c)._train[1]) for c in app.client_ids]
    # Unequal step counts (masked stepping) and short last batches (padding).
    assert len({-(-n // batch) for n in sizes}) > 3
    assert any(n % batch for n in sizes)
    steps = rounds * epochs * -(-max(sizes) // batch)
    initial = app.server.initial_weights
    moved = [local.weights[n] - initial[n] for n in initial]
    tolerance = bound(steps, 0.1, moved)
    assert tolerance < 1e-2  # the bound is tight enough to catch a wrong step
    for name in initial:
        np.testing.assert_allclose(fast.weights[name], local.weights[name], rtol=0, atol=tolerance)
    # Same training: the same accuracy to the test set's resolution.
    assert fast.history[-1].centralized["accuracy"] == local.history[-1].centralized["accuracy"]


def test_each_clients_delta_matches_torch_client() -> None:
    app = digits_app()
    cfg = ClientConfig(local_epochs=3, batch_size=8, learning_rate=0.1)
    local, fast, backend = fit_both(
        app.client.client_fn, app.client_ids, cfg, app.server.initial_weights
    )
    assert backend.stats == {"vectorized": len(app.client_ids)}
    for client_id, reply in local.items():
        assert isinstance(reply, FitReply)
        other = fast[client_id]
        assert isinstance(other, FitReply)
        assert other.num_examples == reply.num_examples
        steps = cfg.local_epochs * -(-reply.num_examples // cfg.batch_size)
        tolerance = bound(steps, cfg.learning_rate, list(reply.update.values()))
        for name, delta in reply.update.items():
            np.testing.assert_allclose(other.update[name], delta, rtol=0, atol=tolerance)
        assert other.metrics["train_loss"] == pytest.approx(reply.metrics["train_loss"], 1e-4)


def test_a_wrong_step_is_caught_by_the_tolerance() -> None:
    """The bound is not vacuous: one SGD step fewer (the last epoch cut short) leaves a
    client's delta far outside it."""
    app = digits_app()
    cfg = ClientConfig(local_epochs=3, batch_size=8, learning_rate=0.1)
    short = ClientConfig(local_epochs=2, batch_size=8, learning_rate=0.1)
    local, _, _ = fit_both(app.client.client_fn, app.client_ids, cfg, app.server.initial_weights)
    cut, _, _ = fit_both(app.client.client_fn, app.client_ids, short, app.server.initial_weights)
    client_id = app.client_ids[0]
    full, partial = local[client_id].update, cut[client_id].update
    tolerance = bound(3 * 100, 0.1, list(full.values()))
    assert max(float(np.abs(full[n] - partial[n]).max()) for n in full) > 10 * tolerance


def test_batch_orders_are_torch_clients() -> None:
    """The step indices reproduce TorchClient's batches (a one-batch client draws none)."""
    x = torch.arange(11.0).unsqueeze(1)
    seen: list[torch.Tensor] = []

    def spy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(y.clone())
        return outputs.sum() * 0

    client = TorchClient(model=nn.Linear(1, 1), train_data=(x, torch.arange(11)), loss_fn=spy)
    weights = Weights({k: v.detach().numpy().copy() for k, v in client.model.state_dict().items()})
    app = ClientApp(client_fn=lambda _: client)
    task = FitTask(round=2, client_id="a", version="v", seed=5, config=ClientConfig(batch_size=4))
    list(LocalBackend(app.client_fn).fit([task], ModelVersion.of(weights)))
    from fedhive.core.rng import SeedStream

    seed = SeedStream(5, "run/round/2/client/a/fit").torch_seed
    assert [s.tolist() for s in batch_orders(11, 4, 1, seed)] == [s.tolist() for s in seen]
    assert [s.tolist() for s in batch_orders(3, 4, 2, seed)] == [[0, 1, 2], [0, 1, 2]]


def mixed_client_fn(base: Callable[[str], TorchClient]) -> Callable[[str], TorchClient]:
    """Even clients as the app builds them; odd ones with SGD momentum (not qualifying)."""

    def client_fn(client_id: str) -> TorchClient:
        client = base(client_id)
        if int(client_id.rsplit("-", 1)[1]) % 2 == 0:
            return client
        return TorchClient(
            model=client.model,
            train_data=client._train,
            optimizer_fn=lambda p, c: torch.optim.SGD(p, lr=c.learning_rate, momentum=0.9),
        )

    return client_fn


def test_non_qualifying_clients_fall_back_to_the_local_result_exactly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = digits_app()
    cfg = ClientConfig(local_epochs=2, batch_size=8, learning_rate=0.1)
    with caplog.at_level(logging.INFO, logger="fedhive.simulation"):
        local, fast, backend = fit_both(
            mixed_client_fn(app.client.client_fn),
            app.client_ids,
            cfg,
            app.server.initial_weights,
        )
    assert backend.stats == {"vectorized": 5, "fallback: optimizer not plain SGD": 5}
    assert "5 of 10 fit tasks fell back: optimizer not plain SGD (5)" in caplog.text
    for client_id in app.client_ids[1::2]:  # the fallbacks: bit for bit
        assert_same_outcome(fast[client_id], local[client_id])


def test_dpsgd_falls_back_and_gives_the_local_result() -> None:
    pytest.importorskip("opacus")
    app = digits_app()
    dp = DpSgd(noise_multiplier=1.0, max_grad_norm=1.0)
    cfg = ClientConfig(local_epochs=1, batch_size=8, learning_rate=0.1, extensions=(dp,))
    ids = app.client_ids[:3]
    local, fast, backend = fit_both(app.client.client_fn, ids, cfg, app.server.initial_weights)
    assert backend.stats == {"fallback: DP-SGD": 3}
    for client_id in ids:
        assert_same_outcome(fast[client_id], local[client_id])


def test_numpy_clients_fall_back_with_failures_and_state_as_local() -> None:
    """fake_app's NumPy clients (some faulty): every reply and failure as the local
    backend's, and the client state carries across rounds."""
    ids = ["good-0", "good-1", "nan-0", "raise-0"]
    app = AppSpec("fake_app:build", TESTS).build({"clients": ids}, 0)
    model = ModelVersion.of(app.server.initial_weights)
    local, fast = LocalBackend(app.client.client_fn), VectorizedBackend(app.client.client_fn)
    for rnd in (1, 2):
        tasks = [
            FitTask(round=rnd, client_id=c, version="v", seed=i, config=ClientConfig())
            for i, c in enumerate(ids)
        ]
        for ours, theirs in zip(fast.fit(tasks, model), local.fit(tasks, model), strict=True):
            assert_same_outcome(ours, theirs)
    assert fast.stats == {"fallback: client FakeClient": 8}


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (lambda: nn.Sequential(nn.Linear(64, 32), nn.Dropout(0.1), nn.Linear(32, 10)), "model"),
        (lambda: nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Linear(32, 10)), "model"),
    ],
)
def test_models_that_mix_or_draw_across_a_batch_fall_back(
    model: Callable[[], nn.Module], reason: str
) -> None:
    app = digits_app()
    torch.manual_seed(0)
    module = model()
    weights = Weights({k: v.detach().numpy().copy() for k, v in module.state_dict().items()})

    def client_fn(client_id: str) -> TorchClient:
        return TorchClient(model=module, train_data=app.client.client_fn(client_id)._train)

    cfg = ClientConfig(local_epochs=1, batch_size=8, learning_rate=0.1)
    local, fast, backend = fit_both(client_fn, app.client_ids[:2], cfg, weights)
    assert backend.stats == {f"fallback: {reason} not vectorisable": 2}
    for client_id, reply in local.items():
        assert_same_outcome(fast[client_id], reply)


def test_run_simulation_api_and_scaffold_falls_back_to_the_local_model_exactly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``run_simulation(..., backend=Backend.VECTORIZED)``: SCAFFOLD's control variates
    make every fit fall back, so the model (hash) and federated evaluation are the local
    backend's; FedAvg vectorises and lands within the bound."""
    client = ClientConfig(local_epochs=1, batch_size=16, learning_rate=0.1)
    runs = {}
    for name in (StrategyName.SCAFFOLD, StrategyName.FEDAVG):
        for backend in (Backend.LOCAL, Backend.VECTORIZED):
            strategy = build_strategy(name, {"fraction_fit": 0.5}, client, path="strategy")
            with caplog.at_level(logging.INFO, logger="fedhive.simulation"):
                runs[name, backend] = run_simulation(
                    digits_app(), strategy=strategy, rounds=2, backend=backend, federated_every=1
                )
    scaffold = runs[StrategyName.SCAFFOLD, Backend.VECTORIZED]
    assert scaffold.version == runs[StrategyName.SCAFFOLD, Backend.LOCAL].version
    assert [r.federated for r in scaffold.history] == [
        r.federated for r in runs[StrategyName.SCAFFOLD, Backend.LOCAL].history
    ]
    assert "5 of 5 fit tasks fell back: auxiliary tensors (SCAFFOLD) (5)" in caplog.text
    fast, local = (
        runs[StrategyName.FEDAVG, Backend.VECTORIZED],
        runs[StrategyName.FEDAVG, Backend.LOCAL],
    )
    app = digits_app()
    initial = app.server.initial_weights
    largest = max(len(app.client.client_fn(c)._train[1]) for c in app.client_ids)
    tolerance = bound(2 * -(-largest // 16), 0.1, [local.weights[n] - initial[n] for n in initial])
    for name in initial:
        np.testing.assert_allclose(fast.weights[name], local.weights[name], rtol=0, atol=tolerance)
