"""Client ids that are never materialised: a million virtual clients cost O(1) memory.

:class:`VirtualClientIds` is a :class:`~collections.abc.Sequence` of zero-padded ids
(``client-0000000`` ... ``client-0999999``): ``len``, indexing, ``in`` and ``index`` are
O(1), and an id string is made only when one is read. It is sorted by construction
(equal-width numbers), so the sampler can skip its ``sorted()`` and pick ``k`` of ``N``
in O(k) (numpy's ``Generator.choice(N, k, replace=False)`` uses Floyd's algorithm for
``k <= N / 50``).

:func:`excluding` removes a few ids (clients out of privacy budget, clients already
selected) without walking the rest: on a sorted lazy sequence it returns an
:class:`Excluding` view, O(removed) to build and O(log removed) per read; on a plain
sequence it is today's list comprehension (same order, same clients).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterator, Sequence
from typing import overload


class SortedIds(Sequence[str]):
    """A lazy sequence of distinct ids in increasing order (``sorted()`` of it is itself)."""

    def position(self, client_id: str) -> int | None:
        """The index of ``client_id``, or None if absent (O(1) or O(log n), no scan)."""
        raise NotImplementedError

    def id_at(self, index: int) -> str:
        """The id at ``0 <= index < len(self)``."""
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        """One id (negative indices count from the end), or a slice as a list."""
        if isinstance(index, slice):
            return [self.id_at(i) for i in range(*index.indices(len(self)))]
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"client index {index} out of range for {size} clients")
        return self.id_at(index)

    def __contains__(self, client_id: object) -> bool:
        return isinstance(client_id, str) and self.position(client_id) is not None

    def __iter__(self) -> Iterator[str]:
        return (self.id_at(i) for i in range(len(self)))

    def index(self, value: object, start: int = 0, stop: int | None = None) -> int:
        """The index of ``value`` (O(1)); ValueError if absent."""
        found = self.position(value) if isinstance(value, str) else None
        end = len(self) if stop is None else stop
        if found is None or not start <= found < end:
            raise ValueError(f"{value!r} is not a client id here")
        return found


class VirtualClientIds(SortedIds):
    """``count`` ids ``f"{prefix}{i:0{width}d}"``; ``width`` defaults to the digits of
    ``count - 1`` (at least 1), so the ids sort like their numbers."""

    __slots__ = ("_count", "_prefix", "_width")

    def __init__(self, count: int, *, prefix: str = "client-", width: int | None = None) -> None:
        if count < 0:
            raise ValueError(f"count: must be >= 0, got {count}")
        needed = len(str(max(count - 1, 0)))
        if width is not None and width < needed:
            raise ValueError(f"width: {count} clients need at least {needed} digits")
        self._count, self._prefix = count, prefix
        self._width = needed if width is None else width

    def __len__(self) -> int:
        return self._count

    def id_at(self, index: int) -> str:
        """``prefix`` and ``index`` zero-padded to ``width``."""
        return f"{self._prefix}{index:0{self._width}d}"

    def position(self, client_id: str) -> int | None:
        """The number an id of this shape carries, if it is in range."""
        digits = client_id[len(self._prefix) :]
        if (
            not client_id.startswith(self._prefix)
            or len(digits) != self._width
            or not digits.isdigit()
            or not digits.isascii()
        ):
            return None
        number = int(digits)
        return number if number < self._count else None

    def __repr__(self) -> str:
        return f"VirtualClientIds({self._count}, prefix={self._prefix!r}, width={self._width})"


class Excluding(SortedIds):
    """``base`` without the ids at ``removed`` (sorted, distinct positions in ``base``)."""

    __slots__ = ("_base", "_removed")

    def __init__(self, base: SortedIds, removed: Sequence[int]) -> None:
        self._base, self._removed = base, list(removed)

    def __len__(self) -> int:
        return len(self._base) - len(self._removed)

    def id_at(self, index: int) -> str:
        """The ``index``-th id of ``base`` that is not removed (binary search on the
        removed positions: the smallest p with p - removed_before(p) == index)."""
        lo, hi = index, index + len(self._removed)
        while lo < hi:
            mid = (lo + hi) // 2
            if mid - bisect.bisect_right(self._removed, mid) < index:
                lo = mid + 1
            else:
                hi = mid
        return self._base.id_at(lo)

    def position(self, client_id: str) -> int | None:
        """The index among the kept ids, or None if absent or removed."""
        found = self._base.position(client_id)
        if found is None:
            return None
        before = bisect.bisect_left(self._removed, found)
        if before < len(self._removed) and self._removed[before] == found:
            return None
        return found - before


def excluding(ids: Sequence[str], removed: Collection[str]) -> Sequence[str]:
    """``ids`` without ``removed``, order kept: a lazy view (O(len(removed))) of a
    :class:`SortedIds`, else the list of the others (O(len(ids)))."""
    if not removed:
        return ids
    if isinstance(ids, SortedIds):
        positions = {p for p in map(ids.position, removed) if p is not None}
        return Excluding(ids, sorted(positions))
    return [c for c in ids if c not in removed]


def sorted_ids(ids: Sequence[str]) -> Sequence[str]:
    """``sorted(ids)``, without a copy when ``ids`` is sorted by construction."""
    return ids if isinstance(ids, SortedIds) else sorted(ids)
