"""The client's compression stage: encode the update the task's ``Compression`` asks for.

It runs after clipping and noise (so compression is post-processing of a privatized
update and costs no privacy) and before SecAgg's masking. The error-feedback residual of
a biased sparsifier (top-k, unscaled random-k) is the device's to keep between rounds:
it lives in the client's persistent state under :data:`RESIDUAL_KEY`, as one float64
vector over the update's float tensors in layout order, like SCAFFOLD's control variate
and the privacy ledger.

The randomness of stochastic rounding and random-k comes from the task's seed
(:func:`compression_rng`), in simulation and on a deployed device alike. That is safe
because it is no privacy mechanism: the DP noise was added before, from a CSPRNG on a
deployed device, and the codec's choices only post-process the noised update. A seeded
stream makes a simulation reproducible: the same seed gives the same model on the
local and the process backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedhive.compression import encode, residual_layout
from fedhive.core.extensions import Compression
from fedhive.core.messages import FitTask
from fedhive.core.rng import SeedStream
from fedhive.core.serde import RecordValue
from fedhive.core.weights import FloatVector, Weights
from fedhive.errors import ValidationError

RESIDUAL_KEY = "compression/residual"
"""The client-state key of the error-feedback residual (a flat float64 vector)."""


@dataclass(frozen=True)
class Compressed:
    """The payload to send, and the state entry to keep once the reply is released."""

    payload: bytes
    residual: FloatVector | None  # None: the pipeline keeps none (the key is removed)


def compression_rng(seed: int) -> np.random.Generator:
    """The stream of a client's (non-secret) codec randomness, from its task seed."""
    return SeedStream(seed).child("compress").numpy()


def compress(
    update: Weights, ask: Compression, task: FitTask, state: dict[str, RecordValue]
) -> Compressed:
    """``update`` encoded with ``ask``'s pipeline, from the residual ``state`` holds.

    ``state`` is not changed here: the caller stores :attr:`Compressed.residual` once
    the reply is released (an update refused later leaves the residual as it was).

    Raises:
        ValidationError: the stored residual does not fit the update (another model).
        CodecError: a value the payload cannot carry.
    """
    pipeline = ask.pipeline
    residual: Weights | None = None
    stored = state.get(RESIDUAL_KEY)
    if pipeline.error_feedback and stored is not None:
        layout = residual_layout(update.layout())
        if not isinstance(stored, np.ndarray) or stored.shape != (layout.total_size,):
            raise ValidationError(
                f"the stored residual ({RESIDUAL_KEY}) does not fit this model's update"
            )
        residual = layout.unflatten(stored.astype(np.float64))
    encoded = encode(update, pipeline, rng=compression_rng(task.seed), residual=residual)
    kept = None
    if encoded.residual is not None:
        kept = residual_layout(update.layout()).flatten(encoded.residual)
    return Compressed(encoded.payload, kept)


def keep_residual(state: dict[str, RecordValue], compressed: Compressed) -> None:
    """Store the residual of a released update (or drop a stale one)."""
    if compressed.residual is None:
        state.pop(RESIDUAL_KEY, None)
    else:
        state[RESIDUAL_KEY] = compressed.residual
