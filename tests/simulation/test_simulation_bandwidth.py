"""A simulated run's bandwidth: per-client bytes up and down in metrics.jsonl and the
summary, equal to the payloads the clients were given and sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedhive.config import parse_config
from fedhive.core._compat import tomllib
from fedhive.core.serde import weights_to_bytes
from fedhive.server.history import RoundRecord
from fedhive.simulation.engine import simulate
from fedhive.simulation.output import RunWriter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp"


class Recorder(RunWriter):
    """A RunWriter that also keeps the records (to compare with what it wrote)."""

    def __init__(self, out_dir: Path, resolved: dict[str, Any]) -> None:
        super().__init__(out_dir, resolved)
        self.records: list[RoundRecord] = []

    def round_finished(self, record: RoundRecord) -> None:
        self.records.append(record)
        super().round_finished(record)


@pytest.mark.parametrize("config", ["config.toml", "config-compressed.toml"])
def test_three_clients_traffic_is_the_payloads_they_were_given_and_sent(
    config: str, tmp_path: Path
) -> None:
    data = tomllib.loads((EXAMPLE / config).read_text())
    data["run"]["rounds"] = 2
    data["app"].update(num_clients=3, local_test_fraction=0.0)
    data["client"]["local_epochs"] = 1
    data["evaluation"]["federated_every"] = 0
    data["strategy"]["min_fit_clients"] = 3
    parsed = parse_config(data)
    writer = Recorder(tmp_path, parsed.to_json())
    result = simulate(parsed, base_dir=EXAMPLE, observer=writer)
    writer.finish(result, seed=0, wall_seconds=1.0)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    model_size = len(weights_to_bytes(result.weights))  # the model's layout never changes
    plain_update = model_size  # a plain update is a safetensors of the model's layout
    ups, downs = [], []
    for line in lines:
        fit = line["fit"]
        assert sorted(fit["traffic"]) == ["client-0000", "client-0001", "client-0002"]
        for figures in fit["traffic"].values():
            downs.append(figures["bytes_down"])
            ups.append(figures["bytes_up"])
        assert fit["bytes_down"] == sum(t["bytes_down"] for t in fit["traffic"].values())
        assert fit["bytes_up"] == sum(t["bytes_up"] for t in fit["traffic"].values())
    assert downs[:3] == [model_size] * 3  # round 1: every client gets the whole model
    if config == "config.toml":
        assert ups == [plain_update] * 6
        assert downs[3:] == [model_size] * 3
    else:  # 8-bit codes and a few scales, then zstd: about a quarter
        assert all(up < plain_update / 3.5 for up in ups), (ups, plain_update)
        # [server] delta_downlink: round 2 sends the delta against round 1's model
        assert all(0 < down < 0.9 * model_size for down in downs[3:]), (downs, model_size)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bytes_down"] == sum(downs)
    assert summary["bytes_up"] == sum(ups)
    assert summary["client_round_bytes"] == {
        "up": {"mean": round(sum(ups) / 6, 1), "max": max(ups)},
        "down": {"mean": round(sum(downs) / 6, 1), "max": max(downs)},
    }
