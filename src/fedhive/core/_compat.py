"""Shims for Python 3.10 (StrEnum and tomllib arrived in 3.11)."""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum

    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

    class StrEnum(str, Enum):
        """An Enum whose members are also strings (3.11's enum.StrEnum)."""

        def __str__(self) -> str:
            return str(self.value)


__all__ = ["StrEnum", "tomllib"]
