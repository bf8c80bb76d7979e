"""Malicious clients for simulation: poisoned updates or poisoned data, chosen by seed.

A config's ``[attack]`` section makes a fixed ``fraction`` of the clients malicious
(:func:`malicious_ids`, from the run seed); :func:`with_attack` wraps the app so that
those clients misbehave while every other client is left exactly as the app built it.

- **Update-level** attacks wrap any :class:`~fedhive.client.base.Client`: the honest
  ``fit`` runs, then its update ``delta = w_local - v_k`` is replaced before it is sent.
  ``sign_flip`` sends ``-delta``; ``scaling`` sends ``scale * delta`` (model replacement,
  Bagdasaryan et al., "How To Backdoor Federated Learning", AISTATS 2020, eq. 3 with
  ``gamma = scale``); ``gaussian`` sends N(0, ``noise_std``²) noise of the same shape.
  Only floating-point tensors are changed (integer buffers keep their honest delta).
- **Data-level** attacks need the client's training data: a
  :class:`~fedhive.client.torch.TorchClient` holding ``(x, y)`` tensors is rebuilt on
  poisoned copies (:func:`poison_torch_client`). ``label_flip`` relabels every
  ``source_label`` sample as ``target_label``; ``backdoor`` stamps a pixel-pattern
  trigger (the last ``trigger_size`` input features set to ``trigger_value``) on
  ``poison_fraction`` of the samples and relabels them ``target_label`` (BadNets, Gu et
  al. 2017). :func:`backdoor_test_set` builds the triggered test set whose accuracy is
  the attack's success rate.

A malicious client reports the metrics its honest fit reports: nothing it sends tells
the server it attacks. Randomness comes from the run seed only: client choice and
poisoned samples from ``run/attack``, Gaussian noise from the task's own stream.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedhive.client.app import ClientApp
from fedhive.client.base import Client, Context
from fedhive.config.simulated import AttackKind, AttackSection
from fedhive.core.config import check_real
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.rng import run_stream
from fedhive.core.weights import Array, Weights
from fedhive.errors import ClientError, ConfigError
from fedhive.simulation.app import SimulationApp

__all__ = [
    "AttackKind",
    "UpdateAttackClient",
    "attack_client",
    "attack_update",
    "backdoor_test_set",
    "malicious_ids",
    "poison_data",
    "poison_torch_client",
    "stamp_trigger",
    "with_attack",
]


_DATA_ATTACKS = frozenset({AttackKind.LABEL_FLIP, AttackKind.BACKDOOR})


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def malicious_ids(client_ids: Sequence[str], fraction: float, seed: int) -> frozenset[str]:
    """The malicious clients: ``fraction`` of ``client_ids`` (rounded half up), by seed.

    The choice depends only on the seed and the set of ids (not their order).

    Raises:
        ConfigError: ``fraction`` is not in [0, 1], or the ids are not unique.
    """
    check_real("attack.fraction", fraction, low=0, high=1)
    ids = sorted(set(client_ids))
    if len(ids) != len(client_ids):
        raise ConfigError("attack: client ids must be unique")
    count = _round_half_up(fraction * len(ids))
    rng = run_stream(seed).child("attack").numpy()
    return frozenset(ids[i] for i in rng.choice(len(ids), size=count, replace=False))


def attack_update(delta: Weights, section: AttackSection, rng: np.random.Generator) -> Weights:
    """The update an update-level attacker sends instead of ``delta``.

    Raises:
        ConfigError: ``section.kind`` is not an update-level attack.
    """
    kind = section.kind
    if kind not in (AttackKind.SIGN_FLIP, AttackKind.SCALING, AttackKind.GAUSSIAN):
        raise ConfigError(f"attack.kind: {kind!s} is not an update-level attack")
    out: dict[str, Array] = {}
    for name, array in delta.items():
        if not np.issubdtype(array.dtype, np.floating):
            out[name] = array
        elif kind == AttackKind.SIGN_FLIP:
            out[name] = np.negative(array)
        elif kind == AttackKind.SCALING:
            out[name] = np.multiply(array, section.scale).astype(array.dtype)
        else:
            out[name] = rng.normal(0.0, section.noise_std, array.shape).astype(array.dtype)
    return Weights(out)


def _difference(new: Weights, old: Weights) -> Weights:
    if tuple(new) != tuple(old):
        raise ClientError(f"fit returned parameters {sorted(new)}, the model has {sorted(old)}")
    return Weights({name: np.subtract(array, old[name]) for name, array in new.items()})


class UpdateAttackClient:
    """A Client that trains honestly, then sends :func:`attack_update` of its update.

    Noise (``gaussian``) comes from ``context.seed.child("attack")``: deterministic per
    run seed, round and client, independent of the stream the honest fit uses.
    """

    def __init__(self, honest: Client, section: AttackSection) -> None:
        self.honest = honest
        self.section = section

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """Run the honest fit and return the attacked delta with the honest metrics."""
        result = self.honest.fit(weights, config, context)
        if result.delta is not None:
            delta = result.delta
        else:
            assert result.weights is not None  # FitResult holds exactly one of them
            delta = _difference(result.weights, weights)
        rng = context.seed.child("attack").numpy()
        return FitResult(
            delta=attack_update(delta, self.section, rng),
            num_examples=result.num_examples,
            metrics=result.metrics,
        )

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """Evaluate honestly."""
        return self.honest.evaluate(weights, config, context)


def stamp_trigger(x: npt.NDArray[Any], *, trigger_size: int, trigger_value: float) -> Any:
    """A copy of ``x`` (samples first) with each sample's last ``trigger_size`` features
    (in flattened order; for 8x8 digits, the bottom-right pixels) set to ``trigger_value``.

    Raises:
        ConfigError: a sample has fewer than ``trigger_size`` features.
    """
    out = np.array(x, copy=True, order="C")
    flat = out.reshape(len(out), -1)  # a view: writes land in ``out``
    if not 1 <= trigger_size <= flat.shape[1]:
        raise ConfigError(
            f"attack.trigger_size: must be in [1, {flat.shape[1]}] (features per sample), "
            f"got {trigger_size}"
        )
    flat[:, flat.shape[1] - trigger_size :] = trigger_value
    return out


def poison_data(
    x: npt.NDArray[Any], y: npt.NDArray[Any], section: AttackSection, rng: np.random.Generator
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Poisoned copies of the training data ``(x, y)`` for a data-level attack.

    ``label_flip``: every ``source_label`` sample relabelled ``target_label``.
    ``backdoor``: ``round(poison_fraction * n)`` samples (chosen with ``rng``) stamped
    with the trigger and relabelled ``target_label``. Inputs are never written.

    Raises:
        ConfigError: ``section.kind`` is not a data-level attack, or the trigger does
            not fit the samples.
    """
    x_out, y_out = np.array(x, copy=True), np.array(y, copy=True)
    if section.kind == AttackKind.LABEL_FLIP:
        y_out[y_out == section.source_label] = section.target_label
    elif section.kind == AttackKind.BACKDOOR:
        count = _round_half_up(section.poison_fraction * len(y_out))
        chosen = np.sort(rng.choice(len(y_out), size=count, replace=False))
        x_out[chosen] = stamp_trigger(
            x_out[chosen], trigger_size=section.trigger_size, trigger_value=section.trigger_value
        )
        y_out[chosen] = section.target_label
    else:
        raise ConfigError(f"attack.kind: {section.kind!s} is not a data-level attack")
    return x_out, y_out


def backdoor_test_set(
    x: npt.NDArray[Any], y: npt.NDArray[Any], section: AttackSection
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The triggered test set: every sample not labelled ``target_label``, stamped with
    the trigger, labelled ``target_label``. A model's accuracy on it is the backdoor's
    attack success rate."""
    keep = np.asarray(y) != section.target_label
    triggered = stamp_trigger(
        np.asarray(x)[keep], trigger_size=section.trigger_size, trigger_value=section.trigger_value
    )
    return triggered, np.full(int(keep.sum()), section.target_label, dtype=np.asarray(y).dtype)


def _torch_parts(client: object) -> dict[str, Any]:
    """The constructor arguments (by name) of a TorchClient holding (x, y) tensors.

    The one place this module reads TorchClient's private fields (it has no public
    accessor for its data); keep it in step with ``TorchClient.__init__``.

    Raises:
        ConfigError: ``client`` is not a TorchClient with (x, y) tensor training data.
    """
    needs = "attack: a data-level attack needs a TorchClient with (x, y) tensor train_data"
    try:
        from fedhive.client.torch import TorchClient
    except ImportError:  # without torch no client can be a TorchClient
        raise ConfigError(f"{needs}, got {type(client).__name__}") from None
    if not isinstance(client, TorchClient):
        raise ConfigError(f"{needs}, got {type(client).__name__}")
    if not isinstance(client._train, tuple):
        raise ConfigError(f"{needs}, got {type(client._train).__name__} train_data")
    return {
        "model": client._model_spec,
        "train_data": client._train,
        "test_data": client._test,
        "loss_fn": client._loss_fn,
        "optimizer_fn": client._optimizer_fn,
    }


def poison_torch_client(client: Client, section: AttackSection, rng: np.random.Generator) -> Client:
    """A TorchClient like ``client`` (same model, test data, loss and optimizer) that
    trains on :func:`poison_data` copies of its ``(x, y)`` tensors (same dtype, device).

    Raises:
        ConfigError: ``client`` is not a TorchClient with (x, y) tensor training data.
    """
    from fedhive.client.torch import TorchClient

    parts = _torch_parts(client)
    x, y = parts["train_data"]
    x_np, y_np = poison_data(x.detach().cpu().numpy(), y.detach().cpu().numpy(), section, rng)
    # new_tensor keeps dtype and device, and spares this module an import of torch.
    parts["train_data"] = (x.new_tensor(x_np), y.new_tensor(y_np))
    return TorchClient(**parts)


def attack_client(client: Client, section: AttackSection, *, client_id: str, seed: int) -> Client:
    """``client`` turned malicious by ``section`` (poisoned samples fixed per client).

    Raises:
        ConfigError: a data-level attack on a client without (x, y) tensor data, or
            ``section.kind`` is ``none``.
    """
    if section.kind == AttackKind.NONE:
        raise ConfigError("attack.kind: none makes no client malicious")
    if section.kind in _DATA_ATTACKS:
        rng = run_stream(seed).child("attack").child("poison").child(client_id).numpy()
        return poison_torch_client(client, section, rng)
    return UpdateAttackClient(client, section)


def with_attack(app: SimulationApp, section: AttackSection, *, seed: int) -> SimulationApp:
    """``app`` with the clients :func:`malicious_ids` picks made malicious by ``section``.

    Honest clients, the initial model and the central evaluation are unchanged; with
    ``kind = "none"`` the app itself is returned. A data-level attack builds one
    malicious client here, so a client without (x, y) tensor data fails the run at once
    instead of failing every malicious task.

    Raises:
        ConfigError: see :func:`malicious_ids` and :func:`attack_client`.
    """
    if section.kind == AttackKind.NONE:
        return app
    bad = malicious_ids(app.client_ids, section.fraction, seed)
    honest_fn = app.client.client_fn

    def client_fn(client_id: str) -> Client:
        client = honest_fn(client_id)
        if client_id not in bad:
            return client
        return attack_client(client, section, client_id=client_id, seed=seed)

    if section.kind in _DATA_ATTACKS and bad:
        client_fn(min(bad))
    return dataclasses.replace(app, client=ClientApp(client_fn=client_fn))
