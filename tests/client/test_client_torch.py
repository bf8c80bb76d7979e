"""TorchClient trains reproducibly, carries buffers, checks shapes and leaves no RNG trace."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from fedhive.client.base import Client, Context  # noqa: E402
from fedhive.client.torch import (  # noqa: E402
    TorchClient,
    load_into_module,
    weights_from_module,
)
from fedhive.core import ClientConfig, Weights, run_stream  # noqa: E402
from fedhive.errors import ConfigError, NameMismatchError, ShapeMismatchError  # noqa: E402

CONFIG = ClientConfig(local_epochs=2, batch_size=8, learning_rate=0.1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ctx(seed: int = 0, client: str = "c0") -> Context:
    return Context(client_id=client, round=1, seed=run_stream(seed).child(client))


def blobs(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well-separated Gaussian blobs in 4-D: an easy, separable problem."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 0]], dtype=np.float32)
    x = centers[y] + rng.normal(size=(n, 4)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def mlp(dropout: float = 0.0, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(4, 16)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def trained(client: TorchClient, weights: Weights, seed: int = 0) -> Weights:
    result = client.fit(weights, CONFIG, ctx(seed))
    assert result.weights is not None
    return result.weights


def equal(a: Weights, b: Weights) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_is_a_client_and_training_reaches_high_accuracy() -> None:
    model = mlp()
    client = TorchClient(model=model, train_data=blobs(), test_data=blobs(seed=1))
    assert isinstance(client, Client)
    weights = weights_from_module(model)
    before = client.evaluate(weights, CONFIG, ctx())
    for rnd in range(5):
        result = client.fit(weights, CONFIG, ctx(rnd))
        assert result.weights is not None
        weights = result.weights
    after = client.evaluate(weights, CONFIG, ctx())
    assert result.num_examples == 60
    assert 0 < result.metrics["train_loss"] < before.loss
    assert after.num_examples == 60
    assert after.loss < before.loss / 4
    assert after.metrics["accuracy"] >= 0.95


def test_same_seed_is_bitwise_identical_and_different_seeds_differ() -> None:
    model = mlp()
    client = TorchClient(model=model, train_data=blobs())
    w0 = weights_from_module(model)
    first = trained(client, w0, 1)
    second = trained(client, w0, 1)
    other = trained(client, w0, 2)
    assert equal(first, second)
    assert not equal(first, other)
    assert equal(w0, weights_from_module(mlp()))  # the input weights were not written


def test_shared_model_is_reloaded_on_every_call() -> None:
    model = mlp()
    a = TorchClient(model=model, train_data=blobs(seed=2))
    b = TorchClient(model=model, train_data=blobs(seed=3))
    w0 = weights_from_module(model)
    alone = trained(b, w0, 1)
    a.fit(w0, CONFIG, ctx(1))
    after_a = trained(b, w0, 1)
    assert equal(alone, after_a)


def test_batchnorm_buffers_are_weights_and_change() -> None:
    model = mlp(batchnorm=True)
    w0 = weights_from_module(model)
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(w0)
    assert list(w0) == list(model.state_dict())
    result = TorchClient(model=model, train_data=blobs()).fit(w0, CONFIG, ctx())
    assert result.weights is not None
    assert not np.array_equal(result.weights["1.running_mean"], w0["1.running_mean"])
    assert result.weights["1.num_batches_tracked"] == 16  # 2 epochs x ceil(60 / 8)
    assert result.weights["1.num_batches_tracked"].dtype == np.int64


def test_wrong_shape_or_names_are_refused() -> None:
    model = mlp()
    client = TorchClient(model=model, train_data=blobs())
    arrays = dict(weights_from_module(model))
    arrays["0.weight"] = np.zeros((16, 5), dtype=np.float32)
    with pytest.raises(ShapeMismatchError, match=r"0\.weight"):
        client.fit(Weights(arrays), CONFIG, ctx())
    with pytest.raises(NameMismatchError):
        client.fit(Weights({"w": np.zeros(3, dtype=np.float32)}), CONFIG, ctx())


def test_dropout_is_deterministic_per_seed_and_global_rng_untouched() -> None:
    model = mlp(dropout=0.5)
    client = TorchClient(model=model, train_data=blobs())
    w0 = weights_from_module(model)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = trained(client, w0, 1)
    assert torch.equal(state, torch.get_rng_state())
    second = trained(client, w0, 1)
    other = trained(client, w0, 2)
    assert equal(first, second)
    assert not equal(first, other)


def test_single_batch_client_does_not_depend_on_the_seed() -> None:
    x, y = blobs(n=6)
    client = TorchClient(model=mlp(), train_data=(x, y))
    w0 = weights_from_module(mlp())
    a = trained(client, w0, 1)
    b = trained(client, w0, 2)
    assert equal(a, b)


def test_dataset_and_dataloader_paths() -> None:
    x, y = blobs()
    w0 = weights_from_module(mlp())
    on_dataset = TorchClient(model=mlp(), train_data=TensorDataset(x, y))
    assert on_dataset.fit(w0, CONFIG, ctx(1)).num_examples == 60
    assert equal(trained(on_dataset, w0, 1), trained(on_dataset, w0, 1))
    loader = DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True)
    on_loader = TorchClient(model=mlp(), train_data=loader, test_data=loader)
    assert on_loader.fit(w0, CONFIG, ctx(1)).num_examples == 60
    before = on_loader.evaluate(w0, CONFIG, ctx())
    after = on_loader.evaluate(trained(on_loader, w0, 1), CONFIG, ctx())
    assert after.num_examples == 60
    assert after.loss < before.loss


def test_empty_data() -> None:
    x, y = blobs()
    w0 = weights_from_module(mlp())
    for empty in [(x[:0], y[:0]), TensorDataset(x[:0], y[:0])]:
        client = TorchClient(model=mlp(), train_data=empty, test_data=empty)
        result = client.fit(w0, CONFIG, ctx())
        assert result.num_examples == 0
        assert result.weights is w0
        evaluated = client.evaluate(w0, CONFIG, ctx())
        assert (evaluated.loss, evaluated.num_examples) == (0.0, 0)
    no_test = TorchClient(model=mlp(), train_data=(x, y)).evaluate(w0, CONFIG, ctx())
    assert (no_test.loss, no_test.num_examples) == (0.0, 0)


def test_factory_custom_loss_optimizer_and_regression_metrics() -> None:
    x, _ = blobs()
    target = x.sum(dim=1, keepdim=True)
    client = TorchClient(
        model=lambda: nn.Linear(4, 1),
        train_data=(x, target),
        test_data=(x, target),
        loss_fn=nn.MSELoss(),
        optimizer_fn=lambda params, config: torch.optim.Adam(params, lr=config.learning_rate),
    )
    w0 = weights_from_module(client.model)
    before = client.evaluate(w0, CONFIG, ctx())
    result = client.fit(w0, ClientConfig(local_epochs=20, batch_size=8), ctx())
    assert result.weights is not None
    after = client.evaluate(result.weights, CONFIG, ctx())
    assert after.loss < before.loss
    assert "accuracy" not in after.metrics


def test_read_only_weights_load_without_warnings_and_layout_follows_dtype() -> None:
    model = mlp()
    weights = weights_from_module(model)
    for array in weights.values():
        array.flags.writeable = False
    load_into_module(model, weights)  # warnings are errors in this suite
    model.double()  # replaces the tensors' data: the cached layout must follow
    assert weights_from_module(model)["0.weight"].dtype == np.float64


def test_bad_data_is_refused() -> None:
    x, y = blobs()
    with pytest.raises(ConfigError):
        TorchClient(model=mlp(), train_data=(x, y[:3]))
    with pytest.raises(ConfigError):
        TorchClient(model=mlp(), train_data=[x, y])  # type: ignore[arg-type]


def test_client_package_does_not_import_torch() -> None:
    code = "import sys, fedhive.client; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
