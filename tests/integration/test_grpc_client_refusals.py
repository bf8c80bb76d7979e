"""A client the server refuses for good stops, once, with a clear message (mTLS, 127.0.0.1)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedhive.cli.main import main
from fedhive.client.runner import serve
from fedhive.errors import PeerRejectedError
from fedhive.pki.provision import provision, revoke
from fedhive.simulation.app import AppSpec
from fedhive.transport.grpc.server import GrpcServerTransport
from grpc_mtls import mtls_link, mtls_server

TESTS = Path(__file__).resolve().parents[1]
CLIENT = "client-0000"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    provision(tmp_path / "pki", clients=[CLIENT])
    return tmp_path / "pki"


@pytest.fixture
def server(pki: Path) -> Iterator[GrpcServerTransport]:
    transport = mtls_server(pki / "server", round_timeout=60)
    try:
        yield transport
    finally:
        transport.close()


@pytest.fixture
def signals_restored() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_revoked_client_stops_serving_with_a_peer_rejected_error(
    server: GrpcServerTransport, pki: Path
) -> None:
    link = mtls_link(server, pki / "clients" / CLIENT, CLIENT)
    revoke(pki, CLIENT)
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    stop = threading.Event()
    give_up = threading.Timer(30, stop.set)  # bounds the test if the client kept retrying
    give_up.start()
    try:
        with pytest.raises(PeerRejectedError, match="UNAUTHENTICATED: certificate revoked"):
            serve(link, app.client.client_fn("good-0"), stop=stop)
    finally:
        give_up.cancel()
        link.close()
    assert not stop.is_set()


@pytest.mark.usefixtures("signals_restored")
def test_the_client_command_exits_non_zero_with_one_message_when_revoked(
    server: GrpcServerTransport,
    pki: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # --app names a module of the working folder
    (tmp_path / "app.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom fake_app import FakeClient\n"
        "from fedhive import ClientApp\n\n"
        "def client(ctx):\n    return ClientApp(client_fn=lambda cid: FakeClient('good-0'))\n"
    )
    revoke(pki, CLIENT)
    give_up = threading.Timer(30, signal.raise_signal, (signal.SIGINT,))
    give_up.start()
    try:
        code = main(
            [
                "client",
                "--server",
                f"127.0.0.1:{server.port}",
                "--certs",
                str(pki / "clients" / CLIENT),
                "--client-id",
                CLIENT,
                "--app",
                "app:client",
            ]
        )
    finally:
        give_up.cancel()
    errors = [line for line in capsys.readouterr().err.splitlines() if "fedhive: error" in line]
    assert code != 0
    assert len(errors) == 1
    assert "certificate revoked" in errors[0]
