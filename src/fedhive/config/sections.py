"""The run config's own sections: ``[run]``, ``[evaluation]``, ``[client]``, and the
free-form ``[app]`` and ``[client] extra`` tables.

Each is a msgspec Struct: frozen, every key declared with its type, constraint and
default; a config decodes it with :func:`fedhive.core.decode.decode`. ``[client]``
builds the :class:`~fedhive.core.messages.ClientConfig` the strategy sends, with its
typed instructions (``dpsgd``, ``partial_work``, ``compression``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from fedhive.config.compression import CompressionSection, compression_section
from fedhive.core.decode import AtLeastOne, AtLeastZero, FinitePositive
from fedhive.core.extensions import Compression, DpSgd, Extension, PartialWork
from fedhive.core.messages import ClientConfig, PrivacyBudget
from fedhive.errors import ConfigError


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A config section: frozen, every key declared (an unknown key is refused)."""


class RunSection(_Section, frozen=True):
    """``[run]``: which app to run, for how many rounds, from which seed."""

    app: Annotated[str, msgspec.Meta(min_length=1)]
    rounds: AtLeastOne
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0


class EvaluationSection(_Section, frozen=True):
    """``[evaluation]``: centralised evaluation each round; federated every N rounds
    (0: never)."""

    centralized: bool = True
    federated_every: AtLeastZero = 0


_OpenUnit = Annotated[float, msgspec.Meta(gt=0, lt=1)]


class BudgetSection(_Section, frozen=True):
    """``[client] privacy_budget``: the device's own budget (:class:`PrivacyBudget`)."""

    epsilon_max: FinitePositive
    delta: _OpenUnit
    min_noise_multiplier: FinitePositive | None = None
    clipping_norm: FinitePositive | None = None


class DpSgdSection(_Section, frozen=True):
    """``[client] dpsgd``: sample-level DP-SGD (:class:`DpSgd`)."""

    noise_multiplier: FinitePositive
    max_grad_norm: FinitePositive
    delta: _OpenUnit = DpSgd.delta


class PartialWorkSection(_Section, frozen=True):
    """``[client] partial_work``: a cap on one fit's optimizer steps (:class:`PartialWork`)."""

    max_local_steps: AtLeastOne


Scalar = str | int | float | bool


class ClientSection(_Section, frozen=True):
    """``[client]`` (and each ``[clients.ID]`` over it): how clients train."""

    local_epochs: AtLeastOne = ClientConfig.local_epochs
    batch_size: AtLeastOne = ClientConfig.batch_size
    learning_rate: FinitePositive = ClientConfig.learning_rate
    privacy_budget: BudgetSection | None = None
    extra: dict[str, Scalar] = {}
    """The app's own free-form scalars."""
    dpsgd: DpSgdSection | None = None
    partial_work: PartialWorkSection | None = None
    compression: CompressionSection | None = None
    """The update's codecs (:mod:`fedhive.config.compression`); None: sent as it is."""

    def build(self, path: str) -> ClientConfig:
        """The :class:`ClientConfig` this section describes."""
        plain_json(f"{path}.extra", self.extra)
        budget = None
        if self.privacy_budget is not None:
            budget = PrivacyBudget(**msgspec.structs.asdict(self.privacy_budget))
        extensions: list[Extension] = []
        if self.dpsgd is not None:
            extensions.append(DpSgd(**msgspec.structs.asdict(self.dpsgd)))
        if self.partial_work is not None:
            extensions.append(PartialWork(max_local_steps=self.partial_work.max_local_steps))
        if self.compression is not None:
            extensions.append(self.compression.build())
        return ClientConfig(
            local_epochs=self.local_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            privacy_budget=budget,
            extensions=tuple(extensions),
            extra=dict(self.extra),
        )


def client_section(config: ClientConfig) -> ClientSection:
    """The section that builds ``config`` back (the instructions a strategy adds, such as
    FedProx's, are left to it)."""
    budget = config.privacy_budget
    dpsgd = config.extension(DpSgd)
    partial = config.extension(PartialWork)
    compression = config.extension(Compression)
    return ClientSection(
        local_epochs=config.local_epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        privacy_budget=None if budget is None else BudgetSection(**dataclasses.asdict(budget)),
        extra=dict(config.extra),
        dpsgd=None if dpsgd is None else DpSgdSection(**dataclasses.asdict(dpsgd)),
        partial_work=None if partial is None else PartialWorkSection(**dataclasses.asdict(partial)),
        compression=None if compression is None else compression_section(compression),
    )


def plain_json(path: str, value: Any) -> Any:
    """``value`` (free-form settings) if strict JSON can hold it, so config.json can.

    Raises:
        ConfigError: a non-finite number or a TOML date or time, naming its key.
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            plain_json(f"{path}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            plain_json(f"{path}[{index}]", item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be finite (config.json is strict JSON), got {value}")
    elif not isinstance(value, (str, int, float)):
        raise ConfigError(f"{path}: JSON cannot hold a {type(value).__name__}, got {value!r}")
    return value
