"""SCAFFOLD over real gRPC: control variates travel with the model and the update, the
clients keep theirs between rounds, and the run matches the simulation bit for bit."""

from __future__ import annotations

import threading

from fedhive.client.runner import serve
from fedhive.core.messages import ClientConfig
from fedhive.server.orchestrator import RoundLoop
from fedhive.simulation.engine import run_simulation
from fedhive.strategy import Control, scaffold
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id
from lstsq_app import build

STRATEGY = scaffold(
    min_available_clients=4, client_config=ClientConfig(local_epochs=3, learning_rate=0.05)
)


def test_scaffold_rounds_over_grpc_match_the_simulation() -> None:
    app = build(4, shared=False)
    transport = GrpcServerTransport(
        address="127.0.0.1:0", credentials=None, insecure=True, identify=trust_claimed_id
    )
    stop = threading.Event()
    threads = []
    for cid in app.client_ids:
        link = GrpcLink(f"127.0.0.1:{transport.port}", client_id=cid, credentials=None)
        thread = threading.Thread(
            target=serve, args=(link, app.client.client_fn(cid)), kwargs={"stop": stop}
        )
        thread.start()
        threads.append(thread)
    try:
        assert transport.wait_for_clients(4, timeout=20)
        networked = RoundLoop(strategy=STRATEGY, transport=transport, seed=2).run(
            app.server.initial_weights, 4
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        transport.close()
    simulated = run_simulation(build(4, shared=False), strategy=STRATEGY, rounds=4, seed=2)
    assert all(r.committed and r.fit.failed == 0 for r in networked.history)
    assert networked.version == simulated.version
    assert networked.state.of(Control).c.any()  # the server variate moved
    assert (networked.state.of(Control).c == simulated.state.of(Control).c).all()
