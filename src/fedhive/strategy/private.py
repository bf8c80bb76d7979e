"""DP-FedAvg: user-level differential privacy around FedAvg (McMahan et al., ICLR 2018).

Each round every update is clipped to L2 norm ``C`` (Alg. 1, ``ClipFn``), the clipped
updates are summed with equal weight, Gaussian noise of std ``z * C`` is added to the
sum (``noise_multiplier`` z), and the noisy mean drives the base strategy's server
optimizer. ``C`` is fixed or follows adaptive quantile clipping (Andrew et al., NeurIPS
2021, Alg. 1); then the noise on the update uses ``z_delta`` (their Thm. 1) so the
round as a whole stays a Gaussian mechanism with multiplier z.

Modes (:class:`DpMode`):

- ``central``: the server clips every update (so the bound holds whatever a client
  sends, and adaptive clipping sees the true norms) and adds all the noise. Trust: the
  server sees each update.
- ``distributed``: each selected client clips and adds noise of std ``z * C / sqrt(m)``
  before its update leaves the device, m the round's quorum (the selected clients, or
  fewer with over-selection: the round then sums only its quorum's updates), so the sum
  carries std ``z * C``; meant to run under secure aggregation, where no party sees a
  less noisy sum. Here the server adds nothing. Clients that drop below the quorum leave
  the sum slightly less noisy than planned (an honest caveat of this mode).

Accounting (:mod:`fedhive.strategy.accounting`, steps the round loop calls): a round
is one ``GaussianEvent(z, q)`` with ``q`` its real participation rate, clients selected /
clients available (over-selection, the ``min_fit_clients`` floor and replacement waves
included; client sampling treated as Poisson subsampling, as in the paper). A committed
round is always accounted; in distributed mode so is a failed round that dispatched its
tasks, since its devices released their noisy updates (and the server may have unmasked
their sum) whatever happened next. Events live in the strategy state (``dp.*`` arrays),
so resume keeps them. The round loop records each round's
:class:`~fedhive.strategy.accounting.PrivacyReport`: epsilon so far, the round's event,
the clipping norm and (central mode) the fraction of updates left unclipped. A round
that would take epsilon past ``target_epsilon`` at the participation it is about to
reach is refused before it is dispatched (:class:`~fedhive.errors.PrivacyBudgetError`);
the round loop ends the run there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fedhive.core._compat import StrEnum
from fedhive.core.config import check_real
from fedhive.core.extensions import ClipAndNoise
from fedhive.core.messages import FitReply
from fedhive.core.rng import run_stream
from fedhive.core.weights import Weights
from fedhive.errors import AggregationError, ConfigError, PrivacyBudgetError
from fedhive.privacy import (
    AccountantKind,
    AdaptiveClipping,
    GaussianEvent,
    NoiseSource,
    SecureNoise,
    SeededNoise,
    clip_l2,
    epsilon,
    gaussian_noise,
    update_noise_multiplier,
    would_exceed,
)
from fedhive.privacy.accountant import merge_events
from fedhive.strategy.accounting import Participation, PrivacyReport
from fedhive.strategy.aggregate import ExactWeightedSum
from fedhive.strategy.base import Instruction, StrategyState
from fedhive.strategy.compose import WeightedMean
from fedhive.strategy.wrapper import AroundFedAvg

CLIPPING_NORM = "dp.clipping_norm"
"""Strategy-state key: the clipping norm of the next round."""
_EVENTS = ("dp.events.noise_multiplier", "dp.events.sample_rate", "dp.events.count")
_ROUND_FIGURES = ("dp.round.clipping_norm", "dp.round.unclipped_fraction")
"""The clipping figures of the round being aggregated, from ``aggregate_fit`` to ``account``."""


class DpMode(StrEnum):
    """Who adds the noise: the server (central) or each client (distributed)."""

    CENTRAL = "central"
    DISTRIBUTED = "distributed"


@dataclass(frozen=True, kw_only=True)
class DpFedAvg(AroundFedAvg):
    """FedAvg with clipped, equally weighted updates, Gaussian noise and an accountant."""

    noise_multiplier: float = 1.0
    clipping_norm: float = 1.0
    adaptive: AdaptiveClipping | None = None
    """None: fixed ``clipping_norm``; else adaptive clipping from its initial norm."""
    mode: DpMode = DpMode.CENTRAL
    target_delta: float = 1e-5
    target_epsilon: float = math.inf
    """Refuse a round that would take epsilon past this (inf: never)."""
    accountant: AccountantKind = AccountantKind.RDP
    noise_seed: int | None = None
    """Seed for reproducible noise (simulation); None: noise from a CSPRNG."""

    def __post_init__(self) -> None:
        check_real("noise_multiplier", self.noise_multiplier, low=0, low_open=True)
        check_real("clipping_norm", self.clipping_norm, low=0, low_open=True)
        check_real("target_delta", self.target_delta, low=0, high=1, low_open=True)
        if not self.target_epsilon > 0:
            raise ConfigError(f"target_epsilon: must be > 0, got {self.target_epsilon}")
        if not isinstance(self.base.aggregator, WeightedMean):
            raise ConfigError("aggregator: differential privacy needs the mean of clipped updates")
        if self.adaptive is not None and self.mode == DpMode.DISTRIBUTED:
            raise ConfigError("adaptive: adaptive clipping needs central mode (it counts clips)")
        if self.adaptive is not None:  # the split of z must be possible
            update_noise_multiplier(self.noise_multiplier, self.adaptive.count_noise_multiplier)

    def initial_state(self, weights: Weights) -> StrategyState:
        """The base state, the initial clipping norm and an empty event list."""
        norm = self.clipping_norm if self.adaptive is None else self.adaptive.initial_clipping_norm
        state = dict(self.base.initial_state(weights))
        state[CLIPPING_NORM] = float(norm)
        for key in _EVENTS:
            state[key] = np.zeros(0, dtype=np.float64)
        return state

    def configure_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        clients: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """The base selection; each config carries a :class:`ClipAndNoise` naming the
        round's noise multiplier and, in distributed mode, the clipping norm and the
        client's noise share. (The round loop checks the budget: :meth:`check_budget`.)"""
        chosen = self.base.configure_fit(state, round, weights, clients, rng)
        norm = _norm(state)
        ask = ClipAndNoise(noise_multiplier=self.noise_multiplier)
        if self.mode == DpMode.DISTRIBUTED and chosen:
            # Shares over the quorum: an over-selected round sums only that many.
            shares = self.base.fit_quorum(len(chosen))
            ask = replace(
                ask,
                clipping_norm=norm,
                noise_std=self._update_multiplier() * norm / math.sqrt(shares),
                seeded=self.noise_seed is not None,
            )
        return [Instruction(i.client_id, i.config.with_extensions(ask)) for i in chosen]

    def check_budget(self, state: StrategyState, round: int, participation: Participation) -> None:
        """Refuse a round that, accounted at ``participation``, exceeds ``target_epsilon``.

        Raises:
            PrivacyBudgetError: this round would take epsilon past ``target_epsilon``.
        """
        if not math.isfinite(self.target_epsilon) or not participation.selected:
            return
        events = _events(state)
        if would_exceed(
            events,
            self._event(participation),
            target_epsilon=self.target_epsilon,
            target_delta=self.target_delta,
            kind=self.accountant,
        ):
            spent = epsilon(events, target_delta=self.target_delta, kind=self.accountant)
            raise PrivacyBudgetError(
                f"round {round} would take epsilon past target_epsilon {self.target_epsilon} "
                f"at sample rate {participation.sample_rate:.4g} (spent {spent:.3f} at delta "
                f"{self.target_delta}): the run stops here",
                round=round,
                stage="privacy",
            )

    def account(
        self,
        state: StrategyState,
        round: int,
        participation: Participation,
        *,
        committed: bool,
    ) -> tuple[StrategyState, PrivacyReport]:
        """``state`` with the round's event at ``participation`` when it released noisy
        updates (committed; or, in distributed mode, dispatched), and the round's report:
        epsilon so far, the event, and the clipping figures ``aggregate_fit`` left."""
        events = _events(state)
        released = committed or (self.mode == DpMode.DISTRIBUTED and participation.selected > 0)
        round_events = (self._event(participation),) if released else ()
        events.extend(round_events)
        figures = {key: state.get(key) for key in _ROUND_FIGURES}
        state = {k: v for k, v in state.items() if k not in _ROUND_FIGURES}
        if released:
            state = {**state, **_events_state(events)}
        report = PrivacyReport(
            epsilon=epsilon(events, target_delta=self.target_delta, kind=self.accountant),
            delta=self.target_delta,
            events=round_events,
            clipping_norm=_figure(figures[_ROUND_FIGURES[0]]),
            unclipped_fraction=_figure(figures[_ROUND_FIGURES[1]]),
        )
        return state, report

    def aggregate_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        replies: Iterable[FitReply],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        """Clip, sum, add noise, average; step (the round loop then accounts the round)."""
        layout = weights.layout()
        norm = _norm(state)
        total = ExactWeightedSum(layout.total_size)
        unclipped = 0
        central = self.mode == DpMode.CENTRAL
        clients = 0
        for reply in replies:
            clients += reply.clients
            if reply.contributors and central:
                raise AggregationError(
                    "central DP clips each update; under secure aggregation use mode = "
                    '"distributed"'
                )
            update = layout.flatten(reply.update)
            if central:  # the server's own bound; distributed updates already carry noise
                update, size = clip_l2(update, norm)
                unclipped += size <= norm
            total.add(update, 1)
        self.base.require_fit_clients(clients, round)
        noise = self._noise(round)
        summed = total.total()
        if central:
            summed = summed + gaussian_noise(summed.size, self._update_multiplier() * norm, noise)
        base_state = {k: v for k, v in state.items() if not k.startswith("dp.")}
        base_state, new = self.base.optimizer.step(
            base_state, layout.flatten(weights), summed / total.count
        )
        new_state: StrategyState = {**base_state, **_events_state(_events(state))}
        new_state[CLIPPING_NORM] = self._next_norm(norm, unclipped, total.count, noise)
        new_state[_ROUND_FIGURES[0]] = norm  # for this round's report (account takes them)
        if central:
            new_state[_ROUND_FIGURES[1]] = unclipped / total.count
        return new_state, layout.unflatten(new), {}

    def _event(self, participation: Participation) -> GaussianEvent:
        return GaussianEvent(
            noise_multiplier=self.noise_multiplier, sample_rate=participation.sample_rate
        )

    def _update_multiplier(self) -> float:
        if self.adaptive is None:
            return self.noise_multiplier
        return update_noise_multiplier(self.noise_multiplier, self.adaptive.count_noise_multiplier)

    def _noise(self, round: int) -> NoiseSource:
        if self.noise_seed is None:
            return SecureNoise()
        return SeededNoise(run_stream(self.noise_seed).child("dp-noise").child(round))

    def _next_norm(self, norm: float, unclipped: int, count: int, noise: NoiseSource) -> float:
        if self.adaptive is None:
            return norm
        return self.adaptive.next_clipping_norm(norm, unclipped, count, noise)


def _norm(state: StrategyState) -> float:
    value = state.get(CLIPPING_NORM)
    if not isinstance(value, float) or not value > 0:
        raise ConfigError(f"strategy state holds no valid {CLIPPING_NORM}: {value!r}")
    return value


def _figure(value: object) -> float | None:
    return value if isinstance(value, float) else None


def _events(state: StrategyState) -> list[GaussianEvent]:
    arrays = [np.asarray(state.get(key, np.zeros(0))) for key in _EVENTS]
    return [
        GaussianEvent(noise_multiplier=float(z), sample_rate=float(q), count=int(n))
        for z, q, n in zip(*arrays, strict=True)
    ]


def _events_state(events: Sequence[GaussianEvent]) -> StrategyState:
    """Events as three arrays, consecutive equal events merged into one count."""
    merged = merge_events(events)
    return {
        _EVENTS[0]: np.array([e.noise_multiplier for e in merged], dtype=np.float64),
        _EVENTS[1]: np.array([e.sample_rate for e in merged], dtype=np.float64),
        _EVENTS[2]: np.array([e.count for e in merged], dtype=np.float64),
    }
