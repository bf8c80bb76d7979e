"""The safety rules that span objects: which strategy, secure aggregation, federated
evaluation and noise source may run together.

Each object checks its own values; :func:`check_run` checks what none of them sees
alone. Every entry point calls it before anything runs: the TOML parser
(:func:`fedhive.config.parse_config`), the simulation engine (so the Python
API :func:`fedhive.run_simulation` too) and the deployed server's loop. Errors name
the config keys involved.
"""

from __future__ import annotations

from fedhive.core.codecs import StochasticQuantization
from fedhive.core.extensions import Compression, Weighting
from fedhive.errors import ConfigError
from fedhive.server.secure import SecureAggregation
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.base import Strategy
from fedhive.strategy.compose import is_mean
from fedhive.strategy.private import DifferentialPrivacy, DpMode
from fedhive.strategy.registry import dispatch_loop


def check_run(
    strategy: Strategy,
    *,
    secure: SecureAggregation | None = None,
    federated_every: int = 0,
    deployed: bool = False,
) -> None:
    """Refuse a combination that would run unsafely or not as configured.

    - under secure aggregation (``secure``): no central DP (the server would need each
      update to clip it), distributed DP with uniform weighting (the noise is sized for
      a sum of equally weighted updates), the mean aggregator (a robust rule or a norm
      bound needs each update), no FedBuff, no sparsifying ``client.compression``
      (top-k or random-k: the pairwise masks are dense, so a sparse update saves
      nothing once masked, and its error feedback would hide what the sum lacks);
    - FedBuff: no federated evaluation;
    - ``deployed``: DP noise from a CSPRNG, never from a seed the run's config holds.

    Raises:
        ConfigError: naming the keys of the first rule broken.
    """
    dispatch_loop(
        strategy,
        rounds=lambda synchronous: _check_rounds(synchronous, secure=secure, deployed=deployed),
        buffered=lambda _: _check_buffered(secure=secure, federated_every=federated_every),
    )


def _check_buffered(*, secure: SecureAggregation | None, federated_every: int) -> None:
    if secure is not None:
        raise ConfigError(
            'secagg: not available with strategy.name = "fedbuff" (its asynchronous '
            "buffer has no cohort to mask among)"
        )
    if federated_every:
        raise ConfigError('evaluation.federated_every: must be 0 with strategy.name = "fedbuff"')


def _check_rounds(strategy: Strategy, *, secure: SecureAggregation | None, deployed: bool) -> None:
    dp = strategy.privacy if isinstance(strategy, Algorithm) else None
    if dp is not None:
        _check_dp(dp, secure=secure, deployed=deployed)
    if secure is not None and isinstance(strategy, Algorithm):
        _check_compression(strategy)
    if secure is not None and not _aggregates_the_mean(strategy):
        raise ConfigError(
            "strategy.aggregator, strategy.max_update_norm: secagg needs the mean aggregator "
            "(the server sees only the sum, never an update to rank or clip)"
        )


def _check_compression(strategy: Algorithm) -> None:
    configs = {"client": strategy.client_config}
    configs.update({f"clients.{cid}": c for cid, c in strategy.per_client.items()})
    for path, config in configs.items():
        ask = config.extension(Compression)
        lossy = None if ask is None else ask.pipeline.lossy
        if lossy is not None and not isinstance(lossy, StochasticQuantization):
            raise ConfigError(
                f"{path}.compression, secagg: {type(lossy).__name__} sparsification cannot "
                "run under secure aggregation (the pairwise masks are dense: the masked "
                "update is as large as the model); ask only for quantization and zstd, "
                "which the client applies before masking"
            )


def _check_dp(
    strategy: DifferentialPrivacy, *, secure: SecureAggregation | None, deployed: bool
) -> None:
    if deployed and strategy.noise_seed is not None:
        raise ConfigError(
            "privacy.secure_noise: a deployed server draws DP noise from a CSPRNG; "
            f"the strategy's noise_seed must be None, got {strategy.noise_seed}"
        )
    if secure is None:
        return
    if strategy.mode == DpMode.CENTRAL:
        raise ConfigError(
            "privacy.mode, secagg: central DP clips each update the server sees; with "
            'secure aggregation set privacy.mode = "distributed"'
        )
    if secure.weighting != Weighting.UNIFORM:
        raise ConfigError(
            'secagg.weighting: must be "uniform" with privacy.mode = "distributed" '
            f"(each device's noise share assumes equal weights), got {str(secure.weighting)!r}"
        )


def _aggregates_the_mean(strategy: object) -> bool:
    """Whether the algorithm aggregates with the mean; True for a strategy of another
    kind (it is handed the sum as one reply)."""
    return not isinstance(strategy, Algorithm) or is_mean(strategy.aggregator)
