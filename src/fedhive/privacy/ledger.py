"""A device's own privacy budget ledger: what it has spent, kept across restarts.

A :class:`Ledger` is a pure value: the tasks a device took part in, each with the
:class:`~fedhive.privacy.accountant.GaussianEvent` it released. ``charge`` returns a new
ledger with one more entry, or refuses with :class:`~fedhive.errors.PrivacyBudgetError`
when the composed epsilon would exceed the device's
:class:`~fedhive.core.messages.PrivacyBudget`. Every charge is one release: charging a
task id already in the ledger charges it again, because a second release of a task
(fresh noise on the same data) is a second mechanism. Task ids (a deployed device's are
``run_id/task_id`` from the task envelope) say what was released, never whether.

:class:`FileLedger` keeps a ledger in one file, written atomically (temporary file, fsync,
``os.replace``, fsync of the folder) with mode 0600. It fails closed: a ledger file that
cannot be read or decoded refuses every private task until someone fixes it, because
starting over from an empty ledger would forget what was spent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedhive import durable
from fedhive.core.canonical import canonical_json
from fedhive.core.config import check_int
from fedhive.core.messages import PrivacyBudget
from fedhive.errors import ConfigError, PrivacyBudgetError, SerializationError
from fedhive.privacy.accountant import AccountantKind, GaussianEvent, epsilon

__all__ = ["FORMAT_VERSION", "FileLedger", "Ledger", "LedgerEntry"]

FORMAT_VERSION = "fedhive-ledger/1"
_FILE_MODE = 0o600
_ENTRY_KEYS = frozenset({"task_id", "round", "event"})


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    """One release of a device's update for a task, and the privacy event it cost."""

    task_id: str
    round: int
    event: GaussianEvent

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise ConfigError(f"task_id: must be a non-empty string, got {self.task_id!r}")
        check_int("round", self.round, minimum=0)
        if not isinstance(self.event, GaussianEvent):
            raise ConfigError(f"event: must be a GaussianEvent, got {self.event!r}")


@dataclass(frozen=True)
class Ledger:
    """The privacy events a device has released, in the order it released them."""

    entries: tuple[LedgerEntry, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.entries, tuple):
            raise ConfigError(f"entries: must be a tuple, got {type(self.entries).__name__}")
        for index, entry in enumerate(self.entries):
            if not isinstance(entry, LedgerEntry):
                raise ConfigError(f"entries[{index}]: must be a LedgerEntry, got {entry!r}")

    def spent(self, *, target_delta: float, kind: AccountantKind = AccountantKind.RDP) -> float:
        """The epsilon at ``target_delta`` of everything in the ledger composed."""
        return epsilon([e.event for e in self.entries], target_delta=target_delta, kind=kind)

    def charge(
        self,
        *,
        task_id: str,
        round: int,
        event: GaussianEvent,
        budget: PrivacyBudget,
        kind: AccountantKind = AccountantKind.RDP,
    ) -> Ledger:
        """This ledger with one more release of task ``task_id``, if the budget allows it.

        A task id already in the ledger is charged again: each call is one release.

        Raises:
            PrivacyBudgetError: the composed epsilon at ``budget.delta`` would exceed
                ``budget.epsilon_max``; the ledger is unchanged.
            ConfigError: an invalid entry or budget.
        """
        entry = LedgerEntry(task_id=task_id, round=round, event=event)
        if not isinstance(budget, PrivacyBudget):
            raise ConfigError(f"budget: must be a PrivacyBudget, got {budget!r}")
        events = [e.event for e in self.entries]
        after = epsilon([*events, event], target_delta=budget.delta, kind=kind)
        if after > budget.epsilon_max:
            before = epsilon(events, target_delta=budget.delta, kind=kind)
            raise PrivacyBudgetError(
                f"task {task_id!r} would spend epsilon {after:.4g} of the device's budget "
                f"{budget.epsilon_max:g} (delta {budget.delta:g}; spent so far "
                f"{before:.4g}): refused",
                round=round,
                stage="privacy",
            )
        return Ledger((*self.entries, entry))

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, ASCII) with a format version."""
        document = {
            "version": FORMAT_VERSION,
            "entries": [
                {"task_id": e.task_id, "round": e.round, "event": e.event.to_dict()}
                for e in self.entries
            ],
        }
        return canonical_json(document)

    @classmethod
    def from_bytes(cls, data: bytes) -> Ledger:
        """Decode :meth:`to_bytes`'s output.

        Raises:
            SerializationError: not JSON, another format version, or entries that do not
                hold a valid task id, round and event.
        """
        if not isinstance(data, (bytes, bytearray)):
            raise SerializationError(f"ledger must be bytes, got {type(data).__name__}")
        try:
            document = json.loads(data, parse_constant=_reject_constant)
        except SerializationError:
            raise
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise SerializationError(f"ledger is not valid JSON: {exc}") from None
        if not isinstance(document, Mapping) or set(document) != {"version", "entries"}:
            raise SerializationError("ledger must be an object with 'version' and 'entries'")
        if document["version"] != FORMAT_VERSION:
            raise SerializationError(
                f"ledger format {document['version']!r} is not {FORMAT_VERSION!r}"
            )
        raw_entries = document["entries"]
        if not isinstance(raw_entries, list):
            raise SerializationError("ledger 'entries' must be a list")
        return cls(tuple(_entry_from_json(index, raw) for index, raw in enumerate(raw_entries)))


def _reject_constant(name: str) -> object:
    raise SerializationError(f"ledger holds the non-finite number {name}")


def _entry_from_json(index: int, raw: object) -> LedgerEntry:
    if not isinstance(raw, Mapping) or set(raw) != _ENTRY_KEYS:
        raise SerializationError(f"ledger entries[{index}]: keys must be {sorted(_ENTRY_KEYS)}")
    task_id, round_ = raw["task_id"], raw["round"]
    if not isinstance(task_id, str) or isinstance(round_, bool) or not isinstance(round_, int):
        raise SerializationError(f"ledger entries[{index}]: task_id or round has a wrong type")
    event = GaussianEvent.from_dict(raw["event"])
    try:
        return LedgerEntry(task_id=task_id, round=round_, event=event)
    except ConfigError as exc:
        raise SerializationError(f"ledger entries[{index}].{exc.message}") from None


@dataclass(frozen=True)
class FileLedger:
    """A :class:`Ledger` persisted in the file at ``path`` (mode 0600).

    One process should own a ledger file at a time: ``load``, ``charge`` and ``save``
    are not a transaction against a concurrent writer.
    """

    path: Path

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)):
            raise ConfigError(f"path: must be a path, got {self.path!r}")
        object.__setattr__(self, "path", Path(self.path))

    def load(self) -> Ledger:
        """The ledger in the file; an empty one if the file does not exist.

        Raises:
            PrivacyBudgetError: the file exists but cannot be read or decoded; the device
                refuses private tasks until it is fixed (fail closed).
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Ledger()
        except OSError as exc:
            raise self._unreadable(exc.strerror or str(exc)) from None
        try:
            return Ledger.from_bytes(data)
        except SerializationError as exc:
            raise self._unreadable(exc.message) from None

    def save(self, ledger: Ledger) -> None:
        """Replace the file with ``ledger``, atomically and durably.

        Raises:
            PrivacyBudgetError: the file cannot be written; the charge is not recorded and
                the task it was for must not run.
        """
        if not isinstance(ledger, Ledger):
            raise ConfigError(f"ledger: must be a Ledger, got {ledger!r}")
        data = ledger.to_bytes()
        try:
            durable.write_atomic(self.path, data, mode=_FILE_MODE)
        except OSError as exc:
            raise PrivacyBudgetError(
                f"cannot write the privacy ledger at {self.path} "
                f"({exc.strerror or exc}); the charge is not recorded: refused",
                stage="privacy",
            ) from None

    def _unreadable(self, reason: str) -> PrivacyBudgetError:
        return PrivacyBudgetError(
            f"the privacy ledger at {self.path} is unreadable ({reason}); the device "
            "refuses private tasks until it is fixed",
            stage="privacy",
        )
