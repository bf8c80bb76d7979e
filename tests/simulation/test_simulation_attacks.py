"""Malicious clients: who attacks, what each attack sends or trains on, and its effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from fedhive.client.app import ClientApp  # noqa: E402
from fedhive.client.base import Client, Context  # noqa: E402
from fedhive.client.torch import TorchClient, load_into_module  # noqa: E402
from fedhive.config import RunConfig, parse_config  # noqa: E402
from fedhive.config.simulated import AttackKind, AttackSection  # noqa: E402
from fedhive.core import ClientConfig, EvaluateResult, FitResult, Weights, run_stream  # noqa: E402
from fedhive.core._compat import tomllib  # noqa: E402
from fedhive.errors import ConfigError  # noqa: E402
from fedhive.server.app import ServerApp  # noqa: E402
from fedhive.server.run import RunResult  # noqa: E402
from fedhive.simulation import attacks  # noqa: E402
from fedhive.simulation.app import SimulationApp, load_callable  # noqa: E402
from fedhive.simulation.attacks import (  # noqa: E402
    attack_client,
    backdoor_test_set,
    malicious_ids,
    poison_data,
    with_attack,
)
from fedhive.simulation.datasets import load_digits  # noqa: E402
from fedhive.simulation.engine import simulate  # noqa: E402

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp"
CONFIG = ClientConfig(local_epochs=1, batch_size=8, learning_rate=0.1)
GIVEN = Weights(
    {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "steps": np.array([4], np.int64)}
)
DELTA = Weights({"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "steps": [1]})
# A returned model becomes a delta by float32 (GIVEN + DELTA) - GIVEN: two roundings at the
# magnitude |GIVEN| + |DELTA|, then the attack's own scaling multiplies that error.
ROUNDING = 2 * np.finfo(np.float32).eps * float(np.max(np.abs(GIVEN["w"]) + np.abs(DELTA["w"])))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Honest:
    """Moves the model by DELTA; returns new weights or the delta itself."""

    def __init__(self, *, as_delta: bool = False) -> None:
        self.as_delta = as_delta

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        metrics = {"train_loss": 0.25}
        if self.as_delta:
            return FitResult(delta=DELTA, num_examples=7, metrics=metrics)
        moved = {k: np.add(weights[k], DELTA[k]).astype(weights[k].dtype) for k in weights}
        return FitResult(weights=Weights(moved), num_examples=7, metrics=metrics)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(loss=1.0, num_examples=3)


def ctx(seed: int = 0, round_: int = 1, client: str = "c0") -> Context:
    stream = run_stream(seed).child(round_).child(client)
    return Context(client_id=client, round=round_, seed=stream)


def attacked_fit(client: Client, **section: Any) -> FitResult:
    wrapped = attack_client(client, AttackSection(**section), client_id="c0", seed=0)
    return wrapped.fit(GIVEN, CONFIG, ctx())


# --- who attacks -------------------------------------------------------------------


@pytest.mark.parametrize(("fraction", "count"), [(0.0, 0), (0.3, 3), (0.25, 3), (0.5, 5), (1, 10)])
def test_malicious_ids_are_exactly_the_fraction(fraction: float, count: int) -> None:
    ids = [f"client-{i}" for i in range(10)]
    chosen = malicious_ids(ids, fraction, seed=3)
    assert len(chosen) == count
    assert chosen <= set(ids)


def test_malicious_ids_depend_on_the_seed_only() -> None:
    ids = [f"client-{i:03d}" for i in range(100)]
    first = malicious_ids(ids, 0.2, seed=5)
    assert malicious_ids(list(reversed(ids)), 0.2, seed=5) == first
    assert malicious_ids(ids, 0.2, seed=6) != first


def test_malicious_ids_refuse_bad_input() -> None:
    with pytest.raises(ConfigError, match=r"attack.fraction: must be in \[0, 1\]"):
        malicious_ids(["a"], 1.5, seed=0)
    with pytest.raises(ConfigError, match="unique"):
        malicious_ids(["a", "a"], 0.5, seed=0)


# --- update-level attacks ----------------------------------------------------------


@pytest.mark.parametrize("as_delta", [False, True])
def test_sign_flip_sends_minus_the_update(as_delta: bool) -> None:
    result = attacked_fit(Honest(as_delta=as_delta), kind=AttackKind.SIGN_FLIP)
    assert result.delta is not None
    np.testing.assert_allclose(result.delta["w"], -DELTA["w"], rtol=0, atol=ROUNDING)
    np.testing.assert_array_equal(result.delta["steps"], [1])  # integer buffers stay honest
    assert (result.num_examples, dict(result.metrics)) == (7, {"train_loss": 0.25})


@pytest.mark.parametrize("as_delta", [False, True])
def test_scaling_sends_scale_times_the_update(as_delta: bool) -> None:
    result = attacked_fit(Honest(as_delta=as_delta), kind=AttackKind.SCALING, scale=-20.0)
    assert result.delta is not None
    np.testing.assert_allclose(result.delta["w"], -20.0 * DELTA["w"], rtol=0, atol=20 * ROUNDING)
    assert result.delta["w"].dtype == np.float32
    assert dict(result.metrics) == {"train_loss": 0.25}  # nothing says "malicious"


class Big:
    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        return FitResult(delta=Weights({"v": np.zeros(200_000)}), num_examples=1)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=0)


def test_gaussian_noise_has_the_declared_std_and_follows_the_seed() -> None:
    section = AttackSection(kind=AttackKind.GAUSSIAN, noise_std=2.5)
    client = attack_client(Big(), section, client_id="c0", seed=0)

    def noise(**where: Any) -> np.ndarray:
        delta = client.fit(GIVEN, CONFIG, ctx(**where)).delta
        assert delta is not None
        return np.asarray(delta["v"])

    v = noise()
    # 200k draws: the sample std is within 1% of 2.5 with overwhelming probability.
    assert abs(v.std() - 2.5) < 0.025
    assert abs(v.mean()) < 0.025
    np.testing.assert_array_equal(noise(), v)
    assert not np.array_equal(noise(round_=2), v)
    assert not np.array_equal(noise(client="c1"), v)
    assert not np.array_equal(noise(seed=1), v)


# --- data-level attacks ------------------------------------------------------------


def torch_client(n: int = 40) -> TorchClient:
    x = torch.arange(n * 6, dtype=torch.float32).reshape(n, 6) / 1000
    y = torch.arange(n) % 4
    return TorchClient(model=nn.Linear(6, 4), train_data=(x, y), test_data=(x[:4], y[:4]))


def train_of(client: Client) -> tuple[np.ndarray, np.ndarray]:
    x, y = attacks._torch_parts(client)["train_data"]
    return x.numpy(), y.numpy()


def test_label_flip_relabels_every_source_sample_only() -> None:
    honest = torch_client()
    section = AttackSection(kind=AttackKind.LABEL_FLIP, source_label=1, target_label=3)
    poisoned = attack_client(honest, section, client_id="c0", seed=0)
    x0, y0 = train_of(honest)
    x1, y1 = train_of(poisoned)
    np.testing.assert_array_equal(x1, x0)
    assert (y1[y0 == 1] == 3).all()
    np.testing.assert_array_equal(y1[y0 != 1], y0[y0 != 1])
    assert np.bincount(y1, minlength=4).tolist() == [10, 0, 10, 20]
    assert y0.tolist().count(1) == 10  # the honest client's data is not touched
    assert attacks._torch_parts(poisoned)["model"] is honest.model  # same model, test set
    tests = attacks._torch_parts(poisoned)["test_data"], attacks._torch_parts(honest)["test_data"]
    assert all(a is b for a, b in zip(*tests, strict=True))


def test_backdoor_stamps_the_trigger_on_the_declared_fraction() -> None:
    honest = torch_client(40)
    section = AttackSection(
        kind=AttackKind.BACKDOOR, poison_fraction=0.25, trigger_size=2, trigger_value=9.0
    )
    poisoned = attack_client(honest, section, client_id="c0", seed=0)
    x0, y0 = train_of(honest)
    x1, y1 = train_of(poisoned)
    stamped = (x1 != x0).any(axis=1)
    assert stamped.sum() == 10
    assert (x1[stamped][:, -2:] == 9.0).all()
    np.testing.assert_array_equal(x1[:, :-2], x0[:, :-2])  # only the trigger features
    assert (y1[stamped] == 0).all()
    np.testing.assert_array_equal(y1[~stamped], y0[~stamped])
    again = attack_client(honest, section, client_id="c0", seed=0)
    np.testing.assert_array_equal(train_of(again)[0], x1)  # the same samples every round
    assert x1.dtype == np.float32
    assert y1.dtype == np.int64


def test_backdoor_test_set_is_triggered_and_targeted() -> None:
    x = np.zeros((6, 2, 2), np.float32)
    y = np.array([0, 1, 2, 0, 3, 1])
    xt, yt = backdoor_test_set(x, y, AttackSection(target_label=0, trigger_size=3))
    assert xt.shape == (4, 2, 2)
    assert yt.tolist() == [0, 0, 0, 0]
    assert (xt.reshape(4, -1) == [0, 1, 1, 1]).all()
    assert (x == 0).all()


def test_poison_data_refuses_an_oversized_trigger() -> None:
    section = AttackSection(kind=AttackKind.BACKDOOR, trigger_size=7)
    with pytest.raises(ConfigError, match=r"attack.trigger_size: must be in \[1, 6\]"):
        poison_data(np.zeros((4, 6)), np.zeros(4), section, np.random.default_rng(0))


def test_data_attacks_need_xy_tensor_data() -> None:
    section = AttackSection(kind=AttackKind.LABEL_FLIP)
    with pytest.raises(ConfigError, match=r"needs a TorchClient with \(x, y\) tensor"):
        attack_client(Honest(), section, client_id="c0", seed=0)
    x, y = torch.zeros(4, 6), torch.zeros(4, dtype=torch.int64)
    on_dataset = TorchClient(model=nn.Linear(6, 4), train_data=TensorDataset(x, y))
    with pytest.raises(ConfigError, match="got TensorDataset train_data"):
        attack_client(on_dataset, section, client_id="c0", seed=0)


# --- the app wrapper and the config ------------------------------------------------


def fake_app(client: Any) -> SimulationApp:
    ids = [f"c{i}" for i in range(10)]
    return SimulationApp(
        server=ServerApp(initial_weights=GIVEN),
        client=ClientApp(client_fn=lambda cid: client),
        client_ids=ids,
    )


def test_with_attack_wraps_only_the_malicious_clients() -> None:
    honest = Honest()
    app = fake_app(honest)
    section = AttackSection(kind=AttackKind.SIGN_FLIP, fraction=0.3)
    attacked = with_attack(app, section, seed=4)
    bad = malicious_ids(app.client_ids, 0.3, seed=4)
    for cid in app.client_ids:
        assert (attacked.client.client_fn(cid) is honest) == (cid not in bad)
    assert attacked.server.initial_weights is app.server.initial_weights
    assert with_attack(app, AttackSection(), seed=4) is app


def test_with_attack_refuses_a_data_attack_on_other_clients_at_once() -> None:
    section = AttackSection(kind=AttackKind.BACKDOOR, fraction=0.1)
    with pytest.raises(ConfigError, match="data-level attack needs"):
        with_attack(fake_app(Honest()), section, seed=0)


def test_attack_section_parses_and_round_trips() -> None:
    table = {"kind": "scaling", "fraction": 0.3, "scale": -20}
    config = parse_config({"run": {"app": "app:build", "rounds": 1}, "attack": table})
    assert config.attack == AttackSection(kind=AttackKind.SCALING, fraction=0.3, scale=-20.0)
    assert config.to_json()["attack"]["kind"] == "scaling"
    assert parse_config({"run": {"app": "app:build", "rounds": 1}}).attack.kind == "none"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"fraction": 1.5}, r"attack.fraction: must be in \[0, 1\], got 1.5"),
        ({"kind": "poison"}, "attack.kind: must be one of none, sign_flip"),
        ({"noise_std": -1}, "attack.noise_std: must be a finite number >= 0"),
        ({"scale": float("nan")}, "attack.scale: must be a finite number"),
        ({"target_label": -1}, "attack.target_label: must be an integer >= 0"),
        ({"trigger_size": 0}, "attack.trigger_size: must be an integer >= 1"),
        ({"poison_fraction": 2}, r"attack.poison_fraction: must be in \[0, 1\]"),
        ({"kind": "label_flip", "source_label": 0}, "attack.source_label: must differ"),
        ({"frac": 0.1}, "attack.frac: unknown key"),
    ],
)
def test_bad_attack_settings_name_their_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"run": {"app": "app:build", "rounds": 1}, "attack": table})


def test_spawned_workers_cannot_carry_an_attack(tmp_path: Path) -> None:
    config = parse_config(
        {
            "run": {"app": "app:build", "rounds": 1},
            "simulation": {"backend": "process", "start_method": "spawn"},
            "attack": {"kind": "sign_flip", "fraction": 0.5},
        }
    )
    with pytest.raises(
        ConfigError, match=r'attack, stragglers: need simulation\.start_method = "fork"'
    ):
        simulate(config, base_dir=tmp_path)


# --- end to end on digits-mlp ------------------------------------------------------


def digits_config(attack: dict[str, Any] | None = None, **sections: Any) -> RunConfig:
    data = tomllib.loads((DIGITS / "config.toml").read_text())
    data["run"].update(rounds=5, seed=0)
    # Near-IID shards: the median's guarantee assumes honest updates alike (Yin et al. 2018).
    data["app"].update(num_clients=10, local_test_fraction=0.0, alpha=100.0)
    data["evaluation"]["federated_every"] = 0
    data["attack"] = attack or {}
    for name, values in sections.items():
        data[name].update(values)
    return parse_config(data)


def accuracy(result: RunResult) -> float:
    assert all(r.fit.failed == 0 for r in result.history)
    return result.history[-1].centralized["accuracy"]


SCALING = {"kind": "scaling", "fraction": 0.3, "scale": -20.0}


def test_scaling_attack_breaks_the_mean_but_not_the_median() -> None:
    clean = accuracy(simulate(digits_config(), base_dir=DIGITS))
    attacked = simulate(digits_config(SCALING), base_dir=DIGITS)
    median = accuracy(
        simulate(digits_config(SCALING, strategy={"aggregator": "median"}), base_dir=DIGITS)
    )
    assert clean >= 0.85
    assert accuracy(attacked) <= 0.3
    assert median >= clean - 0.05
    # Forked workers inherit the wrapped app: the same model as in this process.
    forked = simulate(
        digits_config(SCALING, simulation={"backend": "process", "workers": 2}), base_dir=DIGITS
    )
    assert forked.version == attacked.version


def attack_success_rate(result: RunResult, section: AttackSection) -> float:
    data = load_digits(test_fraction=0.0, rng=np.random.default_rng(0))  # all 1797 digits
    x, y = backdoor_test_set(data.x_train, data.y_train, section)
    model = load_callable("app:make_model", DIGITS, what="test")()
    load_into_module(model, result.weights)
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((predicted == y).mean())


def test_backdoor_plants_the_trigger_and_keeps_the_main_task() -> None:
    table = {"kind": "backdoor", "fraction": 0.3, "poison_fraction": 0.5, "target_label": 0}
    clean_config = digits_config({**table, "fraction": 0.0})
    attacked_config = digits_config(table)
    clean = simulate(clean_config, base_dir=DIGITS)
    attacked = simulate(attacked_config, base_dir=DIGITS)
    assert attack_success_rate(clean, clean_config.attack) <= 0.05
    assert attack_success_rate(attacked, attacked_config.attack) >= 0.3
    assert accuracy(attacked) >= accuracy(clean) - 0.05
