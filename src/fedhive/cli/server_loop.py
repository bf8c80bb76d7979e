"""The deployed server's loop: rounds over the gRPC transport, or FedBuff's versions.

A synchronous strategy runs the round loop over the transport's cohorts; FedBuff runs
the asynchronous loop over :class:`~fedhive.transport.grpc.asynchronous.GrpcAsyncRunner`
(tasks on the version their client fetched, a commit every ``buffer_size`` results, the
round timeout as each task's deadline). Both checkpoint every round (version) to the
same store, so a restarted server resumes either after its last recorded round.
"""

from __future__ import annotations

from fedhive.server.asynchronous import AsyncLoop
from fedhive.server.checkpoint import Resumed, StoreCheckpoint
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.rules import check_run
from fedhive.server.run import RunObserver, RunResult
from fedhive.simulation.app import SimulationApp
from fedhive.simulation.config import SimulationConfig
from fedhive.strategy.base import Strategy
from fedhive.strategy.fedbuff import FedBuff
from fedhive.strategy.registry import dispatch_loop
from fedhive.transport.grpc.asynchronous import GrpcAsyncRunner
from fedhive.transport.grpc.server import GrpcServerTransport


def run_loop(
    config: SimulationConfig,
    app: SimulationApp,
    *,
    transport: GrpcServerTransport,
    observer: RunObserver,
    checkpoint: StoreCheckpoint,
    resumed: Resumed,
) -> RunResult:
    """Run the config's rounds after ``resumed`` (a FedBuff round is a version).

    Raises:
        ConfigError: a combination :func:`~fedhive.server.rules.check_run` refuses for a
            deployment (seeded DP noise among them), before anything is served.
    """
    federated_every = config.evaluation.federated_every
    check_run(config.strategy, secure=config.secagg, federated_every=federated_every, deployed=True)
    evaluate_fn = app.evaluate_fn if config.evaluation.centralized else None

    def run_buffered(fedbuff: FedBuff) -> RunResult:
        runner = GrpcAsyncRunner(transport)
        buffered = AsyncLoop(
            strategy=fedbuff,
            runner=runner,
            seed=config.run.seed,
            evaluate_fn=evaluate_fn,
            observer=observer,
            checkpoint=checkpoint,
            policy=config.server.policy(),
        )
        try:
            remaining = config.run.rounds - resumed.round
            return buffered.run(
                resumed.weights, remaining, resumed.state, first_round=resumed.round + 1
            )
        finally:
            runner.close()  # withdraws the tasks still in flight

    def run_rounds(strategy: Strategy) -> RunResult:
        loop = RoundLoop(
            strategy=strategy,
            transport=transport,
            seed=config.run.seed,
            evaluate_fn=evaluate_fn,
            federated_every=federated_every,
            observer=observer,
            checkpoint=checkpoint,
            secure=config.secagg,
            policy=config.server.policy(),
        )
        return loop.run(
            resumed.weights, config.run.rounds, first_round=resumed.round + 1, state=resumed.state
        )

    return dispatch_loop(config.strategy, rounds=run_rounds, buffered=run_buffered)
