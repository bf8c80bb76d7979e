"""``registry.json``: the clients of a provisioned folder, for humans and for tools.

The file maps each client id to its certificate's serial (a hex string, as ``openssl``
prints serials), whether it is revoked, and when its certificate expires::

    {"client-0000": {"not_after": "2027-05-09T07:30:00+00:00", "revoked": false,
                     "serial": "0x4f1c..."}}
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedhive.errors import SerializationError
from fedhive.pki.identity import validate_client_id
from fedhive.pki.storage import read_bytes, write_atomic


@dataclass(frozen=True, kw_only=True)
class ClientRecord:
    """One client of a provisioned folder.

    Attributes:
        client_id: the id its certificate names.
        serial: its certificate's serial number.
        not_after: when its certificate expires (UTC).
        revoked: whether its serial is in the CRL.
    """

    client_id: str
    serial: int
    not_after: dt.datetime
    revoked: bool = False

    def to_json(self) -> dict[str, object]:
        """The record's entry in ``registry.json`` (without the id, which is the key)."""
        return {
            "serial": hex(self.serial),
            "revoked": self.revoked,
            "not_after": self.not_after.isoformat(),
        }


def read_registry(path: Path) -> dict[str, ClientRecord]:
    """Read ``registry.json``: client id → record.

    Raises:
        ConfigError: the file is missing or unreadable.
        SerializationError: it is not a registry.
    """
    try:
        table = json.loads(read_bytes(path))
        if not isinstance(table, dict):
            raise TypeError("not an object")
        return {
            validate_client_id(client_id): ClientRecord(
                client_id=client_id,
                serial=int(entry["serial"], 16),
                not_after=dt.datetime.fromisoformat(entry["not_after"]),
                revoked=_bool(entry["revoked"]),
            )
            for client_id, entry in table.items()
        }
    except (ValueError, TypeError, KeyError) as exc:
        raise SerializationError(f"{path}: not a client registry ({exc!r})") from None


def write_registry(path: Path, records: Mapping[str, ClientRecord]) -> None:
    """Write ``registry.json`` atomically, sorted by id and indented for reading."""
    table = {client_id: records[client_id].to_json() for client_id in sorted(records)}
    write_atomic(path, (json.dumps(table, indent=2) + "\n").encode())


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"revoked must be true or false, got {value!r}")
    return value
