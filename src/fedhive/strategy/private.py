"""DP-FedAvg: user-level differential privacy as an update transform (McMahan et al.,
ICLR 2018).

Each aggregation clips every update to L2 norm ``C`` (Alg. 1, ``ClipFn``), sums the
clipped updates with equal weight, adds Gaussian noise of std ``z * C`` to the sum
(``noise_multiplier`` z), and hands the noisy mean to the server optimizer. ``C`` is
fixed or follows adaptive quantile clipping (Andrew et al., NeurIPS 2021, Alg. 1); then
the noise on the update uses ``z_delta`` (their Thm. 1) so the round as a whole stays a
Gaussian mechanism with multiplier z.

Modes (:class:`DpMode`):

- ``central``: the server clips every update (so the bound holds whatever a client
  sends, and adaptive clipping sees the true norms) and adds all the noise. Trust: the
  server sees each update.
- ``distributed``: each selected client clips and adds noise of std ``z * C / sqrt(m)``
  before its update leaves the device, m the round's quorum, so the sum carries std
  ``z * C``; meant to run under secure aggregation. Here the server adds nothing.
  Clients that drop below the quorum leave the sum slightly less noisy than planned.

Under a robust rule (central mode only: median, trimmed mean, Krum, Bulyan) the rule
runs on the clipped updates, its output is clipped to ``C`` in turn, and the noise has
std ``z * 2C``: the output then lies in a ball of diameter 2C whatever one client sends,
so it is a Gaussian mechanism with multiplier z on a query of sensitivity 2C (the rule
loses the mean's 1/n, an honest price of robustness under DP).

:class:`DifferentialPrivacy` comes last in an algorithm's transforms, so it noises every
sum the aggregator forms: after SCAFFOLD's :class:`~fedhive.strategy.scaffold.ControlVariates`
it is opened twice per round (the model update and the control-variate change), each a
release of the same mechanism, and the round is accounted as two.

Accounting (:mod:`fedhive.strategy.accounting`, steps the round loop calls): a round
is ``releases`` x ``GaussianEvent(z, q)`` with ``q`` its real participation rate, clients
selected / clients available (client sampling treated as Poisson subsampling, as in the
paper). A committed round is always accounted; in distributed mode so is a failed round
that dispatched its tasks. Events are the transform's typed state
(:class:`PrivacyState`), so resume keeps them. A round that would take epsilon past
``target_epsilon`` at the participation it is about to reach is refused before it is
dispatched (:class:`~fedhive.errors.PrivacyBudgetError`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from fedhive.core._compat import StrEnum
from fedhive.core.config import check_real
from fedhive.core.extensions import ClipAndNoise
from fedhive.core.messages import ClientConfig, FitReply
from fedhive.core.rng import run_stream
from fedhive.core.serde import RecordValue
from fedhive.core.weights import Layout, Weights
from fedhive.errors import AggregationError, ConfigError, PrivacyBudgetError, StateError
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
from fedhive.strategy.compose import Aggregate, Fold, is_mean
from fedhive.strategy.robust.norm_bound import clip_update
from fedhive.strategy.state import ComponentState, float_field, vector_field
from fedhive.strategy.transform import Opener, RoundContext


class DpMode(StrEnum):
    """Who adds the noise: the server (central) or each client (distributed)."""

    CENTRAL = "central"
    DISTRIBUTED = "distributed"


_EVENT_FIELDS = ("events.noise_multiplier", "events.sample_rate", "events.count")


@dataclass(frozen=True)
class PrivacyState(ComponentState):
    """DP's state: the next round's clipping norm, the run's events (consecutive equal
    ones merged), and the clipping figures of the round being aggregated (from its
    aggregation to its accounting)."""

    KIND: ClassVar[str] = "differential_privacy"

    clipping_norm: float
    events: tuple[GaussianEvent, ...] = ()
    round_clipping_norm: float | None = None
    round_unclipped_fraction: float | None = None

    def fields(self) -> dict[str, RecordValue]:
        """The norm, the events as three arrays, and the round's figures if any."""
        merged = merge_events(self.events)
        out: dict[str, RecordValue] = {
            "clipping_norm": self.clipping_norm,
            _EVENT_FIELDS[0]: np.array([e.noise_multiplier for e in merged], dtype=np.float64),
            _EVENT_FIELDS[1]: np.array([e.sample_rate for e in merged], dtype=np.float64),
            _EVENT_FIELDS[2]: np.array([e.count for e in merged], dtype=np.float64),
        }
        if self.round_clipping_norm is not None:
            out["round.clipping_norm"] = self.round_clipping_norm
        if self.round_unclipped_fraction is not None:
            out["round.unclipped_fraction"] = self.round_unclipped_fraction
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[str, RecordValue]) -> PrivacyState:
        """The state; the norm must be > 0 and the event arrays of one length."""
        norm = float_field(fields, "clipping_norm", cls.KIND)
        if norm is None or not norm > 0:
            raise StateError(f"{cls.KIND} state: clipping_norm must be > 0, got {norm!r}")
        arrays = [vector_field(fields, name, cls.KIND) for name in _EVENT_FIELDS]
        if len({a.size for a in arrays}) != 1:
            raise StateError(f"{cls.KIND} state: the event arrays differ in length")
        events = tuple(
            GaussianEvent(noise_multiplier=float(z), sample_rate=float(q), count=int(n))
            for z, q, n in zip(*arrays, strict=True)
        )
        return cls(
            norm,
            events,
            float_field(fields, "round.clipping_norm", cls.KIND, optional=True),
            float_field(fields, "round.unclipped_fraction", cls.KIND, optional=True),
        )


@dataclass(frozen=True, kw_only=True)
class DifferentialPrivacy:
    """Clipped, equally weighted updates, Gaussian noise and an accountant."""

    STATE: ClassVar[type[PrivacyState]] = PrivacyState
    fanout: ClassVar[int] = 1

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
        if self.adaptive is not None and self.mode == DpMode.DISTRIBUTED:
            raise ConfigError("adaptive: adaptive clipping needs central mode (it counts clips)")
        if self.adaptive is not None:  # the split of z must be possible
            update_noise_multiplier(self.noise_multiplier, self.adaptive.count_noise_multiplier)

    def init(self, weights: Weights) -> PrivacyState:
        """The initial clipping norm and no events."""
        norm = self.clipping_norm if self.adaptive is None else self.adaptive.initial_clipping_norm
        return PrivacyState(float(norm))

    def check(self, state: PrivacyState, weights: Weights) -> None:
        """Nothing depends on the model's size."""

    def broadcast(self, state: PrivacyState, weights: Weights) -> Weights:
        """Nothing added."""
        return weights

    def instruct(self, state: PrivacyState, config: ClientConfig, *, quorum: int) -> ClientConfig:
        """``config`` with a :class:`ClipAndNoise` naming the round's noise multiplier and,
        in distributed mode, the clipping norm and the client's noise share (shares over
        the quorum: an over-selected round sums only that many)."""
        ask = ClipAndNoise(noise_multiplier=self.noise_multiplier)
        if self.mode == DpMode.DISTRIBUTED:
            norm = state.clipping_norm
            ask = replace(
                ask,
                clipping_norm=norm,
                noise_std=self._update_multiplier() * norm / math.sqrt(quorum),
                seeded=self.noise_seed is not None,
            )
        return config.with_extensions(ask)

    def open(
        self, state: PrivacyState, context: RoundContext, layout: Layout, inner: Opener, index: int
    ) -> _PrivateFold:
        """A fold that clips, sums (or runs the rule) and adds the noise of the round's
        ``index``-th release."""
        return _PrivateFold(self, state.clipping_norm, context, layout, inner, release=index)

    def settle(self, state: PrivacyState, folds: Sequence[_PrivateFold]) -> PrivacyState:
        """The next clipping norm and the round's figures, from the model's fold."""
        if not folds:
            return state
        first = folds[0]
        return replace(
            state,
            clipping_norm=first.next_norm,
            round_clipping_norm=first.norm,
            round_unclipped_fraction=first.unclipped_fraction,
        )

    def check_budget(
        self, state: PrivacyState, round: int, participation: Participation, *, releases: int
    ) -> None:
        """Refuse a round that, accounted at ``participation``, exceeds ``target_epsilon``.

        Raises:
            PrivacyBudgetError: this round would take epsilon past ``target_epsilon``.
        """
        if not math.isfinite(self.target_epsilon) or not participation.selected:
            return
        if would_exceed(
            state.events,
            self._event(participation, releases),
            target_epsilon=self.target_epsilon,
            target_delta=self.target_delta,
            kind=self.accountant,
        ):
            spent = epsilon(state.events, target_delta=self.target_delta, kind=self.accountant)
            raise PrivacyBudgetError(
                f"round {round} would take epsilon past target_epsilon {self.target_epsilon} "
                f"at sample rate {participation.sample_rate:.4g} (spent {spent:.3f} at delta "
                f"{self.target_delta}): the run stops here",
                round=round,
                stage="privacy",
            )

    def account(
        self,
        state: PrivacyState,
        participation: Participation,
        *,
        committed: bool,
        releases: int,
    ) -> tuple[PrivacyState, PrivacyReport]:
        """``state`` with the round's event at ``participation`` when it released noisy
        updates (committed; or, in distributed mode, dispatched), and the round's report:
        epsilon so far, the event, and the clipping figures the aggregation left."""
        released = committed or (self.mode == DpMode.DISTRIBUTED and participation.selected > 0)
        round_events = (self._event(participation, releases),) if released else ()
        events = tuple(merge_events([*state.events, *round_events]))
        report = PrivacyReport(
            epsilon=epsilon(events, target_delta=self.target_delta, kind=self.accountant),
            delta=self.target_delta,
            events=round_events,
            clipping_norm=state.round_clipping_norm,
            unclipped_fraction=state.round_unclipped_fraction,
        )
        settled = replace(
            state,
            events=events if released else state.events,
            round_clipping_norm=None,
            round_unclipped_fraction=None,
        )
        return settled, report

    def _event(self, participation: Participation, releases: int) -> GaussianEvent:
        return GaussianEvent(
            noise_multiplier=self.noise_multiplier,
            sample_rate=participation.sample_rate,
            count=releases,
        )

    def _update_multiplier(self) -> float:
        if self.adaptive is None:
            return self.noise_multiplier
        return update_noise_multiplier(self.noise_multiplier, self.adaptive.count_noise_multiplier)

    def noise(self, round: int, release: int) -> NoiseSource:
        """The noise of a round's ``release``-th aggregation (seeded in simulation)."""
        if self.noise_seed is None:
            return SecureNoise()
        stream = run_stream(self.noise_seed).child("dp-noise").child(round)
        return SeededNoise(stream if release == 0 else stream.child(f"release-{release}"))

    def next_norm(self, norm: float, unclipped: int, count: int, noise: NoiseSource) -> float:
        """The next round's clipping norm (fixed, or the adaptive step)."""
        if self.adaptive is None:
            return norm
        return self.adaptive.next_clipping_norm(norm, unclipped, count, noise)

    def update_std(self, norm: float) -> float:
        """The std of the noise on a sum of updates clipped to ``norm``."""
        return self._update_multiplier() * norm


class _PrivateFold:
    """One DP aggregation: the exact sum of clipped updates plus noise under the mean;
    under a robust rule, the rule's output clipped to C plus noise of std z * 2C."""

    def __init__(
        self,
        dp: DifferentialPrivacy,
        norm: float,
        context: RoundContext,
        layout: Layout,
        inner: Opener,
        *,
        release: int,
    ) -> None:
        self.dp, self.norm, self.layout = dp, norm, layout
        self.central = dp.mode == DpMode.CENTRAL
        self.source = dp.noise(context.round, release)
        self.mean = is_mean(context.aggregator)
        self.total = ExactWeightedSum(layout.total_size)
        self.rule: Fold | None = None if self.mean else inner(layout)
        self.unclipped = self.count = self.clients = 0
        self.next_norm = norm
        self.unclipped_fraction: float | None = None

    def add(self, reply: FitReply) -> None:
        self.clients += reply.clients
        if reply.contributors and self.central:
            raise AggregationError(
                'central DP clips each update; under secure aggregation use mode = "distributed"'
            )
        self.count += 1
        if self.rule is not None:  # central: the server's clip, then the rule
            clipped = clip_update(self.layout, reply.update, self.norm)
            self.unclipped += clipped is None
            bounded = reply.update if clipped is None else clipped
            self.rule.add(replace(reply, update=bounded, num_examples=1, metrics={}))
            return
        flat = self.layout.flatten(reply.update)
        if self.central:  # the server's own bound; distributed updates already carry noise
            flat, size = clip_l2(flat, self.norm)
            self.unclipped += size <= self.norm
        self.total.add(flat, 1)

    def close(self) -> Aggregate:
        if self.count == 0:
            return Aggregate(None, self.clients, 0, {})
        noise = self.source
        if self.rule is not None:
            result = self.rule.close()
            if result.update is None:
                return Aggregate(None, self.clients, self.count, {})
            bounded, _ = clip_l2(result.update, self.norm)
            update = bounded + gaussian_noise(
                bounded.size, self.dp.update_std(2 * self.norm), noise
            )
        else:
            summed = self.total.total()
            if self.central:
                summed = summed + gaussian_noise(summed.size, self.dp.update_std(self.norm), noise)
            update = summed / self.total.count
        self.next_norm = self.dp.next_norm(self.norm, self.unclipped, self.count, noise)
        if self.central:
            self.unclipped_fraction = self.unclipped / self.count
        return Aggregate(update, self.clients, self.count, {})
