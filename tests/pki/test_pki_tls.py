"""TLSConfig: a party's three PEM files, with errors that name the missing file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedhive.errors import ConfigError
from fedhive.pki import TLSConfig


def make_dir(path: Path) -> Path:
    path.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (path / name).write_bytes(name.encode())
    return path


def test_from_dir_and_read(tmp_path: Path) -> None:
    config = TLSConfig.from_dir(make_dir(tmp_path / "party"))
    assert config == TLSConfig(
        ca=tmp_path / "party/ca.pem",
        cert=tmp_path / "party/cert.pem",
        key=tmp_path / "party/key.pem",
    )
    assert config.read() == (b"ca.pem", b"cert.pem", b"key.pem")


@pytest.mark.parametrize("missing", ["ca.pem", "cert.pem", "key.pem"])
def test_a_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    folder = make_dir(tmp_path / "party")
    (folder / missing).unlink()
    with pytest.raises(ConfigError, match=re.escape(missing)):
        TLSConfig.from_dir(folder)


def test_a_file_removed_after_loading_is_named_on_read(tmp_path: Path) -> None:
    config = TLSConfig.from_dir(make_dir(tmp_path / "party"))
    config.key.unlink()
    with pytest.raises(ConfigError, match=r"key\.pem"):
        config.read()


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    config = TLSConfig.from_dir(make_dir(tmp_path / "party"))
    config.cert.unlink()
    config.cert.mkdir()  # reading a folder fails for every user, root included
    with pytest.raises(ConfigError, match=r"cert\.pem: cannot read"):
        config.read()


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere"):
        TLSConfig.from_dir(tmp_path / "nowhere")
