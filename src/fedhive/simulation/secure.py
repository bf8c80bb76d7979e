"""Simulated devices under secure aggregation: each keeps its update and runs SecAgg+.

:class:`SecAggDevices` wraps the in-process transport into a
:class:`~fedhive.transport.base.SecureTransport`. Its fit runs the cohort as usual, but
what the server receives is each device's first protocol message; the plaintext update
stays on the device side (in this wrapper, which plays the devices), masked by the
client state machine (:func:`fedhive.secagg.client_start`, ``client_handle``). The
server's code path (:mod:`fedhive.server.secure`) is the deployment's: it sees bytes of
protocol messages and, at the end, the sum.

``SimulatedDropout`` makes a seeded fraction of each round's devices vanish at one
stage, to exercise recovery (``[secagg] simulated_dropout = 0.3``,
``simulated_dropout_stage = "masked_input"``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from fedhive.client.secure import quantization_rng
from fedhive.core.config import check_real, convert, from_table
from fedhive.core.messages import EvaluateTask, Failure, FitTask, SecAggReply
from fedhive.core.rng import run_stream
from fedhive.core.version import ModelVersion
from fedhive.errors import FedhiveError, SecAggError
from fedhive.secagg import (
    ClientState,
    MaskedInputRequest,
    NeighbourKeys,
    RoundSetup,
    Stage,
    UnmaskRequest,
    client_handle,
    client_start,
    decode_message,
)
from fedhive.secagg.weighting import Weighting, client_weight
from fedhive.server.secure import SecureAggregation
from fedhive.strategy.privacy_section import PrivacySection
from fedhive.transport.base import (
    EvaluateOutcome,
    FitOutcome,
    Quorum,
    SecureOutcome,
    StageOutcome,
)
from fedhive.transport.inprocess import InProcessTransport

_ANSWERS = {  # the server message a device receives → the stage its answer belongs to
    NeighbourKeys: Stage.SHARE_KEYS,
    MaskedInputRequest: Stage.MASKED_INPUT,
    UnmaskRequest: Stage.UNMASKING,
}


@dataclass(frozen=True, kw_only=True)
class SimulatedDropout:
    """A seeded ``fraction`` of each round's devices vanish at ``stage`` (simulation)."""

    fraction: float = 0.0
    stage: Stage = Stage.MASKED_INPUT

    def __post_init__(self) -> None:
        check_real("simulated_dropout", self.fraction, low=0, high=1, high_open=True)

    def dropped(self, seed: int, round: int, cohort: Sequence[str]) -> frozenset[str]:
        """The devices of ``cohort`` that vanish this round."""
        count = int(self.fraction * len(cohort))
        if count == 0:
            return frozenset()
        rng = run_stream(seed).child("secagg-dropout").child(round).numpy()
        return frozenset(rng.choice(sorted(cohort), size=count, replace=False).tolist())


class SecAggDevices:
    """The simulated devices' side of SecAgg+ around an in-process transport."""

    def __init__(
        self,
        inner: InProcessTransport,
        *,
        secure: SecureAggregation,
        seed: int,
        dropout: SimulatedDropout | None = None,
    ) -> None:
        self._inner = inner
        self._secure = secure
        self._seed = seed
        self._dropout = dropout or SimulatedDropout()
        self._states: dict[str, ClientState] = {}
        self._gone: frozenset[str] = frozenset()

    def client_ids(self) -> Sequence[str]:
        """The simulated clients."""
        return self._inner.client_ids()

    def fit(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, quorum: Quorum | None = None
    ) -> Iterator[FitOutcome]:
        """Plain fit (no secure aggregation), as the inner transport runs it."""
        return self._inner.fit(tasks, model, quorum=quorum)

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Evaluation needs no secure aggregation."""
        return self._inner.evaluate(tasks, model)

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()

    def fit_secure(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, setup: bytes
    ) -> Iterator[SecureOutcome]:
        """Train, then each device masks its update and advertises its keys."""
        round_setup = decode_message(setup)
        if not isinstance(round_setup, RoundSetup):
            raise SecAggError("the round setup is not a RoundSetup", stage="setup")
        self._states = {}
        cohort = [t.client_id for t in tasks]
        rnd = tasks[0].round if tasks else 0
        self._gone = self._dropout.dropped(self._seed, rnd, cohort)
        layout = model.weights.layout()
        seeds = {t.client_id: t.seed for t in tasks}
        for outcome in self._inner.fit(tasks, model):
            if isinstance(outcome, Failure):
                yield outcome
                continue
            cid = outcome.client_id
            if self._vanished(cid, Stage.ADVERTISE_KEYS):
                yield _dropped(cid, outcome.round, Stage.ADVERTISE_KEYS)
                continue
            rng = quantization_rng(seeds[cid]).numpy()  # as a deployed client draws it
            try:
                state, message = client_start(
                    round_setup,
                    client_id=cid,
                    vector=layout.flatten(outcome.update),
                    weight=client_weight(
                        self._secure.weighting, outcome.num_examples, self._secure.max_weight
                    ),
                    rng=rng,
                )
            except FedhiveError as exc:
                yield Failure.of(cid, outcome.round, "secagg", exc)
                continue
            self._states[cid] = state
            yield SecAggReply(
                client_id=cid,
                round=outcome.round,
                version=outcome.version,
                num_examples=outcome.num_examples,
                message=message.to_bytes(),
                metrics=outcome.metrics,
            )

    def exchange(self, round: int, messages: Mapping[str, bytes]) -> Iterator[StageOutcome]:
        """Each device answers its message of the next stage (or has vanished)."""
        for cid, data in sorted(messages.items()):
            state = self._states.get(cid)
            try:
                request = decode_message(data)
                stage = _ANSWERS.get(type(request))
                if state is None or stage is None:
                    raise SecAggError(f"no round in progress for a {type(request).__name__}")
                if self._vanished(cid, stage):
                    yield _dropped(cid, round, stage)
                    continue
                self._states[cid], answer = client_handle(state, request)  # type: ignore[arg-type]
            except FedhiveError as exc:
                yield Failure.of(cid, round, "secagg", exc)
                continue
            yield cid, answer.to_bytes()

    def _vanished(self, client_id: str, stage: Stage) -> bool:
        order = list(_STAGES)
        return client_id in self._gone and order.index(stage) >= order.index(self._dropout.stage)


_STAGES = (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASKING)


def _dropped(client_id: str, round: int, stage: Stage) -> Failure:
    return Failure(
        client_id=client_id,
        round=round,
        stage="secagg",
        error_type="Dropout",
        message=f"the simulated device vanished at {stage}",
    )


def parse_secagg(
    table: Mapping[str, object], *, privacy: PrivacySection | None
) -> tuple[SecureAggregation, SimulatedDropout]:
    """The ``[secagg]`` section: protocol settings, and the simulated dropout.

    With a ``[privacy]`` section, ``weighting`` defaults to ``"uniform"`` (what
    distributed DP needs; :func:`fedhive.server.rules.check_run` checks it).

    Raises:
        ConfigError: a bad value, naming its key.
    """
    values = dict(convert(dict, table, "secagg"))
    dropout = from_table(
        SimulatedDropout,
        {
            "fraction": values.pop("simulated_dropout", 0.0),
            "stage": values.pop("simulated_dropout_stage", str(Stage.MASKED_INPUT)),
        },
        "secagg.simulated_dropout",
    )
    if privacy is not None:
        values.setdefault("weighting", str(Weighting.UNIFORM))
    return from_table(SecureAggregation, values, "secagg"), dropout
