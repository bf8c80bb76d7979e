"""The client-side pipeline: run the user's Client on a task and package its reply.

``fit``: check the device's privacy budget → split the auxiliary tensors (``@`` names)
off the model → train (``Client.fit``) → update = w_local - v_k → clip → noise (DP,
:mod:`fedhive.client.privacy`), followed by the client's answer to the auxiliary
tensors → compress (the task's ``Compression``, :mod:`fedhive.client.compress`: the
reply then carries the payload, not the update) → charge the budget (what the device's
clipping and noise, and DP-SGD, cost) → reply. The task's
:class:`~fedhive.client.base.TaskOrigin` names the release in the device's ledger and
says whether noise may be seeded (simulation only).
Masking under secure aggregation (:class:`~fedhive.client.secure.SecAggSession`) and
signing (the transport) take the reply from here. Every stage that refuses returns a
:class:`~fedhive.core.messages.Failure` naming its :class:`~fedhive.core.failures.Stage`
(``budget``, ``fit``, ``privacy`` for the device's clipping and noise, ``compress``,
``evaluate``), so a bad client is one failed task, never a crashed run.
"""

from __future__ import annotations

import numpy as np

from fedhive.client.base import Client, Context, TaskOrigin
from fedhive.client.compress import Compressed, compress, keep_residual
from fedhive.client.privacy import LEDGER_KEY, charge_budget, check_budget, privatize
from fedhive.core.extensions import Compression
from fedhive.core.failures import Stage
from fedhive.core.messages import (
    EvaluateReply,
    EvaluateResult,
    EvaluateTask,
    Failure,
    FitReply,
    FitResult,
    FitTask,
    check_metrics,
)
from fedhive.core.rng import SeedStream
from fedhive.core.serde import RecordValue
from fedhive.core.weights import Array, Weights
from fedhive.errors import (
    ClientError,
    DTypeMismatchError,
    NameMismatchError,
    PrivacyBudgetError,
    ShapeMismatchError,
)


def run_fit(
    client: Client,
    task: FitTask,
    weights: Weights,
    state: dict[str, RecordValue],
    *,
    origin: TaskOrigin,
) -> FitReply | Failure:
    """Train ``client`` on ``weights`` for ``task``; ``state`` is updated in place.

    ``origin`` names the task in the device's ledger (deployment: the envelope's run and
    task id; simulation: :meth:`TaskOrigin.simulation`).
    """
    try:
        planned = check_budget(task, state, origin=origin)
    except PrivacyBudgetError as exc:
        return Failure.of(task.client_id, task.round, Stage.BUDGET, exc)
    except ClientError as exc:  # an invalid DP instruction
        return Failure.of(task.client_id, task.round, Stage.PRIVACY, exc)
    model, aux = weights.split_aux()
    context = _context(task, Stage.FIT, state, aux, simulated=origin.simulated)
    try:
        result = client.fit(model, task.config, context)
        if not isinstance(result, FitResult):
            raise ClientError(f"fit must return a FitResult, got {type(result).__name__}")
        update = result.delta if result.delta is not None else _subtract(result.weights, model)
        answer = _answer(aux, result.aux)
        metrics = check_metrics(result.metrics, what="fit metrics")
    except Exception as exc:  # the user's code: any error is this task's failure
        return Failure.of(task.client_id, task.round, Stage.FIT, exc)
    try:  # the device's own DP stage: the task's clipping and noise, applied here
        update = privatize(update, task.config, context).join(answer)
    except Exception as exc:
        return Failure.of(task.client_id, task.round, Stage.PRIVACY, exc)
    ask = task.config.extension(Compression)
    compressed: Compressed | None = None
    if ask is not None:
        try:
            compressed = compress(update, ask, task, state)
        except Exception as exc:
            return Failure.of(task.client_id, task.round, Stage.COMPRESS, exc)
    try:
        charged = charge_budget(task, state, origin=origin, events=[*planned, *context.released])
    except PrivacyBudgetError as exc:
        return Failure.of(task.client_id, task.round, Stage.BUDGET, exc)
    if charged is not None:  # released: the charge is recorded
        state[LEDGER_KEY] = charged.to_bytes().decode("ascii")
    if compressed is not None:
        keep_residual(state, compressed)
    return FitReply(
        client_id=task.client_id,
        round=task.round,
        version=task.version,
        update=update if compressed is None else Weights(),
        num_examples=result.num_examples,
        metrics=metrics,
        payload=None if compressed is None else compressed.payload,
    )


def run_evaluate(
    client: Client, task: EvaluateTask, weights: Weights, state: dict[str, RecordValue]
) -> EvaluateReply | Failure:
    """Evaluate ``weights`` on ``client``'s local test data for ``task``."""
    model, aux = weights.split_aux()
    context = _context(task, Stage.EVALUATE, state, aux, simulated=False)
    try:
        result = client.evaluate(model, task.config, context)
        if not isinstance(result, EvaluateResult):
            raise ClientError(
                f"evaluate must return an EvaluateResult, got {type(result).__name__}"
            )
        loss = check_metrics({"loss": result.loss}, what="evaluate")["loss"]
        metrics = check_metrics(result.metrics, what="evaluate metrics")
        if isinstance(result.num_examples, bool) or not isinstance(result.num_examples, int):
            raise ClientError(f"num_examples must be an int, got {result.num_examples!r}")
        if result.num_examples < 0:
            raise ClientError(f"num_examples must be >= 0, got {result.num_examples}")
    except Exception as exc:  # the user's code: any error is this task's failure
        return Failure.of(task.client_id, task.round, Stage.EVALUATE, exc)
    return EvaluateReply(
        client_id=task.client_id,
        round=task.round,
        loss=loss,
        num_examples=result.num_examples,
        metrics=metrics,
    )


def _context(
    task: FitTask | EvaluateTask,
    stage: Stage,
    state: dict[str, RecordValue],
    aux: Weights,
    *,
    simulated: bool,
) -> Context:
    path = f"run/round/{task.round}/client/{task.client_id}/{stage}"
    stream = SeedStream(task.seed, path)
    return Context(
        client_id=task.client_id,
        round=task.round,
        seed=stream,
        state=state,
        aux=aux,
        simulated=simulated,
    )


def _answer(sent: Weights, returned: Weights | None) -> Weights:
    """The client's auxiliary tensors, checked to answer those the strategy sent."""
    if not sent and returned is None:
        return Weights()
    if returned is None:
        raise ClientError(
            f"the strategy sent auxiliary tensors {sorted(sent)[:3]}... (e.g. SCAFFOLD's "
            "control variates) but fit returned no aux: use an adapter that supports the "
            "strategy, or fedhive.client.scaffold in your own training loop"
        )
    returned.validate_like(sent)
    return returned


def _subtract(new: Weights | None, old: Weights) -> Weights:
    """``new - old`` per tensor, after checking names, shapes and dtypes."""
    assert new is not None  # FitResult guarantees one of weights/delta
    if tuple(new) != tuple(old):
        raise NameMismatchError(
            f"fit returned parameters {sorted(new)}, the model has {sorted(old)}"
        )
    delta: dict[str, Array] = {}
    for name, array in new.items():
        reference = old[name]
        if array.shape != reference.shape:
            raise ShapeMismatchError(
                f"parameter {name!r} has shape {array.shape}, expected {reference.shape}"
            )
        if array.dtype != reference.dtype:
            raise DTypeMismatchError(
                f"parameter {name!r} has dtype {array.dtype}, expected {reference.dtype}"
            )
        delta[name] = np.subtract(array, reference)
    return Weights(delta)
