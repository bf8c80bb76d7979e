"""Weighted updates into the SecAgg ring and the ring sum back into floats.

Masking works in Z_{2^b} (Bonawitz et al., CCS 2017, §4; Bell et al., CCS 2020, §5 on
quantization for SecAgg), so a client's float update becomes ring elements first:

* clip each coordinate to [-r, r] and multiply by the client's weight w (1 <= w <= W);
* scale by L / r with L = 2^q levels per unit of r, and round *stochastically*:
  ``floor(f) + [u < f - floor(f)]`` with u uniform in [0, 1), an unbiased estimate of f;
* add the fixed offset W L so every value lies in [0, 2 W L];
* append w itself as one more coordinate, so the sum tells the server the total weight.

For m <= n clients the ring sum never wraps because ``n * 2 W L < 2^ring_bits`` (see
:class:`~fedhive.secagg.params.SecAggParams`). Decoding subtracts m offsets and multiplies
by the step ``step = r / L``. Each client's rounding moves its value by less than one level plus
float64's rounding of f (at most 2^-8 of a level, since W L <= 2^44), so per coordinate::

    |decoded_sum - Σ_i w_i clip(x_i)| <= m * step * (1 + 2^-8) + (float64 rounding of the result)

and the error has mean zero. The rounding randomness is not secret (it is not a mask); it
comes from a numpy Generator the caller derives from its :class:`fedhive.core.SeedStream`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedhive.core.weights import FloatVector
from fedhive.errors import SecAggError
from fedhive.secagg.hazmat.prg import ring_dtype
from fedhive.secagg.params import SecAggParams

RingVector = npt.NDArray[np.unsignedinteger]


def step(params: SecAggParams) -> float:
    """r / 2^q, the value of one quantization level of a single unit of weight."""
    return params.clip_range / float(1 << params.quantization_bits)


def offset(params: SecAggParams) -> int:
    """W L, the offset added to every model coordinate so it is non-negative."""
    return params.max_weight << params.quantization_bits


def encode(
    vector: npt.ArrayLike, weight: int, params: SecAggParams, rng: np.random.Generator
) -> RingVector:
    """One client's weighted, clipped update as d + 1 ring elements (last: the weight).

    Raises:
        SecAggError: the update is not a finite 1-d vector, or the weight is not an integer
            in [1, max_weight].
    """
    values = np.asarray(vector, dtype=np.float64)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise SecAggError("the update must be a finite 1-d vector", stage="quantize")
    if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)):
        raise SecAggError(f"weight must be an integer, got {weight!r}", stage="quantize")
    if not 1 <= weight <= params.max_weight:
        raise SecAggError(
            f"weight must be in [1, {params.max_weight}], got {weight}", stage="quantize"
        )
    levels = 1 << params.quantization_bits
    r = params.clip_range
    scaled = np.clip(values, -r, r) * (int(weight) * levels / r)
    floor = np.floor(scaled)
    rounded = floor + (rng.random(values.shape) < (scaled - floor))
    # |rounded| <= w L <= W L <= 2^44: exact in int64, no wrap after the offset.
    limit = int(weight) * levels
    integers = np.clip(rounded, -limit, limit).astype(np.int64) + offset(params)
    out = np.empty(values.size + 1, dtype=ring_dtype(params.ring_bits))
    out[:-1] = integers
    out[-1] = int(weight)
    return out


def decode(total: RingVector, count: int, params: SecAggParams) -> tuple[FloatVector, int]:
    """The weighted float sum and the total weight of ``count`` clients' ring sum.

    Args:
        total: the unmasked ring sum of ``count`` encoded vectors (d + 1 elements).
        count: m, how many clients the sum holds (1 <= m <= num_clients).
        params: the round's parameters.

    Returns:
        (Σ w_i clip(x_i) as float64, Σ w_i).
    """
    dtype = ring_dtype(params.ring_bits)
    if total.dtype != dtype or total.ndim != 1 or total.size < 1:
        raise SecAggError(f"a ring sum is a non-empty 1-d {dtype} vector", stage="decode")
    if not 1 <= count <= params.num_clients:
        raise SecAggError(f"count must be in [1, {params.num_clients}], got {count}")
    signed = np.dtype(np.int32) if params.ring_bits == 32 else np.dtype(np.int64)
    modulus = 1 << params.ring_bits
    shift = dtype.type((count * offset(params)) % modulus)
    centred = (total[:-1] - shift).view(signed)  # |Σ w_i L x_i / r| < 2^(bits-1): no wrap
    weight = int(total[-1])
    return centred.astype(np.float64) * step(params), weight
