"""L2 clipping of an update: the step that bounds its sensitivity before noise is added.

``clip_l2(u, C)`` returns ``u · min(1, C / ‖u‖₂)``: the per-user update clipping of
McMahan et al., "Learning Differentially Private Recurrent Language Models" (ICLR 2018,
Algorithm 1, ``ClipFn``), as in Abadi et al., CCS 2016, Algorithm 1. It adds a guarantee
the privacy proof needs and plain scaling does not give: ``np.linalg.norm(out) <= C``
holds exactly in floating point, not only up to rounding.
"""

from __future__ import annotations

import math

import numpy as np

from fedhive.core.config import check_real
from fedhive.core.weights import FloatVector
from fedhive.errors import NonFiniteError

__all__ = ["MAX_CLIPPING_NORM", "FloatVector", "clip_l2"]


# Above about 1.3e154 the squares in np.linalg.norm overflow to inf, so a vector of norm C
# could not be checked against C; no model update is clipped anywhere near this bound.
MAX_CLIPPING_NORM = 1e150
_EPS = float(np.finfo(np.float64).eps)


def clip_l2(vector: FloatVector, clipping_norm: float) -> tuple[FloatVector, float]:
    """Scale ``vector`` into the L2 ball of radius ``clipping_norm``.

    A vector already inside the ball is returned unchanged (a bitwise copy); the input is
    never modified. Norms are computed on a power-of-two rescaled copy, so vectors with
    huge or tiny entries neither overflow nor underflow on the way.

    Args:
        vector: the update, any shape (its norm is that of the flattened array).
        clipping_norm: the radius C, in (0, 1e150].

    Returns:
        The clipped vector, with ``np.linalg.norm(out) <= clipping_norm`` exactly, and the
        L2 norm of the original (``inf`` only if that norm exceeds the float64 range).

    Raises:
        ConfigError: ``clipping_norm`` is not a finite number in (0, 1e150].
        NonFiniteError: ``vector`` holds NaN or infinity.
    """
    check_real("clipping_norm", clipping_norm, low=0, high=MAX_CLIPPING_NORM, low_open=True)
    limit = float(clipping_norm)
    values = np.asarray(vector, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise NonFiniteError("cannot clip a vector holding NaN or infinity", stage="clip")
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    if largest == 0.0:
        return values.copy(), 0.0
    # Divide by a power of two (exact) so the largest entry lies in [0.5, 1).
    exponent = int(np.frexp(largest)[1])
    unit = np.ldexp(values, -exponent)
    scaled_norm = float(np.linalg.norm(unit))
    try:
        norm = math.ldexp(scaled_norm, exponent)
    except OverflowError:  # the true norm is beyond float64; it is still > C
        norm = math.inf
    # Below C (at most 1e150) the plain sum of squares cannot overflow: check the bound
    # on exactly what np.linalg.norm computes before returning the vector unchanged.
    if norm <= limit and float(np.linalg.norm(values)) <= limit:
        return values.copy(), norm
    factor = limit / scaled_norm
    clipped: FloatVector = unit * factor
    # Rounding can leave the computed norm a few ulps above C: shrink the factor by one
    # ulp, then by geometrically larger steps, until the bound holds (at worst factor 0).
    step = 1.0
    while float(np.linalg.norm(clipped)) > limit:
        factor = max(factor * (1.0 - step * _EPS), 0.0)
        step *= 2.0
        clipped = unit * factor
    return clipped, norm
