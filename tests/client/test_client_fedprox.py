"""FedProx's client side: the proximal term pulls towards w^t, stragglers stop early."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from fedhive.client.base import Context  # noqa: E402
from fedhive.client.proximal import max_local_steps, proximal_coefficient, proximal_gradient  # noqa: E402
from fedhive.client.torch import TorchClient, weights_from_module  # noqa: E402
from fedhive.core import ClientConfig, Weights, run_stream  # noqa: E402
from fedhive.core.extensions import Extension, PartialWork, Proximal  # noqa: E402
from fedhive.core.serde import Scalar  # noqa: E402
from fedhive.errors import ConfigError, ShapeMismatchError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ctx(seed: int = 0) -> Context:
    return Context(client_id="c0", round=1, seed=run_stream(seed).child("c0"))


def config(
    lr: float = 0.05, epochs: int = 2, batch: int = 8, *, mu: float = 0.0, steps: int = 0
) -> ClientConfig:
    asks: list[Extension] = [Proximal(mu=mu)] if mu else []
    if steps:
        asks.append(PartialWork(max_local_steps=steps))
    return ClientConfig(
        local_epochs=epochs, batch_size=batch, learning_rate=lr, extensions=tuple(asks)
    )


def blobs(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 0]], dtype=np.float32)
    x = centers[y] + rng.normal(size=(n, 4)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def distance(a: Weights, b: Weights, names: list[str]) -> float:
    return float(np.sqrt(sum(np.sum((a[k] - b[k]) ** 2) for k in names)))


def trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def fit(client: TorchClient, weights: Weights, cfg: ClientConfig) -> tuple[Weights, int, dict]:
    result = client.fit(weights, cfg, ctx())
    assert result.weights is not None
    return result.weights, result.num_examples, dict(result.metrics)


# --- mu = 0 is plain local training -------------------------------------------------


@pytest.mark.parametrize("mu", [0, 0.0])
def test_zero_mu_is_bitwise_plain_training(mu: float) -> None:
    client = TorchClient(model=mlp(), train_data=blobs())
    start = weights_from_module(client.model)
    plain = client.fit(start, config(), ctx())
    prox = client.fit(start, config(mu=mu), ctx())
    assert plain.weights is not None
    assert prox.weights is not None
    for name in start:
        assert np.array_equal(plain.weights[name], prox.weights[name]), name
    assert plain.num_examples == prox.num_examples == 64
    assert plain.metrics == prox.metrics
    assert "local_steps" not in plain.metrics


# --- the proximal term ----------------------------------------------------------------


def test_large_mu_keeps_weights_near_the_global_model() -> None:
    client = TorchClient(model=mlp(), train_data=blobs())
    start = weights_from_module(client.model)
    names = trainable_names(client.model)
    free, _, _ = fit(client, start, config(epochs=4))
    held, _, metrics = fit(client, start, config(epochs=4, mu=10.0))  # lr*mu = 0.5
    assert distance(held, start, names) < 0.2 * distance(free, start, names)
    assert distance(held, start, names) > 0  # it still trains
    assert np.isfinite(metrics["train_loss"])


def test_linear_gradient_matches_closed_form() -> None:
    # loss = mean(w.x) has the constant gradient g = mean(x): SGD on loss + (mu/2)||w - w0||^2
    # gives d_{k+1} = (1 - lr*mu) d_k - lr*g for d = w - w0, i.e.
    # d_K = -g * (1 - (1 - lr*mu)^K) / mu, which tends to -g/mu, the minimiser.
    torch.manual_seed(1)
    model = nn.Linear(3, 1, bias=False)
    x = torch.tensor([[1.0, 2.0, -1.0], [3.0, 0.0, 1.0]])
    y = torch.zeros(2)

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return out.mean()

    client = TorchClient(model=model, train_data=(x, y), loss_fn=loss_fn)
    start = weights_from_module(model)
    lr, mu, steps = 0.1, 2.0, 5  # one batch per epoch: one step per epoch
    new, _, _ = fit(client, start, config(lr=lr, epochs=steps, mu=mu))
    g = x.mean(dim=0).numpy()
    expected = start["weight"] - g * (1 - (1 - lr * mu) ** steps) / mu
    # float32 steps on terms of magnitude |w| + |g|: a few roundings per step
    atol = (
        4
        * steps
        * np.finfo(np.float32).eps
        * float(np.abs(start["weight"]).max() + np.abs(g).max())
    )
    np.testing.assert_allclose(new["weight"], expected, rtol=0, atol=atol)


def test_matches_sgd_on_the_loss_with_the_term_added() -> None:
    data = blobs(24)
    client = TorchClient(model=mlp(), train_data=data)
    start = weights_from_module(client.model)
    mu, lr = 3.0, 0.05
    got, _, _ = fit(client, start, config(lr=lr, epochs=3, batch=24, mu=mu))

    reference = mlp()  # the same initial weights; the literal eq. 2 objective, by autograd
    reference.train()
    anchors = [p.detach().clone() for p in reference.parameters()]
    optimizer = torch.optim.SGD(reference.parameters(), lr=lr)
    for _ in range(3):  # one full batch per epoch: no shuffling involved
        optimizer.zero_grad()
        term = sum(
            ((p - a) ** 2).sum() for p, a in zip(reference.parameters(), anchors, strict=True)
        )
        (nn.functional.cross_entropy(reference(data[0]), data[1]) + mu / 2 * term).backward()
        optimizer.step()
    expected = weights_from_module(reference)
    for name in start:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_frozen_parameters_and_buffers_are_left_to_training_alone() -> None:
    model = mlp()
    model[0].weight.requires_grad_(False)
    client = TorchClient(model=model, train_data=blobs())
    start = weights_from_module(model)
    new, _, _ = fit(client, start, config(mu=1.0))
    assert np.array_equal(new["0.weight"], start["0.weight"])
    # BatchNorm statistics are buffers: they follow the data, not the proximal pull.
    plain, _, _ = fit(client, start, config())
    assert not np.array_equal(new["1.running_mean"], start["1.running_mean"])
    assert new["1.num_batches_tracked"] == plain["1.num_batches_tracked"]


def test_a_parameter_unused_by_the_forward_pass_stays_put() -> None:
    class Partial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 3)
            self.unused = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    torch.manual_seed(0)
    client = TorchClient(model=Partial(), train_data=blobs())
    start = weights_from_module(client.model)
    new, _, _ = fit(client, start, config(mu=1.0))
    assert np.array_equal(new["unused.weight"], start["unused.weight"])
    assert not np.array_equal(new["used.weight"], start["used.weight"])


# --- partial work: max_local_steps ------------------------------------------------------


def test_one_step_processes_one_batch() -> None:
    client = TorchClient(model=mlp(), train_data=blobs())
    start = weights_from_module(client.model)
    new, examples, metrics = fit(client, start, config(steps=1))
    assert examples == 8
    assert metrics["local_steps"] == 1
    assert np.isfinite(metrics["train_loss"])
    assert not np.array_equal(new["0.weight"], start["0.weight"])


def test_cap_within_first_epoch_counts_the_examples_reached() -> None:
    client = TorchClient(model=mlp(), train_data=blobs(60))
    start = weights_from_module(client.model)
    _, examples, metrics = fit(client, start, config(epochs=3, steps=5))
    assert (examples, metrics["local_steps"]) == (40, 5)
    # 1.5 epochs of 8 batches: every example seen, counted once.
    _, examples, metrics = fit(client, start, config(epochs=3, steps=12))
    assert (examples, metrics["local_steps"]) == (60, 12)


def test_cap_is_a_prefix_of_the_full_run() -> None:
    client = TorchClient(model=mlp(), train_data=blobs())
    start = weights_from_module(client.model)
    full = client.fit(start, config(epochs=2), ctx())
    capped = client.fit(start, config(epochs=2, steps=100), ctx())
    one_epoch = client.fit(start, config(epochs=1), ctx())
    first_epoch = client.fit(start, config(epochs=2, steps=8), ctx())
    assert full.weights is not None
    assert capped.weights is not None
    assert one_epoch.weights is not None
    assert first_epoch.weights is not None
    for name in start:
        assert np.array_equal(full.weights[name], capped.weights[name])
        assert np.array_equal(one_epoch.weights[name], first_epoch.weights[name])
    assert capped.num_examples == full.num_examples == 64
    assert capped.metrics == {**full.metrics, "local_steps": 16}
    assert first_epoch.metrics == {**one_epoch.metrics, "local_steps": 8}


def test_cap_with_a_dataloader_and_the_proximal_term() -> None:
    x, y = blobs()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    client = TorchClient(model=mlp(), train_data=loader)
    start = weights_from_module(client.model)
    _, examples, metrics = fit(client, start, config(steps=3, mu=0.5))
    assert (examples, metrics["local_steps"]) == (48, 3)


# --- configuration errors -------------------------------------------------------------


@pytest.mark.parametrize("mu", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_invalid_mu_is_refused(mu: Scalar) -> None:
    with pytest.raises(ConfigError, match="mu"):
        Proximal(mu=mu)  # type: ignore[arg-type]


@pytest.mark.parametrize("steps", [0, -1, 1.5, "2", True])
def test_invalid_max_local_steps_is_refused(steps: Scalar) -> None:
    with pytest.raises(ConfigError, match="max_local_steps"):
        PartialWork(max_local_steps=steps)  # type: ignore[arg-type]


def test_config_readers() -> None:
    assert proximal_coefficient(config()) == 0.0
    assert proximal_coefficient(config(mu=2)) == 2.0
    assert max_local_steps(config()) is None
    assert max_local_steps(config(steps=3)) == 3


# --- the NumPy helper ------------------------------------------------------------------


def test_proximal_gradient_is_mu_times_the_difference() -> None:
    w = Weights(
        {
            "w": np.array([1.0, -2.0, 3.0], dtype=np.float32),
            "n": np.array(5, dtype=np.int64),
        }
    )
    g = Weights({"w": np.array([0.5, 0.0, 3.0], dtype=np.float32), "n": np.array(2)})
    grad = proximal_gradient(w, g, 2.0)
    np.testing.assert_array_equal(grad["w"], np.array([1.0, -4.0, 0.0], dtype=np.float32))
    assert grad["w"].dtype == np.float32
    assert grad["n"] == 0
    assert grad["n"].dtype == np.int64
    assert list(grad) == ["w", "n"]
    zero = proximal_gradient(w, g, 0.0)
    assert not np.any(zero["w"])


def test_proximal_gradient_descends_to_the_global_weights() -> None:
    # Gradient steps on the proximal term alone contract towards w^t by (1 - lr*mu).
    target = Weights({"w": np.array([1.0, 2.0])})
    w = Weights({"w": np.array([3.0, -2.0])})
    for _ in range(50):
        w = Weights({"w": w["w"] - 0.1 * proximal_gradient(w, target, 5.0)["w"]})
    np.testing.assert_allclose(w["w"], target["w"], atol=1e-12)


def test_proximal_gradient_refusals() -> None:
    w = Weights({"w": np.zeros(3)})
    with pytest.raises(ConfigError, match="mu"):
        proximal_gradient(w, w, -1.0)
    with pytest.raises(ShapeMismatchError):
        proximal_gradient(w, Weights({"w": np.zeros(2)}), 1.0)
