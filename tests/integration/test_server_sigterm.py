"""SIGTERM to a real `fedhive server` (mutual TLS, 127.0.0.1) with junk and half-open
uploads in flight: it exits 0, its state is whole, and its clients stay to reconnect."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from test_crash_resume import wait_for_rounds
from test_deployment import free_port, start_client, start_server, stop_all, write_config

from fedhive.cli.main import main
from fedhive.pki.provision import provision
from fedhive.pki.tls import TLSConfig
from fedhive.server.store import StateStore
from fedhive.transport.grpc.security import channel_credentials

CLIENT = "client-0000"
UPLOAD = "/fedhive.v1.Fedhive/UploadResult"


def send_junk(port: int, client_certs: Path, release: threading.Event) -> list[grpc.Future]:
    """Five uploads of undecodable bytes and five that never send a message, all left
    open; return the open calls (they end when ``release`` is set or the server stops)."""
    channel = grpc.secure_channel(
        f"127.0.0.1:{port}",
        channel_credentials(TLSConfig.from_dir(client_certs)),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    upload = channel.stream_unary(UPLOAD)
    rng = np.random.default_rng(0)

    def junk_then_hang(size: int):  # type: ignore[no-untyped-def]
        yield rng.bytes(size)
        release.wait(60)

    def hang():  # type: ignore[no-untyped-def]
        release.wait(60)
        yield from ()

    calls = [upload.future(junk_then_hang(int(rng.integers(1, 300))), timeout=60) for _ in range(5)]
    calls += [upload.future(hang(), timeout=60) for _ in range(5)]
    return calls


@pytest.mark.slow
def test_sigterm_with_junk_and_half_open_uploads_exits_0_with_the_state_whole(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port, rounds=200, clients=1)
    pki = tmp_path / "pki"
    provision(pki, clients=[CLIENT])
    state = tmp_path / "state"
    server = start_server(config, state, pki / "server")
    client = start_client(config, pki, port, CLIENT)
    release = threading.Event()
    calls: list[grpc.Future] = []
    try:
        wait_for_rounds(state, 2, server)
        calls = send_junk(port, pki / "clients" / CLIENT, release)
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)  # the bound: it must not hang
        assert server.returncode == 0, out
        assert client.poll() is None, "the client was told the run had finished"
    finally:
        release.set()
        for call in calls:
            call.cancel()
        stop_all([server, client])
    with StateStore(state) as store:
        (run_id,) = store.run_ids()
        last = store.latest_committed(run_id)
        assert last is not None
        assert last.round >= 2
    assert main(["audit", "verify", str(state), "--cert", str(pki / "server")]) == 0
