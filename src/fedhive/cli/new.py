"""``fedhive new NAME --framework torch|sklearn|numpy``: a runnable project to start from.

The project holds ``app.py`` (the server and client halves), ``config.toml`` (small
enough to simulate in seconds, with a ``[server]`` section for a deployment),
``README.md`` (how to run and deploy it) and ``tests/test_app.py`` (a 2-round
simulation). The templates ship as package data under ``fedhive/cli/templates``: one
``app.py`` per framework, the rest shared. Data comes from scikit-learn's bundled digits
(torch, sklearn) or from the project's own generator (numpy): nothing is downloaded.
Nothing is ever overwritten: the target must not exist or be an empty folder.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from fedhive.errors import ConfigError


@dataclass(frozen=True)
class Framework:
    """What differs between the templates besides ``app.py``."""

    requirement: str  # what to pip install
    local_epochs: int
    learning_rate: float
    description: str


FRAMEWORKS = {
    "torch": Framework(
        "fedhive[torch]",
        5,
        0.1,
        "a PyTorch MLP (`fedhive.client.torch.TorchClient`) on scikit-learn's bundled "
        "8x8 digits, split over 10 clients.",
    ),
    "sklearn": Framework(
        "fedhive[sklearn]",
        1,
        0.05,
        "scikit-learn's `SGDClassifier` (`fedhive.client.sklearn.SklearnClient`) on its "
        "bundled 8x8 digits, split over 10 clients.",
    ),
    "numpy": Framework(
        "fedhive",
        5,
        0.1,
        "softmax regression in plain NumPy (`fedhive.client.numpy.NumpyClient`) on "
        "Gaussian blobs each of the 10 clients generates itself.",
    ),
}

# (template, where it goes in the project)
_FILES = (
    ("{framework}/app.py.tmpl", "app.py"),
    ("common/config.toml.tmpl", "config.toml"),
    ("common/README.md.tmpl", "README.md"),
    ("common/tests/test_app.py.tmpl", "tests/test_app.py"),
    ("common/gitignore.tmpl", ".gitignore"),
)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def add_parser(commands: Any) -> None:
    """Register the ``new`` subcommand."""
    new = commands.add_parser("new", help="start a project: app, config, README and a test")
    new.add_argument("name", help="the project's folder name (a letter, then letters, digits, _ -)")
    new.add_argument("--framework", choices=sorted(FRAMEWORKS), default="torch")
    new.add_argument("--dir", type=Path, default=Path(), help="where to create it (default: .)")
    new.set_defaults(handler=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Write the project and say how to run it."""
    project = scaffold(args.name, args.framework, args.dir)
    console.print(f"created {project}/ ({args.framework}); next:", highlight=False)
    console.print(f"  cd {project} && fedhive simulate config.toml", highlight=False)
    return 0


def scaffold(name: str, framework: str, parent: Path) -> Path:
    """Write the project ``parent/name`` from the ``framework`` template; return its path.

    Raises:
        ConfigError: a bad name or framework, a missing ``parent``, or a ``parent/name``
            that exists and is not an empty folder (nothing is written then).
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"name: {name!r} is not a project name: a letter, then up to 63 letters, "
            "digits, '_' or '-'"
        )
    if framework not in FRAMEWORKS:
        raise ConfigError(f"framework: {framework!r}, expected one of {sorted(FRAMEWORKS)}")
    if not parent.is_dir():
        raise ConfigError(f"--dir: {str(parent)!r} is not an existing folder")
    project = parent / name
    if project.exists() and not (project.is_dir() and not any(project.iterdir())):
        raise ConfigError(f"{str(project)!r} already exists and is not an empty folder")
    texts = {
        dest: _render(source.format(framework=framework), name, framework)
        for source, dest in _FILES
    }
    try:
        for dest, text in texts.items():
            path = project / dest
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite
                handle.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write the project to {str(project)!r}: {exc}") from exc
    return project


def _render(template: str, name: str, framework: str) -> str:
    """A template's text with the project's name and the framework's settings filled in."""
    spec = FRAMEWORKS[framework]
    text = resources.files("fedhive.cli").joinpath("templates", template).read_text("utf-8")
    values = {
        "__NAME__": name,
        "__FRAMEWORK__": framework,
        "__REQUIREMENT__": spec.requirement,
        "__EPOCHS__": str(spec.local_epochs),
        "__LR__": repr(spec.learning_rate),
        "__DESCRIPTION__": spec.description,
    }
    for key, value in values.items():
        text = text.replace(key, value)
    return text
