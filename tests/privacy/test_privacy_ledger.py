"""The device's privacy ledger: refuses over-budget tasks, survives restarts, fails closed."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedhive.core.messages import PrivacyBudget
from fedhive.errors import ConfigError, PrivacyBudgetError, SerializationError
from fedhive.privacy import FileLedger, GaussianEvent, Ledger, LedgerEntry, epsilon

pytest.importorskip("dp_accounting")

DELTA = 1e-5
BUDGET = PrivacyBudget(epsilon_max=2.0, delta=DELTA)
TASK_EVENT = GaussianEvent(noise_multiplier=1.0, sample_rate=0.01, count=100)


def _charged(tasks: int) -> Ledger:
    ledger = Ledger()
    for index in range(tasks):
        ledger = ledger.charge(task_id=f"t{index}", round=index, event=TASK_EVENT, budget=BUDGET)
    return ledger


def test_charges_until_the_budget_refuses_and_the_ledger_is_unchanged() -> None:
    ledger = Ledger()
    refused = None
    for index in range(100):
        try:
            ledger = ledger.charge(
                task_id=f"t{index}", round=index, event=TASK_EVENT, budget=BUDGET
            )
        except PrivacyBudgetError as exc:
            refused = exc
            break
    assert refused is not None
    # 1000 such rounds spend about 2.10 > 2.0, so the refusal comes before the 10th task.
    assert 5 <= len(ledger.entries) < 10
    assert ledger.spent(target_delta=DELTA) <= BUDGET.epsilon_max
    events = [e.event for e in ledger.entries] + [TASK_EVENT]
    assert epsilon(events, target_delta=DELTA) > BUDGET.epsilon_max
    message = str(refused)
    assert f"'t{len(ledger.entries)}'" in message
    assert "budget 2" in message
    assert "refused" in message
    assert refused.stage == "privacy"
    # The refusal changed nothing: the same charge is refused again.
    with pytest.raises(PrivacyBudgetError):
        ledger.charge(task_id="again", round=99, event=TASK_EVENT, budget=BUDGET)


def test_a_task_charged_again_is_a_second_release() -> None:
    # A second release of a task (fresh noise on the same data) is a second mechanism:
    # the same id, round and event are charged again, never taken as already paid.
    ledger = _charged(3)
    again = ledger.charge(task_id="t1", round=1, event=TASK_EVENT, budget=BUDGET)
    assert [e.task_id for e in again.entries] == ["t0", "t1", "t2", "t1"]
    assert again.spent(target_delta=DELTA) == pytest.approx(
        epsilon([TASK_EVENT] * 4, target_delta=DELTA)
    )
    other = GaussianEvent(noise_multiplier=2.0, sample_rate=0.01)
    assert ledger.charge(task_id="t0", round=5, event=other, budget=BUDGET).entries[-1] == (
        LedgerEntry(task_id="t0", round=5, event=other)
    )
    assert Ledger.from_bytes(again.to_bytes()) == again


def test_an_empty_ledger_has_spent_nothing() -> None:
    assert Ledger().spent(target_delta=DELTA) == 0.0


def test_the_ledger_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    assert FileLedger(path).load() == Ledger()
    ledger = _charged(3)
    FileLedger(path).save(ledger)
    restarted = FileLedger(path).load()  # a new object, as after a process restart
    assert restarted == ledger
    assert restarted.spent(target_delta=DELTA) == ledger.spent(target_delta=DELTA)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    ledger_file = FileLedger(tmp_path / "ledger.json")
    ledger_file.save(_charged(1))
    ledger_file.save(_charged(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json"]


def test_a_failed_save_keeps_the_previous_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_file = FileLedger(tmp_path / "ledger.json")
    ledger_file.save(_charged(1))

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PrivacyBudgetError, match="No space left"):
        ledger_file.save(_charged(2))
    monkeypatch.undo()
    assert ledger_file.load() == _charged(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe not json",
        b'{"entries": [], "version": "fedhive-ledger/0"}',
        b'{"entries": [{"task_id": "t", "round": 0}], "version": "fedhive-ledger/1"}',
    ],
)
def test_a_corrupt_ledger_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ledger.json"
    path.write_bytes(content)
    with pytest.raises(PrivacyBudgetError, match="unreadable") as info:
        FileLedger(path).load()
    assert str(path) in str(info.value)
    assert "refuses private tasks" in str(info.value)


def test_an_unreadable_ledger_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ledger.json").mkdir()  # a folder where the file should be
    with pytest.raises(PrivacyBudgetError, match="unreadable"):
        FileLedger(tmp_path / "ledger.json").load()


def test_bytes_are_canonical_and_versioned() -> None:
    data = _charged(2).to_bytes()
    document = json.loads(data)
    assert document["version"] == "fedhive-ledger/1"
    assert data == json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert document["entries"][0] == {
        "task_id": "t0",
        "round": 0,
        "event": {"noise_multiplier": 1.0, "sample_rate": 0.01, "count": 100},
    }


events = st.builds(
    GaussianEvent,
    noise_multiplier=st.floats(min_value=1e-6, max_value=1e6),
    sample_rate=st.floats(min_value=1e-9, max_value=1.0),
    count=st.integers(min_value=1, max_value=10**6),
)
entries = st.builds(
    LedgerEntry,
    task_id=st.text(min_size=1, max_size=20),
    round=st.integers(min_value=0, max_value=10**9),
    event=events,
)


@given(st.lists(entries, max_size=8))
def test_to_bytes_from_bytes_round_trip(items: list[LedgerEntry]) -> None:
    ledger = Ledger(tuple(items))
    assert Ledger.from_bytes(ledger.to_bytes()) == ledger


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b'{"entries": []}',
        b'{"entries": {}, "version": "fedhive-ledger/1"}',
        b'{"entries": [], "version": "fedhive-ledger/1", "extra": 1}',
        b'{"entries": [{"task_id": "", "round": 0, "event": {"noise_multiplier": 1.0, '
        b'"sample_rate": 0.1, "count": 1}}], "version": "fedhive-ledger/1"}',
        b'{"entries": [{"task_id": "t", "round": true, "event": {"noise_multiplier": 1.0, '
        b'"sample_rate": 0.1, "count": 1}}], "version": "fedhive-ledger/1"}',
        b'{"entries": [{"task_id": "t", "round": 0, "event": {"noise_multiplier": NaN, '
        b'"sample_rate": 0.1, "count": 1}}], "version": "fedhive-ledger/1"}',
        b"[" * 100_000,
    ],
)
def test_malformed_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(SerializationError):
        Ledger.from_bytes(data)


def test_invalid_entries_are_refused() -> None:
    with pytest.raises(ConfigError):
        LedgerEntry(task_id="", round=0, event=TASK_EVENT)
    with pytest.raises(ConfigError):
        LedgerEntry(task_id="t", round=-1, event=TASK_EVENT)
    with pytest.raises(ConfigError, match=r"entries\[0\]"):
        Ledger(("t",))  # type: ignore[arg-type]


def test_values_of_the_wrong_type_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="event: must be a GaussianEvent"):
        LedgerEntry(task_id="t", round=0, event=TASK_EVENT.to_dict())  # type: ignore[arg-type]
    entry = LedgerEntry(task_id="t", round=0, event=TASK_EVENT)
    with pytest.raises(ConfigError, match="entries: must be a tuple, got list"):
        Ledger([entry])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="budget: must be a PrivacyBudget"):
        Ledger().charge(task_id="t", round=0, event=TASK_EVENT, budget=2.0)  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="ledger must be bytes, got str"):
        Ledger.from_bytes(Ledger().to_bytes().decode())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="path: must be a path"):
        FileLedger(3)  # type: ignore[arg-type]
    ledger = FileLedger(tmp_path / "ledger.json")
    with pytest.raises(ConfigError, match="ledger: must be a Ledger"):
        ledger.save((entry,))  # type: ignore[arg-type]
    assert not ledger.path.exists()


def test_a_path_given_as_a_string_is_kept_as_a_path(tmp_path: Path) -> None:
    ledger = FileLedger(str(tmp_path / "ledger.json"))  # type: ignore[arg-type]
    assert ledger.path == tmp_path / "ledger.json"
    ledger.save(_charged(1))
    assert ledger.load() == _charged(1)


def test_a_ledger_file_with_a_number_too_large_for_a_float_fails_closed(tmp_path: Path) -> None:
    # Before: OverflowError escaped FileLedger.load, so the device did not refuse cleanly.
    path = tmp_path / "ledger.json"
    FileLedger(path).save(_charged(1))
    text = path.read_text()
    text = re.sub(r'"noise_multiplier":\s*[0-9.e+-]+', '"noise_multiplier":' + "9" * 400, text)
    path.write_text(text)
    with pytest.raises(PrivacyBudgetError, match="out of range"):
        FileLedger(path).load()
