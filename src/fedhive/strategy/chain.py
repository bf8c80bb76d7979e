"""Which parts compose: the rules an algorithm's transforms, aggregator and schedule
must keep together, each refusal naming the part to change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedhive.errors import ConfigError
from fedhive.strategy.compose import Aggregator, is_mean
from fedhive.strategy.fedbuff import Buffered
from fedhive.strategy.private import DifferentialPrivacy, DpMode
from fedhive.strategy.robust import NormBound
from fedhive.strategy.scaffold import ControlVariates


def check_chain(transforms: Sequence[Any], aggregator: Aggregator, schedule: object) -> None:
    """Refuse parts that do not compose.

    - a buffered (asynchronous) schedule takes the mean and no transforms;
    - DP comes last (it noises every sum the aggregator forms), at most once;
    - distributed DP needs the plain mean (the clients' noise shares sum only there)
      and no control variates (the devices would release ``dc_i`` without noise);
    - central DP takes the mean or a robust rule, but not ``max_update_norm`` (its own
      clipping bounds every update already);
    - adaptive clipping is steered by one release per round: not with control variates.

    Raises:
        ConfigError: the parts do not compose; the message says which to change.
    """
    if not callable(aggregator):
        raise ConfigError(f"aggregator: must be an aggregator, got {aggregator!r}")
    for index, transform in enumerate(transforms):
        if not callable(getattr(transform, "open", None)):
            raise ConfigError(f"transforms[{index}]: not an update transform: {transform!r}")
    if isinstance(schedule, Buffered):
        if transforms:
            raise ConfigError(
                "transforms: FedBuff's buffer takes no update transforms (SCAFFOLD, DP) yet"
            )
        if not is_mean(aggregator):
            raise ConfigError(
                "aggregator: robust rules (and max_update_norm) are not supported with "
                'FedBuff\'s buffer yet; use aggregator = "mean"'
            )
        return
    private = [i for i, t in enumerate(transforms) if isinstance(t, DifferentialPrivacy)]
    if not private:
        return
    if private != [len(transforms) - 1]:
        raise ConfigError(
            "transforms: differential privacy must come last, once (it noises every sum "
            "the aggregator forms)"
        )
    dp: DifferentialPrivacy = transforms[-1]
    scaffold = any(isinstance(t, ControlVariates) for t in transforms)
    if isinstance(aggregator, NormBound):
        raise ConfigError(
            "max_update_norm: differential privacy already clips every update to its "
            "clipping_norm; leave max_update_norm at 0"
        )
    if dp.mode == DpMode.DISTRIBUTED and not is_mean(aggregator):
        raise ConfigError(
            "aggregator: distributed DP needs the mean (the clients' noise shares add up "
            "to the planned noise only in a sum)"
        )
    if dp.mode == DpMode.DISTRIBUTED and scaffold:
        raise ConfigError(
            "privacy.mode: distributed DP with SCAFFOLD would release the clients' "
            'control-variate changes without noise; use mode = "central"'
        )
    if dp.adaptive is not None and scaffold:
        raise ConfigError(
            "privacy.adaptive: adaptive clipping is steered by one release per round; "
            "SCAFFOLD makes two"
        )
