"""The client's side of secure aggregation: mask the update, answer each stage.

Masking is the pipeline's last stage (after clipping, DP noise and compression, whose
payload is decoded here: the masked vector is dense): the update a fit
produced never leaves the device; :class:`SecAggSession` feeds it to the SecAgg+ client
state machine (:mod:`fedhive.secagg`) and answers the server's stage requests with the
machine's messages. The session is the device's memory of its open rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedhive.compression import decode
from fedhive.core.extensions import SecAggWeighting, Weighting
from fedhive.core.failures import Stage
from fedhive.core.messages import (
    Failure,
    FitReply,
    FitTask,
    SecAggAnswer,
    SecAggReply,
    SecAggTask,
)
from fedhive.core.rng import SeedStream
from fedhive.core.weights import Layout, Weights
from fedhive.errors import FedhiveError, SecAggError
from fedhive.secagg import ClientState, RoundSetup, client_handle, client_start, decode_message
from fedhive.secagg.weighting import client_weight


def quantization_rng(seed: int) -> SeedStream:
    """The stream of a client's (non-secret) stochastic rounding, from its task seed."""
    return SeedStream(seed).child("secagg-quantize")


def _plain_update(reply: FitReply, layout: Layout) -> Weights:
    """The update to mask: a compressed reply's payload decoded (compress, then mask:
    the masked vector is dense, so only quantization changes what is summed)."""
    return reply.update if reply.payload is None else decode(reply.payload, layout)


@dataclass
class SecAggSession:
    """A device's open SecAgg+ rounds (at most a few: old ones are forgotten)."""

    rounds: dict[int, ClientState] = field(default_factory=dict)
    keep: int = 2

    def start(
        self, task: FitTask, setup: bytes, reply: FitReply, layout: Layout
    ) -> SecAggReply | Failure:
        """Mask ``reply``'s update into the round ``setup`` describes; the first message."""
        try:
            round_setup = decode_message(setup)
            if not isinstance(round_setup, RoundSetup) or round_setup.round != task.round:
                raise SecAggError("the fit task carries no setup for its round")
            told = task.config.extension(SecAggWeighting)
            weighting = Weighting.EXAMPLES if told is None else told.weighting
            weight = client_weight(weighting, reply.num_examples, round_setup.params.max_weight)
            state, message = client_start(
                round_setup,
                client_id=task.client_id,
                vector=layout.flatten(_plain_update(reply, layout)),
                weight=weight,
                rng=quantization_rng(task.seed).numpy(),
            )
        except FedhiveError as exc:
            return Failure.of(task.client_id, task.round, Stage.SECAGG, exc)
        self.rounds[task.round] = state
        for old in sorted(self.rounds)[: -self.keep]:
            del self.rounds[old]
        return SecAggReply(
            client_id=task.client_id,
            round=task.round,
            version=task.version,
            num_examples=reply.num_examples,
            message=message.to_bytes(),
            metrics=reply.metrics,
        )

    def answer(self, task: SecAggTask, request: bytes) -> SecAggAnswer | Failure:
        """This device's message of the stage ``request`` opens."""
        state = self.rounds.get(task.round)
        try:
            if state is None:
                raise SecAggError("no secure-aggregation round open here", round=task.round)
            state, message = client_handle(state, decode_message(request))  # type: ignore[arg-type]
        except FedhiveError as exc:
            return Failure.of(task.client_id, task.round, Stage.SECAGG, exc)
        self.rounds[task.round] = state
        return SecAggAnswer(client_id=task.client_id, round=task.round, message=message.to_bytes())
