"""The simulation engine: an app, a backend and the server's round loop, in one process.

The round loop is the server's own (:class:`~fedhive.server.orchestrator.RoundLoop`);
the simulation only joins it to the in-process transport and a backend that runs the
virtual clients (sequentially here, or in worker processes). FedBuff runs the server's
asynchronous loop on a virtual clock of simulated devices instead; with a ``[devices]``
section, synchronous rounds are timed too (each lasts as long as its slowest client).
With over-selection, a round closes at its quorum in simulated-time order (the device
model's task durations; equally fast devices without a ``[devices]`` section), as a
deployed round closes in arrival order: both aggregate the first results to arrive.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fedhive.config.run import RunConfig
from fedhive.config.secagg import SimulatedDropout
from fedhive.config.simulated import AttackKind, Backend, DevicesSection, StartMethod
from fedhive.errors import ConfigError
from fedhive.server.asynchronous import AsyncLoop
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.rules import check_run
from fedhive.server.run import EvaluateFn, RunObserver, RunResult
from fedhive.server.secure import SecureAggregation
from fedhive.server.verify import DEFAULT_POLICY, ReplyPolicy
from fedhive.simulation.app import AppSpec, SimulationApp
from fedhive.simulation.attacks import with_attack
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.backends.process import ProcessBackend
from fedhive.simulation.backends.ray import RayBackend
from fedhive.simulation.clock import ClockObserver, RoundTimer, VirtualClockRunner
from fedhive.simulation.devices import DeviceModel
from fedhive.simulation.secure import SecAggDevices
from fedhive.simulation.states import StateStore, open_store
from fedhive.simulation.stragglers import with_stragglers
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.base import Strategy
from fedhive.strategy.registry import dispatch_loop
from fedhive.transport.base import CohortRunner
from fedhive.transport.downlink import Downlink
from fedhive.transport.inprocess import InProcessTransport


def run_simulation(
    app: SimulationApp,
    *,
    strategy: Strategy,
    rounds: int,
    seed: int = 0,
    backend: Backend = Backend.LOCAL,
    workers: int = 2,
    federated_every: int = 0,
    observer: RunObserver | None = None,
    devices: DevicesSection | None = None,
    secure: SecureAggregation | None = None,
    dropout: SimulatedDropout | None = None,
    downlink: Downlink | None = None,
    states: StateStore | None = None,
) -> RunResult:
    """Run ``rounds`` rounds of ``app``: in this process, or in forked worker processes.

    ``states``: where the clients' persistent states live (default: in memory).

    ``secure``: secure aggregation each round (the strategy sees only the sum);
    ``dropout`` makes simulated devices vanish mid-protocol.

    ``devices``: simulated device speeds (records get a ``clock``); FedBuff runs
    asynchronously on them (default: equal speeds), counting versions as rounds.

    ``downlink``: with deltas, each round's ``bytes_down`` counts what a deployed
    server would send (see :class:`~fedhive.transport.inprocess.InProcessTransport`).

    Raises:
        ConfigError: a combination :func:`~fedhive.server.rules.check_run` refuses, or the
            ray backend (its actors build the app from a spec: use :func:`simulate`).
    """
    check_run(strategy, secure=secure, federated_every=federated_every)
    runner: CohortRunner
    if Backend(backend) == Backend.RAY:
        raise ConfigError(
            'backend: "ray" builds the app in each actor from its spec: run it from a '
            "config (simulate(), fedhive simulate)"
        )
    if Backend(backend) == Backend.PROCESS:
        runner = ProcessBackend(app=app, seed=seed, workers=workers, states=states)
    elif Backend(backend) == Backend.VECTORIZED:
        runner = _vectorized(app, states)
    else:
        runner = LocalBackend(app.client.client_fn, states)
    return _run(
        app,
        runner,
        strategy=strategy,
        rounds=rounds,
        seed=seed,
        federated_every=federated_every,
        observer=observer,
        centralized=True,
        devices=devices,
        secure=secure,
        dropout=dropout,
        downlink=downlink,
    )


def _vectorized(app: SimulationApp, states: StateStore | None) -> CohortRunner:
    """The vectorised backend (imported here: it needs PyTorch, an optional extra)."""
    from fedhive.simulation.backends.vectorized import VectorizedBackend

    return VectorizedBackend(app.client.client_fn, states)


def simulate(
    config: RunConfig,
    *,
    base_dir: Path,
    observer: RunObserver | None = None,
    out_dir: Path | None = None,
) -> RunResult:
    """Run the simulation a config describes, on the backend it names (``out_dir``: the
    run's output folder, where a SQLite state store without a path lives)."""
    check_run(
        config.strategy, secure=config.secagg, federated_every=config.evaluation.federated_every
    )
    sim = config.simulation
    attacked = config.attack.kind != AttackKind.NONE
    wrapped = attacked or config.stragglers.fraction > 0
    if wrapped and sim.backend == Backend.PROCESS and sim.start_method == StartMethod.SPAWN:
        # Spawned workers rebuild the app from its spec, without the wrappers.
        raise ConfigError(
            'attack, stragglers: need simulation.start_method = "fork" with the process backend'
        )
    if wrapped and sim.backend == Backend.RAY:  # Ray actors rebuild it from its spec too
        raise ConfigError('attack, stragglers: not with simulation.backend = "ray"')
    spec = AppSpec(config.run.app, base_dir)
    app = spec.build(config.app, config.run.seed)
    if attacked:  # forked workers inherit the wrapped app
        app = with_attack(app, config.attack, seed=config.run.seed)
    app = with_stragglers(app, config.stragglers)
    states = open_store(sim.state, sim.state_path, base_dir=base_dir, run_dir=out_dir)
    runner: CohortRunner
    if sim.backend == Backend.PROCESS:
        runner = ProcessBackend(
            app=app,
            spec=spec,
            params=config.app,
            seed=config.run.seed,
            workers=sim.workers,
            start_method=sim.start_method,
            states=states,
        )
    elif sim.backend == Backend.VECTORIZED:
        runner = _vectorized(app, states)
    elif sim.backend == Backend.RAY:
        runner = RayBackend(
            spec=spec,
            params=config.app,
            seed=config.run.seed,
            workers=sim.workers,
            address=sim.ray_address,
            states=states,
        )
    else:
        runner = LocalBackend(app.client.client_fn, states)
    return _run(
        app,
        runner,
        strategy=config.strategy,
        rounds=config.run.rounds,
        seed=config.run.seed,
        federated_every=config.evaluation.federated_every,
        observer=observer,
        centralized=config.evaluation.centralized,
        devices=config.devices,
        secure=config.secagg,
        dropout=config.secagg_dropout,
        policy=config.server.policy(),
        downlink=config.server.downlink(),
    )


def _run(
    app: SimulationApp,
    runner: CohortRunner,
    *,
    strategy: Strategy,
    rounds: int,
    seed: int,
    federated_every: int,
    observer: RunObserver | None,
    centralized: bool,
    devices: DevicesSection | None = None,
    secure: SecureAggregation | None = None,
    dropout: SimulatedDropout | None = None,
    policy: ReplyPolicy = DEFAULT_POLICY,
    downlink: Downlink | None = None,
) -> RunResult:
    model = DeviceModel(devices or DevicesSection(), seed)
    evaluate_fn = app.server.evaluate_fn if centralized else None
    return dispatch_loop(
        strategy,
        rounds=lambda synchronous: _run_rounds(
            app,
            runner,
            strategy=synchronous,
            rounds=rounds,
            seed=seed,
            evaluate_fn=evaluate_fn,
            federated_every=federated_every,
            observer=observer,
            devices=model,
            timed=devices is not None,
            secure=secure,
            dropout=dropout,
            policy=policy,
            downlink=downlink,
        ),
        buffered=lambda fedbuff: _run_async(
            app,
            runner,
            strategy=fedbuff,
            rounds=rounds,
            seed=seed,
            evaluate_fn=evaluate_fn,
            observer=observer,
            devices=model,
            policy=policy,
        ),
    )


def _run_rounds(
    app: SimulationApp,
    runner: CohortRunner,
    *,
    strategy: Strategy,
    rounds: int,
    seed: int,
    evaluate_fn: EvaluateFn | None,
    federated_every: int,
    observer: RunObserver | None,
    devices: DeviceModel,
    timed: bool,
    secure: SecureAggregation | None,
    dropout: SimulatedDropout | None,
    policy: ReplyPolicy,
    downlink: Downlink | None,
) -> RunResult:
    """A synchronous strategy: the server's round loop (``timed``: on the virtual clock
    of ``devices``, each round's arrivals in simulated time)."""
    clocked = None
    timer = RoundTimer(runner, devices) if timed else None
    inprocess = InProcessTransport(
        client_ids=app.client_ids,
        runner=timer or runner,
        arrival=devices.fit_seconds,
        downlink=downlink,
    )
    if timer is not None:
        observer = clocked = ClockObserver(observer, timer, closed_at=inprocess.closed_at)
    transport: InProcessTransport | SecAggDevices = inprocess
    if secure is not None:
        transport = SecAggDevices(inprocess, seed=seed, dropout=dropout)
    loop = RoundLoop(
        strategy=strategy,
        transport=transport,
        seed=seed,
        evaluate_fn=evaluate_fn,
        federated_every=federated_every,
        observer=observer,
        secure=secure,
        policy=policy,
    )
    try:
        result = loop.run(app.server.initial_weights, rounds)
    finally:
        transport.close()
    if clocked is None:
        return result
    return dataclasses.replace(result, history=tuple(map(clocked.stamp, result.history)))


def _run_async(
    app: SimulationApp,
    runner: CohortRunner,
    *,
    strategy: Algorithm,
    rounds: int,
    seed: int,
    evaluate_fn: EvaluateFn | None,
    observer: RunObserver | None,
    devices: DeviceModel,
    policy: ReplyPolicy = DEFAULT_POLICY,
) -> RunResult:
    """FedBuff: the server's asynchronous loop on a virtual clock of simulated devices."""
    clock = VirtualClockRunner(runner=runner, client_ids=app.client_ids, devices=devices)
    loop = AsyncLoop(
        strategy=strategy,
        runner=clock,
        seed=seed,
        evaluate_fn=evaluate_fn,
        observer=observer,
        policy=policy,
    )
    try:
        return loop.run(app.server.initial_weights, rounds)
    finally:
        clock.close()
