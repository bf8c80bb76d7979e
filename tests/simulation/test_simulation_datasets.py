"""Bundled digits, FedProx's Synthetic(alpha, beta), and per-client files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fedhive.errors import ConfigError, MissingDependencyError, SerializationError
from fedhive.simulation.datasets import Dataset, load_client_files, load_digits, synthetic


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.num_classes == b.num_classes


# --- digits -----------------------------------------------------------------------------


def test_digits_shapes_scale_and_stratified_split() -> None:
    data = load_digits(rng=rng(0))
    assert len(data.y_train) + len(data.y_test) == 1797
    assert data.x_train.shape[1:] == data.x_test.shape[1:] == (64,)
    assert data.x_train.dtype == np.float32
    assert data.y_train.dtype == np.int64
    assert data.num_classes == 10
    assert data.x_train.min() >= 0
    assert data.x_train.max() == pytest.approx(1.0)
    for label in range(10):
        n_test = int(np.sum(data.y_test == label))
        n_all = n_test + int(np.sum(data.y_train == label))
        assert abs(n_test - 0.2 * n_all) <= 1


def test_digits_split_follows_the_rng() -> None:
    assert_same_dataset(load_digits(rng=rng(3)), load_digits(rng=rng(3)))
    other = load_digits(rng=rng(4))
    assert not np.array_equal(load_digits(rng=rng(3)).x_test, other.x_test)


def test_digits_without_sklearn_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'fedhive\[sklearn\]'"):
        load_digits(rng=rng(0))


def test_digits_rejects_bad_test_fraction() -> None:
    with pytest.raises(ConfigError, match="test_fraction: must be in"):
        load_digits(test_fraction=1.0, rng=rng(0))


# --- synthetic --------------------------------------------------------------------------


def test_synthetic_shapes_labels_and_sizes() -> None:
    devices = synthetic(0.5, 0.5, rng=rng(1))
    assert len(devices) == 30
    for device in devices:
        n = len(device.y_train) + len(device.y_test)
        assert n >= 50
        assert len(device.y_train) == int(0.9 * n)
        assert device.x_train.shape == (len(device.y_train), 60)
        assert device.x_test.shape == (len(device.y_test), 60)
        assert device.x_train.dtype == np.float32
        assert device.y_train.dtype == np.int64
        assert device.num_classes == 10
        labels = np.concatenate([device.y_train, device.y_test])
        assert labels.min() >= 0
        assert labels.max() < 10


def test_synthetic_same_seed_same_arrays() -> None:
    first = synthetic(1.0, 1.0, rng=rng(9))
    second = synthetic(1.0, 1.0, rng=rng(9))
    for a, b in zip(first, second, strict=True):
        assert_same_dataset(a, b)


def test_synthetic_feature_covariance_is_the_power_law_diagonal() -> None:
    devices = synthetic(0.0, 0.0, rng=rng(2), max_samples=2000)
    # within-device variances, pooled: the device mean v_k is subtracted per device
    centred = [np.concatenate([d.x_train, d.x_test]) for d in devices]
    centred = [x - x.mean(axis=0) for x in centred]
    variance = np.concatenate(centred).var(axis=0)
    expected = np.arange(1, 61, dtype=np.float64) ** -1.2
    np.testing.assert_allclose(variance, expected, rtol=0.15)


def test_synthetic_beta_spreads_device_feature_means() -> None:
    def spread(beta: float) -> float:
        devices = synthetic(0.0, beta, rng=rng(5), max_samples=200)
        return float(np.std([d.x_train.mean() for d in devices]))

    assert spread(10.0) > 3 * spread(0.0)


def test_synthetic_cap_and_small_shapes() -> None:
    devices = synthetic(
        0.0, 0.0, num_devices=4, num_features=5, num_classes=3, rng=rng(0), max_samples=60
    )
    assert len(devices) == 4
    for device in devices:
        assert 50 <= len(device.y_train) + len(device.y_test) <= 60
        assert device.x_train.shape[1] == 5
        assert set(np.unique(device.y_train)) <= {0, 1, 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -1.0}, "alpha: must be a finite number >= 0"),
        ({"beta": float("inf")}, "beta: must be a finite number >= 0"),
        ({"num_devices": 0}, "num_devices: must be >= 1, got 0"),
        ({"num_classes": 1}, "num_classes: must be >= 2, got 1"),
        ({"max_samples": 0}, "max_samples: must be >= 1, got 0"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    arguments: dict[str, float] = {"alpha": 0.0, "beta": 0.0, **kwargs}
    alpha, beta = arguments.pop("alpha"), arguments.pop("beta")
    with pytest.raises(ConfigError, match=message):
        synthetic(alpha, beta, rng=rng(0), **arguments)  # type: ignore[arg-type]


# --- client files -----------------------------------------------------------------------


def test_client_files_round_trip_npz_and_csv(tmp_path: Path) -> None:
    g = rng(0)
    x_a, y_a = g.random((8, 3)), np.array([0, 1, 2, 1, 0, 1, 2, 0])
    x_a_test, y_a_test = g.random((2, 3)), np.array([4, 1])
    np.savez(tmp_path / "alice.npz", x_train=x_a, y_train=y_a, x_test=x_a_test, y_test=y_a_test)
    x_b, y_b = g.random((5, 2, 2)), np.array([1, 1, 0, 1, 0], dtype=np.int32)
    np.savez_compressed(tmp_path / "bob.npz", x_train=x_b, y_train=y_b)
    table = np.array([[0.5, 1.0, 3], [2.0, -1.5, 0], [0.0, 0.25, 1]])
    np.savetxt(tmp_path / "carol.csv", table, delimiter=",", header="f1,f2,label", comments="")
    np.savetxt(tmp_path / "dave.csv", table, delimiter=",")
    (tmp_path / "notes.txt").write_text("not a client")

    clients = load_client_files(tmp_path)

    assert list(clients) == ["alice", "bob", "carol", "dave"]
    alice = clients["alice"]
    np.testing.assert_array_equal(alice.x_train, x_a.astype(np.float32))
    np.testing.assert_array_equal(alice.y_train, y_a)
    np.testing.assert_array_equal(alice.x_test, x_a_test.astype(np.float32))
    np.testing.assert_array_equal(alice.y_test, y_a_test)
    assert alice.num_classes == 5  # the largest label is in the test set
    bob = clients["bob"]
    assert bob.x_train.shape == (5, 2, 2)
    assert bob.x_test.shape == (0, 2, 2)
    assert bob.y_train.dtype == np.int64
    assert bob.num_classes == 2
    for name in ("carol", "dave"):
        data = clients[name]
        np.testing.assert_array_equal(data.x_train, table[:, :2].astype(np.float32))
        np.testing.assert_array_equal(data.y_train, [3, 0, 1])
        assert data.x_test.shape == (0, 2)
        assert data.num_classes == 4


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.npz", b"PK\x03\x04 this is not a zip archive", "broken.npz: not a readable"),
        ("text.npz", b"hello", "text.npz: not a readable"),
        ("ragged.csv", b"1,2,0\n3,1\n", "ragged.csv: not a numeric table"),
        ("words.csv", b"a,b,label\n1,x,0\n", "words.csv: not a numeric table"),
        ("float_label.csv", b"1.0,2.0,0.5\n", "float_label.csv: the last column must hold"),
        ("negative.csv", b"1.0,2.0,-1\n", "negative.csv: labels holds a negative label"),
        ("header_only.csv", b"a,b,label\n", "header_only.csv: holds no data rows"),
        ("one_column.csv", b"1\n2\n", "one_column.csv: needs feature columns"),
        ("binary.csv", b"\xff\xfe\x00garbage", "binary.csv: not a readable CSV"),
    ],
)
def test_corrupt_files_raise_serialization_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SerializationError, match=message):
        load_client_files(tmp_path)


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    objects = np.array([{"payload": 1}, None], dtype=object)
    np.savez(tmp_path / "evil.npz", x_train=objects, y_train=np.array([0, 1]))
    with pytest.raises(SerializationError, match=r"evil\.npz"):
        load_client_files(tmp_path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((2, 3))}, "missing array"),
        ({"x_train": np.zeros((2, 3)), "y_train": np.array([0.0, 1.0])}, "1-D integers"),
        ({"x_train": np.zeros((2, 3)), "y_train": np.array([0, 1, 1])}, "3 labels for 2 rows"),
        (
            {"x_train": np.zeros((2, 3)), "y_train": np.array([0, 1]), "x_test": np.zeros((1, 3))},
            "x_test and y_test must come together",
        ),
        (
            {
                "x_train": np.zeros((2, 3)),
                "y_train": np.array([0, 1]),
                "x_test": np.zeros((1, 4)),
                "y_test": np.array([0]),
            },
            "x_test rows have shape",
        ),
    ],
)
def test_malformed_npz_contents_are_named(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    np.savez(tmp_path / "client7.npz", **arrays)  # type: ignore[arg-type]  # stubs: allow_pickle
    with pytest.raises(SerializationError, match=f"client7.npz: .*{message}"):
        load_client_files(tmp_path)


def test_single_npy_in_npz_name_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    with pytest.raises(SerializationError, match=r"plain\.npz: holds a single \.npy array"):
        load_client_files(tmp_path)


def test_client_files_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory: must be an existing folder"):
        load_client_files(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"directory: holds no \.npz or \.csv"):
        load_client_files(tmp_path)
    np.savetxt(tmp_path / "same.csv", np.array([[1.0, 0]]), delimiter=",")
    np.savez(tmp_path / "same.npz", x_train=np.zeros((1, 1)), y_train=np.array([0]))
    with pytest.raises(SerializationError, match="client 'same' has two files"):
        load_client_files(tmp_path)
