"""A simulation app: the user's code that builds clients, the model and its evaluation.

An app module has two halves, each a function of an :class:`AppContext`: the server's
(``server(ctx) -> ServerApp``: the initial model and a central evaluation) and the
clients' (``client(ctx) -> ClientApp``: one client by id). A simulation composes them
into a :class:`SimulationApp` (``build(ctx)``); a deployment gives the server only its
half (``[server] app``) and each client process only its own (``fedhive client --app``).

A config names a function as ``"module:function"``; the module is a file beside the
config (``app.py`` for ``"app:build"``) or an importable module. Worker processes load
the same app from the same spec, so nothing is pickled between processes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fedhive.client.app import ClientApp
from fedhive.errors import ConfigError
from fedhive.server.app import ServerApp

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class AppContext:
    """What an app factory is given: its config table, the run seed, its folder."""

    params: Mapping[str, Any]
    seed: int
    base_dir: Path = field(default_factory=Path.cwd)


@dataclass(frozen=True, kw_only=True)
class SimulationApp:
    """The server's half, the clients' half and the ids of the simulated clients."""

    server: ServerApp
    client: ClientApp
    client_ids: Sequence[str]


def load_app(spec: str, ctx: AppContext, kind: type[T], *, what: str) -> T:
    """Call the factory ``spec`` names (``"module:function"``, resolved against
    ``ctx.base_dir``) with ``ctx``; it must return a ``kind``.

    Raises:
        ConfigError: a malformed spec, a missing module or function, or a factory that
            returned something else (each named by ``what``).
    """
    app = load_callable(spec, ctx.base_dir, what=what)(ctx)
    if not isinstance(app, kind):
        raise ConfigError(
            f"{what}: {spec!r} returned {type(app).__name__}, expected {kind.__name__}"
        )
    return app


@dataclass(frozen=True)
class AppSpec:
    """Where an app factory lives: ``"module:function"`` resolved against ``base_dir``."""

    spec: str
    base_dir: Path

    def build(self, params: Mapping[str, Any], seed: int) -> SimulationApp:
        """Load the factory and build the app."""
        ctx = AppContext(params=params, seed=seed, base_dir=self.base_dir)
        return load_app(self.spec, ctx, SimulationApp, what="run.app")


def load_callable(spec: str, base_dir: Path, *, what: str) -> Callable[..., Any]:
    """The function ``"module:function"`` names (the module a file in ``base_dir`` or an
    importable module).

    Raises:
        ConfigError: a malformed spec, a missing module or function (named by ``what``).
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise ConfigError(f"{what}: must look like 'module:function', got {spec!r}")
    module = _import(module_name, base_dir, what)
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"{what}: {module_name!r} has no function {attr!r}")
    return function  # type: ignore[no-any-return]


def _import(module_name: str, base_dir: Path, what: str) -> Any:
    path = base_dir.joinpath(*module_name.split(".")).with_suffix(".py")
    if path.is_file():
        # A unique name per file: two examples may both call their module "app".
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        unique = f"_fedhive_app_{digest}"
        if unique in sys.modules:
            return sys.modules[unique]
        spec = importlib.util.spec_from_file_location(unique, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{what}: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[unique]
            raise
        return module
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{what}: no file {path} and no importable module {module_name!r}"
        ) from exc
