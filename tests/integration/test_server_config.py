"""`fedhive server` starts with any valid config, and writes config.json as strict JSON."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

from fedhive.config import parse_config
from fedhive.deployment import server_transport
from fedhive.server.settings import ServerSection
from fedhive.transport.grpc.limits import PeerLimits
from fedhive.transport.grpc.server import GrpcServerTransport

TESTS = Path(__file__).resolve().parents[1]
FEDHIVE = [sys.executable, "-m", "fedhive"]

CONFIG = """
[run]
app = "fake_app:build"
rounds = 1

[app]
clients = ["good-0"]

[privacy]            # target_epsilon left at its default (inf: never stop)
noise_multiplier = 1.0

[server]
app = "fake_app:server"
address = "127.0.0.1:0"
min_clients = 1
wait_timeout = 0     # nobody comes: the server gives up right after starting
"""


def refuse(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")


def test_a_privacy_section_with_the_default_target_epsilon_starts_the_server(
    tmp_path: Path,
) -> None:
    (tmp_path / "fake_app.py").write_text((TESTS / "fake_app.py").read_text())
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    done = subprocess.run(
        [*FEDHIVE, "server", str(config), "--state", str(state), "--insecure"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "fewer than 1 clients joined" in done.stderr, done.stderr  # it got that far
    written = json.loads((state / "config.json").read_text(), parse_constant=refuse)
    assert written["privacy"]["target_epsilon"] == "inf"
    assert (
        parse_config(written, deployed=True).privacy
        == parse_config({"run": {"app": "fake_app:build", "rounds": 1}, "privacy": {}}).privacy
    )


def test_the_server_sections_limits_reach_the_transport() -> None:
    server = {
        "address": "127.0.0.1:0",
        "header_timeout": 2.5,
        "stall_timeout": 7,
        "streams_per_client": 3,
        "concurrent_uploads": 4,
        "max_concurrent_rpcs": 64,
    }
    config = parse_config({"run": {"app": "fake_app:build", "rounds": 1}, "server": server})
    transport = server_transport(config.server, address=None, tls=None)
    try:
        assert transport.port > 0  # the section's address, any free port
        assert transport.limits == PeerLimits(
            header_timeout=2.5, stall_timeout=7, streams_per_client=3, concurrent_uploads=4
        )
        assert transport.max_concurrent_rpcs == 64
    finally:
        transport.close()


def test_the_server_sections_default_limits_are_the_transports() -> None:
    section = ServerSection()
    assert PeerLimits() == PeerLimits(
        header_timeout=section.header_timeout,
        stall_timeout=section.stall_timeout,
        streams_per_client=section.streams_per_client,
        concurrent_uploads=section.concurrent_uploads,
    )
    rpcs = inspect.signature(GrpcServerTransport).parameters["max_concurrent_rpcs"]
    assert rpcs.default == section.max_concurrent_rpcs


def test_the_server_builds_only_the_server_half_of_the_app(tmp_path: Path) -> None:
    """`fedhive server` calls ``[server] app`` alone: an app whose clients' half (or the
    whole simulation app) cannot be built on the server still serves."""
    (tmp_path / "fake_app.py").write_text(
        (TESTS / "fake_app.py").read_text()
        + "\n\ndef build(ctx):  # noqa: F811\n    raise RuntimeError('built the clients')\n"
        + "\n\ndef client(ctx):  # noqa: F811\n    raise RuntimeError('built the clients')\n"
    )
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [*FEDHIVE, "server", str(config), "--state", str(tmp_path / "state"), "--insecure"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "built the clients" not in done.stderr, done.stderr
    assert "fewer than 1 clients joined" in done.stderr, done.stderr  # it served
