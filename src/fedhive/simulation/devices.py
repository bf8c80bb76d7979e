"""Simulated device speeds: how long a client's task takes on a virtual clock.

Real federations are heterogeneous: a few slow devices decide how long a synchronous
round takes, which is what asynchronous aggregation (FedBuff) avoids. Each client gets
a fixed speed from the run seed and its id alone (so every backend, batching and
arrival order agrees), drawn from the ``[devices]`` section's distribution, normalised
so that the median device runs one local epoch in ``seconds_per_epoch``:

- ``constant``: every device has speed 1;
- ``lognormal``: ``speed = exp(sigma * z)``, z standard normal;
- ``pareto``: ``1 / speed`` is Pareto(``alpha``) over its median, a heavy tail of slow
  devices (the smaller ``alpha``, the heavier; the mean slowness is infinite for
  ``alpha <= 1``).

A task takes ``local_epochs * seconds_per_epoch / speed`` times a per-task lognormal
jitter ``exp(jitter * z)`` drawn from (seed, client, task index).

```toml
[devices]
distribution = "pareto"   # constant | lognormal | pareto
alpha = 1.5               # pareto shape
sigma = 1.0               # lognormal spread
seconds_per_epoch = 1.0   # one local epoch on a median device
jitter = 0.0              # per-task lognormal noise (sigma)
```
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from fedhive.config.simulated import DeviceDistribution, DevicesSection
from fedhive.core.messages import ClientConfig, FitTask
from fedhive.core.rng import SeedStream, run_stream


@dataclass(frozen=True)
class DeviceModel:
    """Each client's speed and each task's duration, from the run seed."""

    section: DevicesSection
    seed: int

    @property
    def _stream(self) -> SeedStream:
        return run_stream(self.seed).child("devices")

    def speed(self, client_id: str) -> float:
        """The client's speed relative to a median device (> 0), fixed for the run."""
        rng = self._stream.child("speed").child(client_id).numpy()
        kind = self.section.distribution
        if kind == DeviceDistribution.LOGNORMAL:
            return math.exp(self.section.sigma * float(rng.standard_normal()))
        if kind == DeviceDistribution.PARETO:
            # Inverse CDF: slowness = (1 - u)^(-1/alpha), u in [0, 1), over its median.
            inverse = 1.0 / self.section.alpha
            slowness = math.pow(1.0 - float(rng.random()), -inverse) / math.pow(2.0, inverse)
            return 1.0 / slowness
        return 1.0

    def duration(self, client_id: str, config: ClientConfig, task_index: int) -> float:
        """Seconds the client's task takes: ``local_epochs`` epochs at its speed, times
        the jitter of this task (``task_index``: the dispatch index, or the round)."""
        seconds = config.local_epochs * self.section.seconds_per_epoch / self.speed(client_id)
        if self.section.jitter > 0:
            rng = self._stream.child("jitter").child(client_id).child(task_index).numpy()
            seconds *= math.exp(self.section.jitter * float(rng.standard_normal()))
        return seconds

    def fit_seconds(self, task: FitTask) -> float:
        """Seconds a synchronous round's fit task takes (task index: its round)."""
        return self.duration(task.client_id, task.config, task.round)


def synchronous_round_time(durations: Iterable[float]) -> float:
    """A synchronous round lasts as long as its slowest client (0 with no client)."""
    return max(durations, default=0.0)
