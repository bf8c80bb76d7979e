"""Named, reproducible random streams: run seed → round → client.

A :class:`SeedStream` is a seed plus the path that produced it. ``child(label)`` derives a
new, independent seed by hashing (SHA-256) the parent seed with the label, so the seed a
client gets in a round depends only on (run seed, round, client id): never on which
backend runs it or in which order results arrive. These streams are for reproducible
simulation (shuffling, initialisation, sampling); secret material (masks, keys, noise in
deployment) comes from a CSPRNG instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class SeedStream:
    """A 64-bit seed with a name path; derive children, never reuse a seed twice."""

    seed: int
    path: str = "run"

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= _MASK64:
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")

    def child(self, label: str | int) -> SeedStream:
        """The independent stream named ``label`` under this one."""
        digest = hashlib.sha256(
            self.seed.to_bytes(8, "little") + b"/" + str(label).encode()
        ).digest()
        return SeedStream(int.from_bytes(digest[:8], "little"), f"{self.path}/{label}")

    def numpy(self) -> np.random.Generator:
        """A numpy Generator seeded from this stream."""
        return np.random.Generator(np.random.PCG64(self.seed))

    @property
    def torch_seed(self) -> int:
        """This stream's seed in the range ``torch.Generator.manual_seed`` accepts."""
        return self.seed & ((1 << 63) - 1)


def run_stream(seed: int) -> SeedStream:
    """The root stream of a run with the user-facing ``seed``."""
    return SeedStream(seed & _MASK64, "run")
