"""The run configuration of ``fedhive simulate`` and ``fedhive server``: one msgspec
model of the whole TOML file (:mod:`fedhive.config.run`)."""

from fedhive.config.run import Document, RunConfig, load_config, parse_config

__all__ = ["Document", "RunConfig", "load_config", "parse_config"]
