"""A plain PyTorch loop wrapped by TorchLoopClient trains exactly as TorchClient does."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fedhive.client.base import Client, Context  # noqa: E402
from fedhive.client.torch import TorchClient, weights_from_module  # noqa: E402
from fedhive.client.torch_loop import TorchLoopClient  # noqa: E402
from fedhive.core import ClientConfig, DpSgd, Weights, run_stream  # noqa: E402
from fedhive.errors import ClientError, ConfigError  # noqa: E402

CONFIG = ClientConfig(local_epochs=3, batch_size=8, learning_rate=0.1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ctx(seed: int = 0, client: str = "c0") -> Context:
    return Context(client_id=client, round=1, seed=run_stream(seed).child(client))


def blobs(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 0]], dtype=np.float32)
    x = centers[y] + rng.normal(size=(n, 4)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


DATA = blobs()


def sgd_loop(model: nn.Module, config: ClientConfig, context: Context) -> tuple[int, dict]:
    """The loop a user writes: shuffled mini-batch SGD on cross-entropy."""
    x, y = DATA
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(context.seed.torch_seed)
    total = 0.0
    for _ in range(config.local_epochs):
        order, total = torch.randperm(len(y), generator=generator), 0.0
        for start in range(0, len(y), config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
    return len(y), {"train_loss": total / len(y)}


def accuracy(model: nn.Module, config: ClientConfig, context: Context) -> tuple:
    x, y = DATA
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, len(y), {"accuracy": (logits.argmax(1) == y).double().mean().item()}


def test_the_loop_gives_torch_clients_weights_bit_for_bit() -> None:
    initial = weights_from_module(mlp())
    loop = TorchLoopClient(mlp(), train=sgd_loop, evaluate=accuracy)
    native = TorchClient(model=mlp(), train_data=DATA)
    assert isinstance(loop, Client)
    ours, theirs = loop.fit(initial, CONFIG, ctx(3)), native.fit(initial, CONFIG, ctx(3))
    assert ours.weights is not None
    assert theirs.weights is not None
    assert list(ours.weights) == list(initial)
    for name in initial:
        np.testing.assert_array_equal(ours.weights[name], theirs.weights[name])
    assert not np.array_equal(ours.weights["0.weight"], initial["0.weight"])
    assert ours.num_examples == theirs.num_examples == 60
    assert ours.metrics["train_loss"] == pytest.approx(theirs.metrics["train_loss"], rel=1e-6)
    other = loop.fit(initial, CONFIG, ctx(4)).weights  # another seed: another shuffle
    assert other is not None
    assert not np.array_equal(other["0.weight"], ours.weights["0.weight"])


def test_fit_leaves_torchs_global_generator_as_it_was() -> None:
    state = torch.random.get_rng_state()
    TorchLoopClient(mlp(), train=sgd_loop).fit(weights_from_module(mlp()), CONFIG, ctx())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_evaluate_runs_in_eval_mode_without_gradients_on_the_given_weights() -> None:
    seen: list[tuple[bool, bool]] = []

    def evaluate(model: nn.Module, config: ClientConfig, context: Context) -> tuple:
        seen.append((model.training, torch.is_grad_enabled()))
        return accuracy(model, config, context)

    loop = TorchLoopClient(mlp(), train=sgd_loop, evaluate=evaluate)
    initial = weights_from_module(mlp())
    trained = loop.fit(initial, CONFIG, ctx()).weights
    assert trained is not None
    before, after = loop.evaluate(initial, CONFIG, ctx()), loop.evaluate(trained, CONFIG, ctx())
    assert seen == [(False, False), (False, False)]
    assert after.loss < before.loss
    assert after.num_examples == 60
    assert after.metrics["accuracy"] > 0.9
    assert TorchLoopClient(mlp(), train=sgd_loop).evaluate(initial, CONFIG, ctx()).num_examples == 0


def test_no_examples_returns_the_received_weights() -> None:
    initial = weights_from_module(mlp())
    result = TorchLoopClient(mlp(), train=lambda m, c, x: 0).fit(initial, CONFIG, ctx())
    assert result.num_examples == 0
    assert result.weights is initial


@pytest.mark.parametrize("returned", [None, -1, True, 2.0, (3, [1]), "7"])
def test_a_malformed_train_result_is_a_client_error(returned: object) -> None:
    client = TorchLoopClient(mlp(), train=lambda m, c, x: returned)
    with pytest.raises(ClientError, match="train"):
        client.fit(weights_from_module(mlp()), CONFIG, ctx())


def test_dp_sgd_and_scaffold_are_refused_and_a_non_module_is_a_config_error() -> None:
    client = TorchLoopClient(mlp(), train=sgd_loop)
    initial = weights_from_module(mlp())
    dp = CONFIG.with_extensions(DpSgd(noise_multiplier=1.0, max_grad_norm=1.0))
    with pytest.raises(ClientError, match="DP-SGD"):
        client.fit(initial, dp, ctx())
    scaffold_ctx = ctx()
    scaffold_ctx.aux = Weights({f"@scaffold/{k}": np.zeros_like(v) for k, v in initial.items()})
    with pytest.raises(ClientError, match="SCAFFOLD"):
        client.fit(initial, CONFIG, scaffold_ctx)
    with pytest.raises(ConfigError, match=r"nn\.Module"):
        TorchLoopClient(mlp, train=sgd_loop)  # type: ignore[arg-type]
