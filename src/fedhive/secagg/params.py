"""SecAgg+ parameters and the neighbour-graph degree and threshold they imply.

Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead" (CCS 2020,
§3-4) replace SecAgg's complete graph with a random k-regular graph where k is of order
log n. We follow their analysis in spirit with an explicit union bound over the n clients.
With delta the dropout fraction, gamma the fraction of colluding clients, sigma the
security bits and eta the correctness bits, the degree k and the Shamir threshold t
(t-of-k over a client's neighbours) must satisfy::

    (1) correctness  P[Binomial(k, 1 - delta) < t] <= 2^-eta / n
        (every client's surviving neighbours still hold t shares of its secrets)
    (2) privacy      P[Binomial(k, gamma) >= t] <= 2^-sigma / n
        (colluding clients never hold t shares of an honest client's secret)
    (3) majority     t > k / 2
        (the server never gets t shares of *both* secrets of one client: each honest
        neighbour reveals only one kind of share per client)

Tails are summed in log space (log-binomial coefficients and ``logaddexp``) and compared
with a margin of 1e-9 nats, far above their float error, so a chosen (k, t) meets the
bounds exactly; at an exact tie the next t (or k) is taken.
k is the smallest even degree below n - 1 for which some t satisfies all three, and t is
the smallest such t (the most dropouts tolerated at the required privacy). If no even
k < n - 1 works, the complete graph k = n - 1 is used (SecAgg without the "+"), and if even
that fails a :class:`ConfigError` names the condition that cannot be met. Bell et al. also
need the graph of honest survivors to stay connected; for random k = O(log n) graphs this
holds with high probability and is not checked separately here.

Quantization (see :mod:`fedhive.secagg.quantize`): a client's coordinate is an integer in
[0, 2 W L] with W = ``max_weight`` and L = 2^q_bits levels per unit of ``clip_range``, and
the n-client ring sum must not wrap: ``n * 2 W L < 2^ring_bits``. So
``q_bits = ring_bits - ceil(log2(2 n W + 1))``, further capped so that ``W L <= 2^44``
(float64 then resolves a client's scaled value to 2^-8 of a level before rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, NoReturn

import numpy as np
import numpy.typing as npt

from fedhive.core.config import check_int, check_real
from fedhive.errors import ConfigError

MIN_QUANTIZATION_BITS = 8
MAX_CLIENTS = 1_000_000  # bounds the work a (decoded) parameter set can ask for
FLOAT_EXACT_BITS = 44
_MARGIN = 1e-9  # in nats: float error of the log tails is far below it, so bounds hold exactly


@dataclass(frozen=True, kw_only=True)
class SecAggParams:
    """Security parameters of a SecAgg+ round and the graph degree and threshold they imply.

    Attributes:
        num_clients: n, the clients selected for the round (3 to 1,000,000).
        dropout_fraction: delta in [0, 1), the fraction of clients that may drop per round.
        corruption_fraction: gamma in [0, 1), the fraction that may collude with each other.
        security_bits: sigma, privacy fails with probability at most 2^-sigma.
        correctness_bits: eta, a round fails for lack of shares with probability <= 2^-eta.
        ring_bits: 32 or 64, the masks' ring Z_{2^ring_bits}.
        clip_range: r > 0, each update coordinate is clipped to [-r, r].
        max_weight: W >= 1, the largest weight (example count) a client may use.
        degree: derived k, neighbours per client (n - 1 for the complete graph).
        threshold: derived t, shares needed to reconstruct a client's secret.
        quantization_bits: derived q, levels per unit clip range are 2^q.
    """

    num_clients: int
    dropout_fraction: float = 0.3
    corruption_fraction: float = 0.1
    security_bits: int = 40
    correctness_bits: int = 20
    ring_bits: int = 64
    clip_range: float = 1.0
    max_weight: int = 1 << 16
    degree: int = field(init=False)
    threshold: int = field(init=False)
    quantization_bits: int = field(init=False)

    def __post_init__(self) -> None:
        check_int("num_clients", self.num_clients, minimum=3)
        if self.num_clients > MAX_CLIENTS:
            raise ConfigError(f"num_clients: must be <= {MAX_CLIENTS}, got {self.num_clients}")
        check_real("dropout_fraction", self.dropout_fraction, low=0, high=1, high_open=True)
        check_real("corruption_fraction", self.corruption_fraction, low=0, high=1, high_open=True)
        check_int("security_bits", self.security_bits, minimum=1)
        check_int("correctness_bits", self.correctness_bits, minimum=1)
        if self.ring_bits not in (32, 64) or isinstance(self.ring_bits, bool):
            raise ConfigError(f"ring_bits: must be 32 or 64, got {self.ring_bits!r}")
        check_real("clip_range", self.clip_range, low=0, low_open=True)
        check_int("max_weight", self.max_weight, minimum=1)
        for name in ("dropout_fraction", "corruption_fraction", "clip_range"):
            object.__setattr__(self, name, float(getattr(self, name)))  # one canonical form
        degree, threshold = graph_parameters(
            self.num_clients,
            self.dropout_fraction,
            self.corruption_fraction,
            self.security_bits,
            self.correctness_bits,
        )
        object.__setattr__(self, "degree", degree)
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "quantization_bits", self._quantization_bits())

    @property
    def complete_graph(self) -> bool:
        """Whether every client neighbours every other (k = n - 1)."""
        return self.degree == self.num_clients - 1

    def _quantization_bits(self) -> int:
        # ceil(log2(2nW + 1)) == bit_length(2nW), exactly (a float log2 rounds)
        headroom = (2 * self.num_clients * self.max_weight).bit_length()
        bits = min(
            self.ring_bits - headroom,
            FLOAT_EXACT_BITS - (self.max_weight - 1).bit_length(),
        )
        if bits < MIN_QUANTIZATION_BITS:
            raise ConfigError(
                f"ring_bits: {self.ring_bits} bits leave {bits} quantization bits for "
                f"{self.num_clients} clients of weight up to {self.max_weight} "
                f"(need >= {MIN_QUANTIZATION_BITS}); use ring_bits=64 or a smaller max_weight"
            )
        return bits


class _Targets(NamedTuple):
    n: int
    delta: float
    gamma: float
    sigma: int
    eta: int


@lru_cache(maxsize=256)
def graph_parameters(
    n: int, dropout: float, corruption: float, security_bits: int, correctness_bits: int
) -> tuple[int, int]:
    """The (degree k, threshold t) of the module docstring's three conditions.

    Raises:
        ConfigError: not even the complete graph satisfies them; names the condition.
    """
    targets = _Targets(n, dropout, corruption, security_bits, correctness_bits)
    complete = _threshold(n - 1, targets)
    if complete is None:
        _refuse(targets)
    for k in range(2, n - 1, 2):
        t = _threshold(k, targets)
        if t is not None:
            return k, t
    return n - 1, complete


def _threshold(k: int, targets: _Targets) -> int | None:
    n, delta, gamma, sigma, eta = targets
    low = max(privacy_threshold(k, n, gamma, sigma), k // 2 + 1, 2)
    high = correctness_threshold(k, n, delta, eta)
    return low if low <= min(high, k) else None


def _refuse(targets: _Targets) -> NoReturn:
    n, delta, gamma, sigma, eta = targets
    k = n - 1
    privacy_t = privacy_threshold(k, n, gamma, sigma)
    correct_t = correctness_threshold(k, n, delta, eta)
    if privacy_t > k:
        reason = f"privacy (2): even t = k = {k} leaves P[Binomial(k, gamma) >= t] > 2^-sigma/n"
    elif correct_t <= k // 2:
        reason = (
            f"correctness (1) with majority (3): t > k/2 = {k / 2} needs "
            f"P[Binomial(k, 1 - delta) < {k // 2 + 1}] <= 2^-eta / n"
        )
    else:
        reason = (
            f"correctness (1) with privacy (2): correctness needs t <= {correct_t}, "
            f"privacy needs t >= {privacy_t}"
        )
    raise ConfigError(
        f"secagg: no neighbour graph for num_clients={n}, dropout_fraction={delta}, "
        f"corruption_fraction={gamma}, security_bits={sigma}, correctness_bits={eta}: "
        f"the complete graph (k = {k}) fails {reason}; allow fewer dropouts or colluders, "
        "or fewer security or correctness bits"
    )


def privacy_threshold(k: int, n: int, gamma: float, sigma: int) -> int:
    """Smallest t with P[Binomial(k, gamma) >= t] <= 2^-sigma / n (k + 1 when none)."""
    log_tails = log_upper_tails(k, gamma)
    bound = -(sigma * math.log(2) + math.log(n)) - _MARGIN
    return next((t for t in range(k + 2) if log_tails[t] <= bound), k + 1)


def correctness_threshold(k: int, n: int, delta: float, eta: int) -> int:
    """Largest t with P[Binomial(k, 1 - delta) < t] <= 2^-eta / n (0 when none).

    Fewer than t of k neighbours survive exactly when more than k - t drop, so the
    probability is the upper tail P[Binomial(k, delta) >= k - t + 1].
    """
    log_tails = log_upper_tails(k, delta)
    bound = -(eta * math.log(2) + math.log(n)) - _MARGIN
    return max((t for t in range(k + 1) if log_tails[k - t + 1] <= bound), default=0)


def log_upper_tails(k: int, p: float) -> npt.NDArray[np.float64]:
    """``out[m] = ln P[Binomial(k, p) >= m]`` for m = 0..k+1 (-inf for probability 0)."""
    out = np.full(k + 2, -np.inf)
    out[0] = 0.0
    if p == 0.0 or k == 0:
        return out
    j = np.arange(1, k + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(k - j + 1) - np.log(j))))
    js = np.arange(k + 1, dtype=np.float64)
    log_pmf = log_comb + js * math.log(p) + (k - js) * math.log1p(-p)
    out[: k + 1] = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
    out[0] = 0.0
    return out
