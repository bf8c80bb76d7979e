"""Weights: an ordered mapping from parameter name to numpy array, and its flat layout."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedhive.errors import (
    DTypeMismatchError,
    NameMismatchError,
    NonFiniteError,
    ShapeMismatchError,
)

Array = npt.NDArray[np.generic]
FloatVector = npt.NDArray[np.float64]
"""A flat float64 vector: the form every aggregation and update step works on."""

AUX_PREFIX = "@"
"""Names starting with this are auxiliary tensors a strategy sends with the model, or a
client returns with its update (SCAFFOLD's control variates), never model parameters."""

SCAFFOLD_PREFIX = AUX_PREFIX + "scaffold/"
CHUNK = 1 << 16
"""Values per piece of :meth:`Layout.chunks` (512 KiB of float64: cache-sized)."""
"""Auxiliary tensor names of SCAFFOLD's control variates, ``@scaffold/<parameter>``: the
server's ``c`` on the way down, a client's change ``Δc_i`` on the way up."""


class Weights(Mapping[str, Array]):
    """Model parameters (and buffers) by name, in a fixed order.

    The order is part of the model's identity: it is kept through serialization and
    decides the flat layout. Treat the arrays as immutable; fedhive never writes into
    arrays it was given.
    """

    __slots__ = ("_arrays",)

    def __init__(self, arrays: Mapping[str, Array] | None = None) -> None:
        self._arrays: dict[str, Array] = {}
        for name, value in (arrays or {}).items():
            if not isinstance(name, str) or not name:
                raise NameMismatchError(f"parameter names must be non-empty strings, got {name!r}")
            array = np.asarray(value)
            if array.dtype == np.object_:
                raise DTypeMismatchError(f"parameter {name!r} has dtype object")
            self._arrays[name] = array

    def __getitem__(self, name: str) -> Array:
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self._arrays.items())
        return f"Weights({inner})"

    @property
    def num_parameters(self) -> int:
        """Total number of scalar values."""
        return sum(int(a.size) for a in self._arrays.values())

    @property
    def nbytes(self) -> int:
        """Total size of the arrays' data in bytes."""
        return sum(int(a.nbytes) for a in self._arrays.values())

    def layout(self) -> Layout:
        """The names, shapes and dtypes of these weights, in order."""
        return Layout(
            names=tuple(self._arrays),
            shapes=tuple(a.shape for a in self._arrays.values()),
            dtypes=tuple(a.dtype for a in self._arrays.values()),
        )

    def split_aux(self) -> tuple[Weights, Weights]:
        """``(model, auxiliary)``: the tensors without and with the ``@`` prefix."""
        model = {k: v for k, v in self._arrays.items() if not k.startswith(AUX_PREFIX)}
        aux = {k: v for k, v in self._arrays.items() if k.startswith(AUX_PREFIX)}
        return Weights(model), Weights(aux)

    def join(self, other: Mapping[str, Array]) -> Weights:
        """These tensors followed by ``other``'s (whose names must all be new)."""
        clash = sorted(set(self._arrays).intersection(other))
        if clash:
            raise NameMismatchError(f"tensors {clash} appear twice")
        return Weights({**self._arrays, **other})

    def validate_like(self, reference: Weights | Layout) -> None:
        """Check names, shapes, dtypes against ``reference`` and that floats are finite.

        Raises:
            NameMismatchError, ShapeMismatchError, DTypeMismatchError, NonFiniteError.
        """
        layout = reference if isinstance(reference, Layout) else reference.layout()
        if tuple(self._arrays) != layout.names:
            missing = sorted(set(layout.names) - set(self._arrays))
            extra = sorted(set(self._arrays) - set(layout.names))
            raise NameMismatchError(
                f"parameter names differ from the model's: missing {missing}, unexpected "
                f"{extra}" + ("" if missing or extra else " (order differs)")
            )
        for (name, array), shape, dtype in zip(
            self._arrays.items(), layout.shapes, layout.dtypes, strict=True
        ):
            if array.shape != shape:
                raise ShapeMismatchError(
                    f"parameter {name!r} has shape {array.shape}, expected {shape}"
                )
            if array.dtype != dtype:
                raise DTypeMismatchError(
                    f"parameter {name!r} has dtype {array.dtype}, expected {dtype}"
                )
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise NonFiniteError(f"parameter {name!r} holds NaN or infinity")


@dataclass(frozen=True)
class Layout:
    """Names, shapes and dtypes of a model: what every update must match."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype[np.generic], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of values in each tensor."""
        return tuple(int(np.prod(s, dtype=np.int64)) for s in self.shapes)

    @property
    def total_size(self) -> int:
        """Number of values in all tensors together."""
        return sum(self.sizes)

    def flatten(self, weights: Weights) -> FloatVector:
        """All values of ``weights`` as one float64 vector, in layout order."""
        if not self.names:
            return np.zeros(0, dtype=np.float64)
        return np.concatenate([weights[n].ravel() for n in self.names], dtype=np.float64)

    def chunks(self, weights: Weights, size: int = CHUNK) -> Iterator[FloatVector]:
        """The values of :meth:`flatten`, as float64 pieces of at most ``size`` values
        in layout order (their concatenation is ``flatten(weights)``): a pass over a
        large model without a float64 copy of all of it."""
        for name in self.names:
            flat = weights[name].reshape(-1)
            for start in range(0, flat.size, size):
                yield flat[start : start + size].astype(np.float64)

    def unflatten(self, flat: FloatVector) -> Weights:
        """Split a flat vector back into named arrays of this layout's dtypes.

        Integer tensors are rounded to the nearest integer before the cast.
        """
        arrays: dict[str, Array] = {}
        offset = 0
        for name, shape, dtype, size in zip(
            self.names, self.shapes, self.dtypes, self.sizes, strict=True
        ):
            chunk = flat[offset : offset + size].reshape(shape)
            if dtype.kind in "iub":
                chunk = np.rint(chunk)
            arrays[name] = chunk.astype(dtype)
            offset += size
        return Weights(arrays)
