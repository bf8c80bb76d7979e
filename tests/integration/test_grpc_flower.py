"""Flower NumPyClients deployed over gRPC on 127.0.0.1 train the native clients' model."""

from __future__ import annotations

import threading

from fedhive.client.flower import FlowerClient
from fedhive.client.runner import serve
from fedhive.core import ClientConfig
from fedhive.server.orchestrator import RoundLoop
from fedhive.simulation.app import AppContext
from fedhive.simulation.engine import run_simulation
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.grpc.connection import GrpcLink
from flower_logreg import CLIENT_IDS, LogRegNumPyClient, build
from grpc_loopback import loopback_server

CONFIG = ClientConfig(local_epochs=2, batch_size=8, learning_rate=0.2)


def test_deployed_flower_clients_end_on_the_simulated_native_model() -> None:
    strategy = Algorithm(
        min_available_clients=len(CLIENT_IDS), fraction_evaluate=1.0, client_config=CONFIG
    )
    native = build(AppContext(params={"flavour": "native"}, seed=3))
    stop = threading.Event()
    with loopback_server() as server:
        threads = []
        for client_id in CLIENT_IDS:
            link = GrpcLink(f"127.0.0.1:{server.port}", client_id=client_id, credentials=None)
            client = FlowerClient(LogRegNumPyClient(client_id))
            thread = threading.Thread(target=serve, args=(link, client), kwargs={"stop": stop})
            thread.start()
            threads.append(thread)
        try:
            assert server.wait_for_clients(len(CLIENT_IDS), timeout=20)
            loop = RoundLoop(strategy=strategy, transport=server, seed=3, federated_every=1)
            deployed = loop.run(native.server.initial_weights, 2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
    simulated = run_simulation(native, strategy=strategy, rounds=2, seed=3, federated_every=1)
    assert deployed.version == simulated.version
    for net, sim in zip(deployed.history, simulated.history, strict=True):
        assert net.committed
        assert (net.fit.succeeded, net.fit.failed) == (4, 0)
        assert net.federated == sim.federated
    assert deployed.history[-1].federated["accuracy"] > 0.5
