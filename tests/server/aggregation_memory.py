"""Peak memory of aggregating many updates that arrive as safetensors bytes.

Run as a script (``python -m tests.server.aggregation_memory PARAMS UPDATES``), it
prints JSON: the model's bytes, the resident set before aggregating (the model and
one update's bytes built) and the peak during it (VmHWM, reset after the baseline).
Each update's bytes are a fresh copy, decoded (``weights_from_bytes``), accepted
(``accept_fit_reply``) and folded by ``Algorithm.aggregate_fit`` one at a time, as
the round loop hands them over; nothing keeps an update once it is folded.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fedhive.core.messages import ClientConfig, FitReply, FitTask
from fedhive.core.serde import weights_from_bytes, weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.server.verify import accept_fit_reply
from fedhive.strategy.algorithm import Algorithm

_TENSORS = 5


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(params: int, updates: int) -> dict[str, int]:
    """Aggregate ``updates`` updates of a ``params``-parameter float32 model."""
    size = params // _TENSORS
    model = Weights({f"layer{i}": np.zeros(size, np.float32) for i in range(_TENSORS)})
    rng = np.random.default_rng(0)
    template = weights_to_bytes(
        Weights({n: rng.uniform(-0.01, 0.01, size).astype(np.float32) for n in model})
    )
    layout = model.layout()
    algorithm = Algorithm()
    state = algorithm.initial_state(model)
    task = {"round": 1, "version": "v", "seed": 0, "config": ClientConfig()}

    def arriving() -> Iterator[FitReply]:
        for i in range(updates):
            client = f"c{i}"
            data = memoryview(template).tobytes()  # fresh bytes per update, as received
            reply = FitReply(
                client_id=client,
                round=1,
                version="v",
                update=weights_from_bytes(data),
                num_examples=10,
            )
            del data
            accepted = accept_fit_reply(reply, FitTask(client_id=client, **task), layout)  # type: ignore[arg-type]
            del reply
            yield accepted
            del accepted  # a transport keeps nothing once the reply is handed over

    baseline = _status("VmRSS")
    # VmHWM := VmRSS from here on; where the kernel refuses, the peak so far counts too
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    _, new, _ = algorithm.aggregate_fit(state, 1, model, arriving())
    peak = _status("VmHWM")
    assert new.layout() == layout
    return {"model_bytes": model.nbytes, "baseline": baseline, "peak": peak}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
