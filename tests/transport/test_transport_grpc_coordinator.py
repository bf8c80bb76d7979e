"""The coordinator without the wire: several published models, and outcomes of any cohort."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np
import pytest

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import ClientConfig, Failure, FitReply, FitTask
from fedhive.core.weights import Weights
from fedhive.errors import StateError
from fedhive.transport.grpc import coordinator
from fedhive.transport.grpc.coordinator import Coordinator, UploadRefusedError


def task(client_id: str, version: str, round: int = 0) -> FitTask:
    return FitTask(round=round, client_id=client_id, version=version, seed=0, config=ClientConfig())


def reply(client_id: str) -> FitReply:
    return FitReply(
        client_id=client_id,
        round=0,
        version="v",
        update=Weights({"w": np.ones(2)}),
        num_examples=1,
    )


def test_kept_models_stay_published_until_no_open_task_names_them() -> None:
    coord = Coordinator(run_id="r")
    far = time.time() + 60
    cohort_a, ids_a = coord.publish([task("a", "v0")], b"model-0", far, keep=True)
    _, ids_b = coord.publish([task("b", "v1", round=1)], b"model-1", far, keep=True)
    _, ids_c = coord.publish([task("c", "v1", round=1)], b"model-1", far, keep=True)
    assert coord.versions() == ["v0", "v1"]
    assert coord.model("v0") == b"model-0"

    assert not coord.drop_model("v0")  # a's task is not answered yet
    [task_a] = ids_a
    coord.claim(task_a, "a")
    assert coord.drop_model("v0")
    assert coord.model("v0") is None

    [task_b], [task_c] = ids_b, ids_c
    coord.close_cohort(coord.claim(task_b, "b")[1])
    assert not coord.drop_model("v1")  # c's task still names it
    coord.close_cohort(cohort_a)
    assert coord.versions() == ["v1"]
    with pytest.raises(UploadRefusedError):
        coord.claim(task_c, "b")  # another client's task
    assert coord.drop_model("v1") is False
    assert coord.close_cohort(coord.claim(task_c, "c")[1]) == []
    assert coord.drop_model("v1")
    assert coord.versions() == []
    assert not coord.drop_model("v1")  # gone already


def test_a_withdrawn_task_frees_its_model_and_its_late_upload_is_refused() -> None:
    coord = Coordinator(run_id="r")
    cohort, ids = coord.publish([task("a", "v0")], b"m", time.time() + 60, keep=True)
    [task_id] = ids
    [withdrawn] = coord.close_cohort(cohort)
    assert (withdrawn.envelope.task_id, withdrawn.refused) == (task_id, None)
    assert coord.pull("a") is None  # no longer waiting for its client
    assert coord.drop_model("v0")
    with pytest.raises(UploadRefusedError) as refused:
        coord.claim(task_id, "a")
    assert refused.value.status == "round_closed"


def refusal(client_id: str, kind: FailureKind) -> Failure:
    return Failure(client_id=client_id, round=0, stage=Stage.UPLOAD, kind=kind, message="no")


def test_a_withdrawn_task_reports_its_last_refused_upload() -> None:
    coord = Coordinator(run_id="r")
    cohort, ids = coord.publish([task("a", "v0"), task("b", "v0")], b"m", time.time() + 60)
    task_a, task_b = ids
    coord.refuse(task_a, refusal("a", FailureKind.VALIDATION))
    coord.refuse(task_a, refusal("a", FailureKind.SIGNATURE))
    assert coord.issued(task_a, "a").task_id == task_a  # still open: its owner may retry
    coord.refuse(task_b, refusal("b", FailureKind.SIGNATURE))
    coord.claim(task_b, "b")  # a good upload followed: the refusal goes with the task
    coord.refuse(task_b, refusal("b", FailureKind.VALIDATION))  # claimed: ignored
    [withdrawn] = coord.close_cohort(cohort)
    assert withdrawn.envelope.task_id == task_a
    assert withdrawn.refused == refusal("a", FailureKind.SIGNATURE)
    coord.refuse(task_a, refusal("a", FailureKind.SIGNATURE))  # closed: ignored, not kept
    assert coord.remembered_tasks == 2


def test_a_round_replaces_the_published_models() -> None:
    coord = Coordinator(run_id="r")
    far = time.time() + 60
    coord.publish([task("a", "v0")], b"m0", far, keep=True)
    coord.publish([task("b", "v1")], b"m1", far, keep=True)
    coord.publish([task("a", "v2"), task("b", "v2")], b"m2", far)
    assert coord.versions() == ["v2"]


def test_next_outcome_reads_any_given_cohort_and_drops_the_others() -> None:
    coord = Coordinator(run_id="r")
    far = time.time() + 60
    one, _ = coord.publish([task("a", "v0")], b"m", far, keep=True)
    two, _ = coord.publish([task("b", "v0")], b"m", far, keep=True)
    three, _ = coord.publish([task("c", "v0")], b"m", far, keep=True)
    assert coord.deliver(one, reply("a"))
    assert coord.deliver(three, reply("c"))
    assert coord.deliver(two, reply("b"))
    got = coord.next_outcome({two, three}, far)
    assert got is not None
    assert (got[0], got[1].client_id) == (three, "c")  # a's outcome was dropped
    past = time.time() - 1
    got = coord.next_outcome({two}, past)  # in hand already: returned, though late
    assert got is not None
    assert (got[0], got[1].client_id) == (two, "b")
    assert coord.next_outcome({one, two, three}, past) is None
    coord.close_cohort(one)
    assert not coord.deliver(
        one,
        Failure(client_id="a", round=0, stage=Stage.FIT, kind=FailureKind.CLIENT_ERROR, message=""),
    )


def test_next_outcome_waits_until_its_deadline() -> None:
    coord = Coordinator(run_id="r")
    cohort, _ = coord.publish([task("a", "v0")], b"m", time.time() + 60, keep=True)
    assert coord.next_outcome({cohort}, time.time() + 0.2) is None


def test_closed_cohorts_are_forgotten_but_their_tasks_stay_refused() -> None:
    coord = Coordinator(run_id="r", remember_tasks=10)
    far = time.time() + 60
    issued = []
    for i in range(1000):
        cohort, ids = coord.publish([task("a", "v0", round=i), task("b", "v0", round=i)], b"m", far)
        answered, withdrawn = ids
        coord.claim(answered, "a")
        coord.close_cohort(cohort)
        issued.append((answered, withdrawn))
    assert coord.remembered_tasks <= 12  # not 2000: memory follows the open tasks
    statuses = []
    for task_id, client_id in [(*issued[-1][:1], "a"), (issued[-1][1], "b"), (issued[0][0], "a")]:
        with pytest.raises(UploadRefusedError) as refused:
            coord.claim(task_id, client_id)
        statuses.append(refused.value.status)
    assert statuses == ["duplicate", "round_closed", "rejected"]  # forgotten: unknown


def test_published_status_is_what_status_reads_and_a_copy() -> None:
    coord = Coordinator(run_id="r")
    metrics = {"central_loss": 0.5}
    coord.publish_status(version="v1", metrics=metrics)
    metrics["central_loss"] = 9.0  # the caller's dict is not the coordinator's
    status = coord.status()
    assert (status.run_id, status.latest_version) == ("r", "v1")
    assert dict(status.latest_metrics) == {"central_loss": 0.5}


def test_a_run_is_renamed_only_before_any_task_names_it() -> None:
    coord = Coordinator(run_id="fresh")
    coord.name_run("resumed")
    assert coord.run_id == coord.status().run_id == "resumed"
    coord.publish([task("a", "v")], b"m", deadline=time.time() + 60)
    with pytest.raises(StateError, match="keeps its id"):
        coord.name_run("other")
    assert coord.pull("a") is not None
    assert coord.run_id == "resumed"


_STATUS_FIELDS = {"run_id", "latest_version", "latest_metrics"}


def _status_writes(tree: ast.AST) -> list[int]:
    """Lines that assign a coordinator's run id or status field (``x.run_id = ...``,
    ``x._latest_metrics = ...``, setattr) on anything but a bare ``self``."""
    lines = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr.lstrip("_") in _STATUS_FIELDS
                and not (isinstance(target.value, ast.Name) and target.value.id == "self")
            ):
                lines.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and str(node.args[1].value).lstrip("_") in _STATUS_FIELDS
        ):
            lines.append(node.lineno)
    return lines


def test_no_module_but_the_coordinator_writes_its_run_id_or_status() -> None:
    """The servicer threads read them under the coordinator's lock, so they change only
    through name_run and publish_status (the deployment used to assign them)."""
    src = Path(coordinator.__file__).resolve().parents[3]
    writes = {
        str(path.relative_to(src)): lines
        for path in sorted(src.rglob("*.py"))
        if path.name != "coordinator.py" and "proto" not in path.parts
        if (lines := _status_writes(ast.parse(path.read_text(), str(path))))
    }
    assert writes == {}
    assert _status_writes(ast.parse("server.coordinator.run_id = 'x'")) == [1]  # it sees one
