"""Partitioners: split a labelled dataset across simulated clients.

Every partitioner returns a :class:`Partition` that covers each sample exactly once and
draws all its randomness from the ``np.random.Generator`` passed in, so one seed stream
gives one partition.

- :func:`iid` and :func:`shards` follow McMahan et al., "Communication-Efficient Learning
  of Deep Networks from Decentralized Data", AISTATS 2017, Sec. 3 (the pathological
  non-IID split: sort by label, cut into shards, two shards per client).
- :func:`dirichlet` is the label skew introduced by Hsu, Qi and Brown, "Measuring the
  Effects of Non-Identical Data Distribution for Federated Visual Classification", 2019,
  in its per-class form (each class is split over clients with proportions
  ``p_c ~ Dir_K(alpha)``) used by Yurochkin et al., ICML 2019 and by Li, Diao, Chen and
  He, "Federated Learning on Non-IID Data Silos: An Experimental Study", ICDE 2022.
- :func:`quantity_skew` is the quantity skew of Li et al. 2022 (client sizes
  ``q ~ Dir_K(alpha)``, labels IID).

Dirichlet splits can leave clients empty. Instead of resampling until every client is
large enough (unbounded, and a source of seed-dependent loops), the last sample of the
largest client is moved to the smallest one until every client holds ``min_size``;
``Partition.moved`` reports how many samples that took.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedhive.errors import ConfigError

__all__ = ["Partition", "dirichlet", "iid", "quantity_skew", "shards"]

IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Partition:
    """Which sample indices each client holds; every sample appears exactly once.

    Attributes:
        indices: One read-only int64 array per client, sorted ascending.
        moved: Samples moved from the largest clients to give each client ``min_size``
            (0 for partitioners without a minimum size).
    """

    indices: tuple[IndexArray, ...]
    moved: int = 0

    @property
    def num_clients(self) -> int:
        """Number of clients in the partition."""
        return len(self.indices)

    @property
    def sizes(self) -> IndexArray:
        """Number of samples each client holds."""
        return np.array([len(part) for part in self.indices], dtype=np.int64)


def iid(num_samples: int, num_clients: int, rng: np.random.Generator) -> Partition:
    """Shuffle the samples and split them into ``num_clients`` near-equal parts.

    Args:
        num_samples: Size of the dataset; must be at least ``num_clients``.
        num_clients: Number of clients, >= 1.
        rng: Source of the shuffle.

    Raises:
        ConfigError: An argument is out of range.
    """
    _check_int("num_clients", num_clients, 1)
    _check_int("num_samples", num_samples, 0)
    if num_samples < num_clients:
        raise ConfigError(f"num_samples: must be >= num_clients ({num_clients}), got {num_samples}")
    order = rng.permutation(num_samples).astype(np.int64)
    return _finish(np.array_split(order, num_clients), moved=0)


def dirichlet(
    labels: npt.ArrayLike,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    *,
    min_size: int = 1,
) -> Partition:
    """Label skew: split each class over the clients with proportions ``~ Dir(alpha)``.

    Small ``alpha`` gives each client few classes; large ``alpha`` approaches IID.

    Args:
        labels: 1-D integer class label of every sample.
        num_clients: Number of clients, >= 1.
        alpha: Dirichlet concentration, > 0.
        rng: Source of the shuffles and proportions.
        min_size: Samples every client must hold at the end, >= 0.

    Raises:
        ConfigError: An argument is out of range, or there are fewer than
            ``min_size * num_clients`` samples.
    """
    y = _check_labels(labels)
    _check_int("num_clients", num_clients, 1)
    _check_alpha(alpha)
    _check_int("min_size", min_size, 0)
    _check_enough(len(y), num_clients, min_size)
    by_label = np.argsort(y, kind="stable").astype(np.int64)
    _, starts = np.unique(y[by_label], return_index=True)
    owners, members = [], []
    for class_indices in np.split(by_label, starts[1:]):
        shuffled = rng.permutation(class_indices)
        counts = _counts(_proportions(rng, num_clients, alpha), len(shuffled))
        owners.append(np.repeat(np.arange(num_clients), counts))
        members.append(shuffled)
    groups = _group(np.concatenate(owners), np.concatenate(members), num_clients)
    return _finish(*_ensure_min_size(groups, min_size))


def shards(
    labels: npt.ArrayLike,
    num_clients: int,
    rng: np.random.Generator,
    *,
    shards_per_client: int = 2,
) -> Partition:
    """Pathological non-IID: sort by label, cut into shards, deal shards to clients.

    Indices are shuffled, then stably sorted by label (so ties are in random order), cut
    into ``num_clients * shards_per_client`` near-equal shards, and each client gets
    ``shards_per_client`` shards chosen at random without replacement.

    Args:
        labels: 1-D integer class label of every sample.
        num_clients: Number of clients, >= 1.
        rng: Source of the shuffle and the shard assignment.
        shards_per_client: Shards each client receives, >= 1.

    Raises:
        ConfigError: An argument is out of range, or there are fewer samples than shards.
    """
    y = _check_labels(labels)
    _check_int("num_clients", num_clients, 1)
    _check_int("shards_per_client", shards_per_client, 1)
    num_shards = num_clients * shards_per_client
    if len(y) < num_shards:
        raise ConfigError(
            f"shards_per_client: {num_clients} clients x {shards_per_client} shards needs "
            f"at least {num_shards} samples, got {len(y)}"
        )
    shuffled = rng.permutation(len(y)).astype(np.int64)
    ordered = shuffled[np.argsort(y[shuffled], kind="stable")]
    cut = np.array_split(ordered, num_shards)
    dealt = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return _finish([np.concatenate([cut[s] for s in row]) for row in dealt], moved=0)


def quantity_skew(
    num_samples: int,
    num_clients: int,
    rng: np.random.Generator,
    *,
    alpha: float = 0.5,
    min_size: int = 1,
) -> Partition:
    """Quantity skew: IID samples, client sizes in proportions ``~ Dir(alpha)``.

    Args:
        num_samples: Size of the dataset.
        num_clients: Number of clients, >= 1.
        rng: Source of the shuffle and the proportions.
        alpha: Dirichlet concentration, > 0; small values give very unequal sizes.
        min_size: Samples every client must hold at the end, >= 0.

    Raises:
        ConfigError: An argument is out of range, or there are fewer than
            ``min_size * num_clients`` samples.
    """
    _check_int("num_samples", num_samples, 0)
    _check_int("num_clients", num_clients, 1)
    _check_alpha(alpha)
    _check_int("min_size", min_size, 0)
    _check_enough(num_samples, num_clients, min_size)
    order = rng.permutation(num_samples).astype(np.int64)
    counts = _counts(_proportions(rng, num_clients, alpha), num_samples)
    groups = np.split(order, np.cumsum(counts)[:-1])
    return _finish(*_ensure_min_size(groups, min_size))


def _proportions(
    rng: np.random.Generator, num_clients: int, alpha: float
) -> npt.NDArray[np.float64]:
    """One draw of ``Dir_K(alpha)``; refuses an alpha too small for the sampler."""
    p = rng.dirichlet(np.full(num_clients, float(alpha)))
    if not np.all(np.isfinite(p)):
        # Older numpy samplers underflow to 0/0 for very small alpha.
        raise ConfigError(f"alpha: too small for numpy's Dirichlet sampler, got {alpha!r}")
    return p


def _counts(proportions: npt.NDArray[np.float64], total: int) -> IndexArray:
    """Split ``total`` items by ``proportions``: cut points at floor(cumsum * total)."""
    cuts = np.floor(np.cumsum(proportions)[:-1] * total).astype(np.int64)
    bounds = np.concatenate([[0], np.clip(cuts, 0, total), [total]])
    return np.diff(bounds).astype(np.int64)


def _group(owners: IndexArray, members: IndexArray, num_clients: int) -> list[IndexArray]:
    """Group ``members`` by ``owners``, keeping their relative order inside each client."""
    order = np.argsort(owners, kind="stable")
    sizes = np.bincount(owners, minlength=num_clients)
    return list(np.split(members[order], np.cumsum(sizes)[:-1]))


def _ensure_min_size(groups: list[IndexArray], min_size: int) -> tuple[list[IndexArray], int]:
    """Move samples until every group holds ``min_size``; return the groups and the moves.

    Each move takes the last sample (in current order) of the largest group (ties: lowest
    index) and appends it to the smallest group (ties: lowest index). Two heaps with lazy
    deletion make this O(moves * log K). The caller guarantees enough samples in total.
    """
    sizes = [len(group) for group in groups]
    kept = sizes.copy()  # prefix of each original group still held
    received: list[list[int]] = [[] for _ in groups]
    largest = [(-size, client) for client, size in enumerate(sizes)]
    smallest = [(size, client) for client, size in enumerate(sizes) if size < min_size]
    heapq.heapify(largest)
    heapq.heapify(smallest)
    moved = 0
    while smallest:
        _, receiver = heapq.heappop(smallest)
        while -largest[0][0] != sizes[largest[0][1]]:
            heapq.heappop(largest)  # stale entry: that client's size has changed
        donor = heapq.heappop(largest)[1]
        if received[donor]:
            sample = received[donor].pop()
        else:
            kept[donor] -= 1
            sample = int(groups[donor][kept[donor]])
        received[receiver].append(sample)
        sizes[donor] -= 1
        sizes[receiver] += 1
        moved += 1
        heapq.heappush(largest, (-sizes[donor], donor))
        heapq.heappush(largest, (-sizes[receiver], receiver))
        if sizes[receiver] < min_size:
            heapq.heappush(smallest, (sizes[receiver], receiver))
    fixed = [
        np.concatenate([group[:keep], np.asarray(extra, dtype=np.int64)])
        for group, keep, extra in zip(groups, kept, received, strict=True)
    ]
    return fixed, moved


def _finish(groups: list[IndexArray], moved: int) -> Partition:
    """Sort each client's indices, make them read-only int64, and wrap them."""
    parts = []
    for group in groups:
        part = np.sort(np.asarray(group, dtype=np.int64))
        part.setflags(write=False)
        parts.append(part)
    return Partition(indices=tuple(parts), moved=moved)


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value!r}")


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.number):
        raise ConfigError(f"alpha: must be a number > 0, got {alpha!r}")
    if not math.isfinite(alpha):
        raise ConfigError(f"alpha: must be finite, got {alpha!r}")
    if alpha <= 0:
        raise ConfigError(f"alpha: must be > 0, got {alpha!r}")


def _check_enough(num_samples: int, num_clients: int, min_size: int) -> None:
    needed = min_size * num_clients
    if num_samples < needed:
        raise ConfigError(
            f"min_size: {min_size} sample(s) for each of {num_clients} clients needs at "
            f"least {needed} samples, got {num_samples}"
        )


def _check_labels(labels: npt.ArrayLike) -> IndexArray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ConfigError(f"labels: must be 1-D, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise ConfigError(f"labels: must have an integer dtype, got {y.dtype}")
    return y.astype(np.int64, copy=False)
