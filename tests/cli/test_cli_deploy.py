"""``fedhive client``'s privacy flags: the device's own budget, noise floor and norm."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhive.cli.deploy import _budget
from fedhive.cli.main import _parser, main
from fedhive.core.messages import PrivacyBudget
from fedhive.errors import ConfigError

CLIENT = ["client", "--server", "h:1", "--client-id", "c7", "--app", "m:f"]


def test_the_client_flags_give_the_device_its_own_noise_and_clipping() -> None:
    flags = ["--epsilon-max", "3", "--min-noise-multiplier", "1.5", "--clipping-norm", "0.5"]
    args = _parser().parse_args([*CLIENT, *flags])
    assert _budget(args) == PrivacyBudget(
        epsilon_max=3.0, delta=1e-5, min_noise_multiplier=1.5, clipping_norm=0.5
    )
    assert _budget(_parser().parse_args(CLIENT)) is None


def test_noise_flags_without_a_budget_are_refused() -> None:
    args = _parser().parse_args([*CLIENT, "--min-noise-multiplier", "1.5"])
    with pytest.raises(ConfigError, match="need --epsilon-max"):
        _budget(args)
    with pytest.raises(ConfigError, match="clipping_norm"):
        _budget(_parser().parse_args([*CLIENT, "--epsilon-max", "3", "--clipping-norm", "0"]))


def test_a_server_config_without_a_server_app_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[run]\napp = "app:build"\nrounds = 1\n')
    code = main(["server", str(config), "--state", str(tmp_path / "state"), "--insecure"])
    assert code == 2
    assert "server.app: required by fedhive server" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # refused before anything was served
