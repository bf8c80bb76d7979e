"""The public API is pinned: adding or removing a name is a deliberate change here."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "fedhive": [
        "Algorithm",
        "AppContext",
        "Client",
        "ClientApp",
        "ClientConfig",
        "Context",
        "EvaluateResult",
        "FedhiveError",
        "FitResult",
        "PrivacyBudget",
        "RunResult",
        "ServerApp",
        "SimulationApp",
        "Weights",
        "__version__",
        "run_simulation",
    ],
    "fedhive.core": [
        "ClientConfig",
        "ClipAndNoise",
        "DpSgd",
        "EvaluateReply",
        "EvaluateResult",
        "EvaluateTask",
        "Extension",
        "Failure",
        "FailureKind",
        "FitReply",
        "FitResult",
        "FitTask",
        "Layout",
        "ModelVersion",
        "PartialWork",
        "PrivacyBudget",
        "Proximal",
        "SecAggWeighting",
        "SeedStream",
        "Stage",
        "Weighting",
        "Weights",
        "model_version",
        "record_from_bytes",
        "record_to_bytes",
        "run_stream",
        "weights_from_bytes",
        "weights_to_bytes",
    ],
    "fedhive.compression": [
        "Encoded",
        "Pipeline",
        "RandomK",
        "StochasticQuantization",
        "TopK",
        "Zstd",
        "decode",
        "encode",
        "residual_layout",
    ],
    "fedhive.core.extensions": [
        "TABLES",
        "ClipAndNoise",
        "Compression",
        "DpSgd",
        "Extension",
        "PartialWork",
        "Proximal",
        "SecAggWeighting",
        "Weighting",
    ],
    "fedhive.client": [
        "Client",
        "ClientApp",
        "ClientFn",
        "Context",
        "TaskOrigin",
        "run_evaluate",
        "run_fit",
    ],
    "fedhive.deployment": [
        "ClientApp",
        "DeployedServer",
        "Deployment",
        "Served",
        "ServerApp",
        "ServerSection",
        "serve_client",
        "serve_server",
        "server_transport",
    ],
    "fedhive.strategy": [
        "Aggregate",
        "Aggregator",
        "AggregatorName",
        "Algorithm",
        "BufferState",
        "Buffered",
        "ClientSampler",
        "ComponentState",
        "Control",
        "ControlVariates",
        "DifferentialPrivacy",
        "DpMode",
        "ExactWeightedSum",
        "Fold",
        "Instruction",
        "Moments",
        "PrivacyReport",
        "PrivacySection",
        "PrivacyState",
        "Rounds",
        "ServerAdagrad",
        "ServerAdam",
        "ServerOptimizer",
        "ServerSGD",
        "ServerYogi",
        "Stateless",
        "Strategy",
        "StrategyName",
        "StrategyState",
        "UniformSampler",
        "UpdateTransform",
        "WeightedMean",
        "WeightedMetrics",
        "build_strategy",
        "dispatch_loop",
        "fedadagrad",
        "fedadam",
        "fedavg",
        "fedbuff",
        "fedprox",
        "fedyogi",
        "scaffold",
        "state_from_bytes",
        "state_to_bytes",
    ],
    "fedhive.strategy.robust": ["Bulyan", "CoordinateMedian", "Krum", "NormBound", "TrimmedMean"],
    "fedhive.transport": [
        "CohortRunner",
        "EvaluateOutcome",
        "FitOutcome",
        "InProcessTransport",
        "Transport",
        "UploadStatus",
    ],
    "fedhive.server": [
        "CohortStats",
        "EvaluateFn",
        "Observers",
        "ReplyPolicy",
        "RoundLoop",
        "RoundRecord",
        "RunObserver",
        "RunResult",
        "ServerApp",
        "ServerSection",
        "check_run",
    ],
    "fedhive.pki": [
        "CertificateAuthority",
        "ClientRecord",
        "Issued",
        "PkiLayout",
        "Provisioned",
        "RevocationList",
        "TLSConfig",
        "add_client",
        "client_id_of",
        "load_certificate",
        "provision",
        "read_registry",
        "revoke",
        "san_client_ids",
    ],
    "fedhive.privacy": [
        "AccountantKind",
        "AdaptiveClipping",
        "FileLedger",
        "GaussianEvent",
        "Ledger",
        "LedgerEntry",
        "NoiseSource",
        "SecureNoise",
        "SeededNoise",
        "clip_l2",
        "epsilon",
        "gaussian_noise",
        "update_noise_multiplier",
        "would_exceed",
    ],
    "fedhive.config": ["Document", "RunConfig", "load_config", "parse_config"],
    "fedhive.simulation": [
        "AppContext",
        "AppSpec",
        "MemoryStateStore",
        "SimulationApp",
        "SqliteStateStore",
        "StateStore",
        "VirtualClientIds",
        "run_simulation",
        "simulate",
    ],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_all_is_pinned_and_importable(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(PUBLIC[module_name])
    for name in module.__all__:
        assert hasattr(module, name), name


def test_errors_all_derive_from_the_root() -> None:
    errors = importlib.import_module("fedhive.errors")
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.FedhiveError)


def test_importing_fedhive_does_not_import_torch_or_sklearn() -> None:
    import subprocess
    import sys

    code = (
        "import fedhive, fedhive.simulation, sys;"
        "print('torch' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
