"""Live progress of a run: rounds, clients done in the round, latest metrics, the round's
bytes up and down, ETA."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fedhive.server.history import RoundRecord


def describe(record: RoundRecord) -> str:
    """One line about a finished round."""
    parts = [f"round {record.round:>3}"]
    for scope, metrics in (("central", record.centralized), ("federated", record.federated)):
        parts += [f"{scope} {k} {v:.4f}" for k, v in sorted(metrics.items())]
    if record.privacy is not None:
        parts.append(f"ε {record.privacy.epsilon:.3f} (δ {record.privacy.delta:g})")
    fit = record.fit
    parts.append(f"clients {fit.succeeded}/{fit.selected} ok")
    if fit.failed:
        parts.append(f"{fit.failed} failed ({', '.join(sorted(fit.failures))})")
    parts.append(f"↑{size(fit.bytes_up)} ↓{size(fit.bytes_down)}")
    if not record.committed:
        parts.append(record.note)
    parts.append(f"{record.seconds:.2f}s")
    return " | ".join(parts)


def size(count: int) -> str:
    """A byte count in decimal units: ``999 B``, ``1.2 kB``, ``3.4 MB``, ``5.0 GB``."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if round(value, 1) < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


class ProgressDisplay:
    """A RunObserver that draws progress bars on a terminal, or one line per round."""

    def __init__(self, console: Console, rounds: int) -> None:
        self._console = console
        self._live = console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._rounds: TaskID = self._progress.add_task("rounds", total=rounds)
        self._clients: TaskID = self._progress.add_task("clients", total=None)

    def __enter__(self) -> ProgressDisplay:
        if self._live:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live:
            self._progress.stop()

    def round_started(self, round: int, num_tasks: int) -> None:
        """Reset the clients bar for the new round."""
        self._progress.reset(self._clients, total=num_tasks, description=f"round {round}")

    def client_finished(self, round: int, ok: bool) -> None:
        """Advance the clients bar."""
        self._progress.advance(self._clients)

    def round_finished(self, record: RoundRecord) -> None:
        """Advance the rounds bar and show the round's metrics."""
        self._progress.advance(self._rounds)
        acc = record.centralized.get("accuracy")
        label = f"rounds (acc {acc:.3f})" if acc is not None else "rounds"
        self._progress.update(self._rounds, description=label)
        if self._live:
            self._progress.console.log(describe(record))
        else:
            self._console.print(describe(record), highlight=False, soft_wrap=True)
