"""Datasets that need no download: scikit-learn's digits, FedProx's Synthetic, user files.

- :func:`load_digits` wraps the 8x8 handwritten digits bundled with scikit-learn (1797
  samples, 64 features, 10 classes) with a stratified train/test split.
- :func:`synthetic` is Synthetic(alpha, beta) of Li, Sahu, Zaheer, Sanjabi, Talwalkar
  and Smith, "Federated Optimization in Heterogeneous Networks" (FedProx), MLSys 2020,
  Sec. 5.1, built as their public ``generate_synthetic.py`` builds it.
- :func:`load_client_files` reads one ``.npz`` or ``.csv`` file per client from a
  directory, without pickle.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fedhive.errors import ConfigError, MissingDependencyError, SerializationError

__all__ = ["Dataset", "load_client_files", "load_digits", "synthetic"]

Features = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]

_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)  # ValueError: pickle


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and integer labels, split into train and test.

    Attributes:
        x_train: float32 features, one row per training sample.
        y_train: int64 labels of the training samples.
        x_test: float32 features of the test samples (possibly none).
        y_test: int64 labels of the test samples.
        num_classes: Number of classes; labels lie in ``[0, num_classes)``.
    """

    x_train: Features
    y_train: Labels
    x_test: Features
    y_test: Labels
    num_classes: int


def load_digits(*, test_fraction: float = 0.2, rng: np.random.Generator) -> Dataset:
    """scikit-learn's bundled digits, scaled to [0, 1], with a stratified split.

    Each class's indices are shuffled with ``rng`` and ``round(test_fraction * count)``
    of them go to the test set. Both sets keep the original sample order.

    Args:
        test_fraction: Fraction of each class held out for testing, in [0, 1).
        rng: Source of the per-class shuffles.

    Raises:
        ConfigError: ``test_fraction`` is out of range.
        MissingDependencyError: scikit-learn is not installed.
    """
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction: must be in [0, 1), got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as exc:
        raise MissingDependencyError(
            "load_digits needs scikit-learn: pip install 'fedhive[sklearn]'"
        ) from exc
    bunch = sklearn_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    is_test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        is_test[members[: round(test_fraction * len(members))]] = True
    return Dataset(x[~is_test], y[~is_test], x[is_test], y[is_test], int(y.max()) + 1)


def synthetic(
    alpha: float,
    beta: float,
    *,
    num_devices: int = 30,
    num_features: int = 60,
    num_classes: int = 10,
    rng: np.random.Generator,
    max_samples: int | None = None,
) -> list[Dataset]:
    """FedProx's Synthetic(alpha, beta): one softmax-regression task per device.

    Per device k: ``n_k = int(lognormal(4, 2)) + 50`` samples; ``u_k ~ N(0, alpha^2)``
    and ``W_k, b_k ~ N(u_k, 1)`` (model heterogeneity); ``B_k ~ N(0, beta^2)`` and
    ``v_k ~ N(B_k, 1)`` (feature heterogeneity); ``x ~ N(v_k, Sigma)`` with
    ``Sigma_jj = j^-1.2`` for j = 1..d; ``y = argmax(softmax(x W_k + b_k))``. After a
    shuffle the first ``int(0.9 n_k)`` samples are train, the rest test.

    ``lognormal(4, 2)`` has a standard deviation of 2 in log space, so a device
    occasionally draws tens of thousands of samples (mean about 400, 99th percentile
    about 5800). The formula is kept exact; pass ``max_samples`` to cap ``n_k``.

    Args:
        alpha: Standard deviation of ``u_k`` (how much device models differ), >= 0.
        beta: Standard deviation of ``B_k`` (how much device features differ), >= 0.
        num_devices: Number of devices, >= 1.
        num_features: Feature dimension d, >= 1.
        num_classes: Number of classes, >= 2.
        rng: Source of every draw.
        max_samples: Optional cap on each device's sample count, >= 1.

    Raises:
        ConfigError: An argument is out of range.
    """
    _check_std(alpha=alpha, beta=beta)
    cap = 1 if max_samples is None else max_samples
    _check_minimum(
        num_devices=(num_devices, 1),
        num_features=(num_features, 1),
        num_classes=(num_classes, 2),
        max_samples=(cap, 1),
    )
    sizes = rng.lognormal(4, 2, num_devices).astype(np.int64) + 50
    if max_samples is not None:
        sizes = np.minimum(sizes, max_samples)
    model_means = rng.normal(0, alpha, num_devices)
    feature_shifts = rng.normal(0, beta, num_devices)
    feature_means = [rng.normal(shift, 1, num_features) for shift in feature_shifts]
    feature_std = np.arange(1, num_features + 1, dtype=np.float64) ** -0.6
    devices = []
    for size, u, v in zip(sizes, model_means, feature_means, strict=True):
        w = rng.normal(u, 1, (num_features, num_classes))
        b = rng.normal(u, 1, num_classes)
        x = v + rng.standard_normal((int(size), num_features)) * feature_std
        # softmax is monotone, so argmax of the logits is argmax of softmax, without the
        # overflow the reference generator's unshifted exp() hits for large logits.
        y = np.argmax(x @ w + b, axis=1).astype(np.int64)
        train, test = np.split(rng.permutation(int(size)), [int(0.9 * int(size))])
        x32 = x.astype(np.float32)
        devices.append(Dataset(x32[train], y[train], x32[test], y[test], num_classes))
    return devices


def load_client_files(directory: str | os.PathLike[str]) -> dict[str, Dataset]:
    """Read one dataset per client from ``<client_id>.npz`` or ``<client_id>.csv`` files.

    An ``.npz`` (read with ``allow_pickle=False``) holds ``x_train``, ``y_train`` and
    optionally ``x_test``, ``y_test``. A ``.csv`` is numeric with an optional header
    row, the integer label in its last column, and only training rows. Other files are
    ignored. ``num_classes`` is the client's largest label plus one.

    Args:
        directory: Folder holding the client files.

    Returns:
        The datasets keyed by client id (the file stem), in sorted order.

    Raises:
        ConfigError: ``directory`` is not a folder or holds no client files.
        SerializationError: A file cannot be read or its contents are malformed; the
            message names the file.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"directory: must be an existing folder, got {str(folder)!r}")
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".npz", ".csv") and p.is_file())
    if not paths:
        raise ConfigError(f"directory: holds no .npz or .csv client files: {str(folder)!r}")
    datasets: dict[str, Dataset] = {}
    for path in paths:
        if path.stem in datasets:
            raise SerializationError(f"{path.name}: client {path.stem!r} has two files")
        reader = _read_npz if path.suffix == ".npz" else _read_csv
        datasets[path.stem] = reader(path)
    return dict(sorted(datasets.items()))


def _read_npz(path: Path) -> Dataset:
    """One client's dataset from an ``.npz`` archive, never unpickling."""
    arrays = _npz_arrays(path)
    if missing := sorted({"x_train", "y_train"} - arrays.keys()):
        raise SerializationError(f"{path.name}: missing array(s) {', '.join(missing)}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise SerializationError(f"{path.name}: x_test and y_test must come together")
    x_train = _features(path, "x_train", arrays["x_train"])
    y_train = _labels(path, "y_train", arrays["y_train"], len(x_train))
    if "x_test" in arrays:
        x_test = _features(path, "x_test", arrays["x_test"])
        y_test = _labels(path, "y_test", arrays["y_test"], len(x_test))
        if x_test.shape[1:] != x_train.shape[1:]:
            raise SerializationError(
                f"{path.name}: x_test rows have shape {x_test.shape[1:]}, "
                f"x_train rows {x_train.shape[1:]}"
            )
    else:
        x_test, y_test = _empty_like(x_train)
    return _dataset(path, x_train, y_train, x_test, y_test)


def _read_csv(path: Path) -> Dataset:
    """One client's dataset from a numeric CSV whose last column is the label."""
    table = _csv_table(path)
    if table.ndim != 2 or table.shape[1] < 2:
        raise SerializationError(f"{path.name}: needs feature columns and a label column")
    x_train = _features(path, "features", table[:, :-1])
    label_column = table[:, -1]
    if not np.all(np.isfinite(label_column) & (label_column == np.round(label_column))):
        raise SerializationError(f"{path.name}: the last column must hold integer labels")
    y_train = _labels(path, "labels", label_column.astype(np.int64), len(x_train))
    return _dataset(path, x_train, y_train, *_empty_like(x_train))


def _npz_arrays(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Every array of an ``.npz`` archive, loaded with ``allow_pickle=False``."""
    try:
        # Our own handle: np.load leaks the one it opens when the zip is corrupt.
        with path.open("rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded as archive:
                    return {key: archive[key] for key in archive.files}
    except _NPZ_ERRORS as exc:
        raise SerializationError(f"{path.name}: not a readable .npz archive ({exc})") from exc
    raise SerializationError(f"{path.name}: holds a single .npy array, not an .npz archive")


def _csv_table(path: Path) -> npt.NDArray[np.float64]:
    """The numeric rows of a CSV as a float64 table, skipping a header row if present."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, ValueError, csv.Error) as exc:  # ValueError: bad UTF-8
        raise SerializationError(f"{path.name}: not a readable CSV ({exc})") from exc
    if rows and not _is_numeric(rows[0]):
        rows = rows[1:]  # header row
    if not rows:
        raise SerializationError(f"{path.name}: holds no data rows")
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as exc:  # a non-numeric cell, or rows of different lengths
        raise SerializationError(f"{path.name}: not a numeric table ({exc})") from exc


def _is_numeric(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def _features(path: Path, name: str, array: npt.NDArray[np.generic]) -> Features:
    if array.ndim < 1 or array.dtype.kind not in "biuf":
        raise SerializationError(
            f"{path.name}: {name} must be numeric, one row per sample, got {array.dtype}"
        )
    return array.astype(np.float32)


def _labels(path: Path, name: str, array: npt.NDArray[np.generic], rows: int) -> Labels:
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise SerializationError(
            f"{path.name}: {name} must be 1-D integers, got {array.dtype} {array.shape}"
        )
    if len(array) != rows:
        raise SerializationError(f"{path.name}: {name} has {len(array)} labels for {rows} rows")
    if len(array) and array.min() < 0:
        raise SerializationError(f"{path.name}: {name} holds a negative label")
    return array.astype(np.int64)


def _empty_like(x_train: Features) -> tuple[Features, Labels]:
    return np.empty((0, *x_train.shape[1:]), dtype=np.float32), np.empty(0, dtype=np.int64)


def _dataset(path: Path, x: Features, y: Labels, x_test: Features, y_test: Labels) -> Dataset:
    if len(y) == 0:
        raise SerializationError(f"{path.name}: holds no training samples")
    return Dataset(x, y, x_test, y_test, int(max(y.max(), y_test.max(initial=0))) + 1)


def _check_std(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name}: must be a finite number >= 0, got {value!r}")


def _check_minimum(**values: tuple[int, int]) -> None:
    for name, (value, minimum) in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{name}: must be >= {minimum}, got {value!r}")
