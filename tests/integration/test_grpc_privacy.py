"""DP-FedAvg over real gRPC: a device keeps its own budget in a file and refuses beyond it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fedhive.client.runner import serve
from fedhive.core.messages import PrivacyBudget
from fedhive.privacy import FileLedger
from fedhive.server.orchestrator import RoundLoop
from fedhive.simulation.app import AppSpec
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.private import DifferentialPrivacy
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id

pytest.importorskip("dp_accounting")

TESTS = Path(__file__).resolve().parents[1]
CLIENTS = ["good-0", "good-1", "good-2"]
# The device clips to 10 and adds noise of std 20 itself (central mode asks for neither):
# z = 2 per release, no amplification: 2.17 after one, 3.19 after two, 4.01 after three
DEVICE_BUDGET = PrivacyBudget(
    epsilon_max=3.5, delta=1e-5, min_noise_multiplier=2.0, clipping_norm=10.0
)


def test_a_device_budget_survives_restarts_and_its_refusal_frees_the_slot(
    tmp_path: Path,
) -> None:
    transport = GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=None,
        insecure=True,
        identify=trust_claimed_id,
        round_timeout=20.0,
    )
    app = AppSpec("fake_app:build", TESTS).build({"clients": CLIENTS}, 0)
    ledger_path = tmp_path / "ledger.json"
    stop = threading.Event()
    threads = []
    for client_id in CLIENTS:
        link = GrpcLink(f"127.0.0.1:{transport.port}", client_id=client_id, credentials=None)
        private = client_id == "good-0"
        kwargs = {
            "stop": stop,
            "budget": DEVICE_BUDGET if private else None,
            "ledger": FileLedger(ledger_path) if private else None,
        }
        thread = threading.Thread(
            target=serve, args=(link, app.client.client_fn(client_id)), kwargs=kwargs
        )
        thread.start()
        threads.append(thread)
    strategy = Algorithm(
        transforms=(DifferentialPrivacy(noise_multiplier=2.0, clipping_norm=10.0),)
    )
    try:
        assert transport.wait_for_clients(3, timeout=20)
        loop = RoundLoop(strategy=strategy, transport=transport, seed=3)
        result = loop.run(app.server.initial_weights, 4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        transport.close()
    records = result.history
    assert [sorted(r.fit.contributors) for r in records[:2]] == [CLIENTS, CLIENTS]
    assert dict(records[2].fit.failures) == {"budget:budget_exceeded": 1}
    assert records[3].fit.selected == 2  # the exhausted device is not asked again
    assert all(r.committed for r in records)
    assert records[-1].privacy.epsilon > records[0].privacy.epsilon > 0
    # The ledger outlives the client process: a new one reads two charged releases,
    # each under the run and the task the server issued.
    spent = FileLedger(ledger_path).load()
    ids = [e.task_id for e in spent.entries]
    assert len(set(ids)) == 2
    assert all(i.startswith(f"{transport.coordinator.run_id}/") for i in ids)
    assert 3.0 < spent.spent(target_delta=1e-5) < DEVICE_BUDGET.epsilon_max
