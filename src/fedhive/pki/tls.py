"""The TLS material of one party: its CA certificate, its certificate and its key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedhive.errors import ConfigError
from fedhive.pki.storage import read_bytes

CA_FILE = "ca.pem"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


@dataclass(frozen=True, kw_only=True)
class TLSConfig:
    """Paths to the PEM files a server or client needs for mutual TLS.

    Attributes:
        ca: the CA certificate that the peer's certificate must chain to.
        cert: this party's certificate.
        key: this party's private key (unencrypted PKCS8; keep it mode 0600).
    """

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_dir(cls, path: Path | str) -> TLSConfig:
        """The files ``ca.pem``, ``cert.pem`` and ``key.pem`` of a provisioned folder.

        Raises:
            ConfigError: the folder or one of the three files does not exist.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"{folder}: TLS folder not found")
        config = cls(ca=folder / CA_FILE, cert=folder / CERT_FILE, key=folder / KEY_FILE)
        for file in (config.ca, config.cert, config.key):
            if not file.is_file():
                raise ConfigError(
                    f"{file}: file not found (a provisioned folder holds "
                    f"{CA_FILE}, {CERT_FILE} and {KEY_FILE})"
                )
        return config

    def read(self) -> tuple[bytes, bytes, bytes]:
        """The PEM bytes ``(ca, cert, key)``, as gRPC's credential functions take them.

        Raises:
            ConfigError: a file is missing or unreadable; the message names it.
        """
        return read_bytes(self.ca), read_bytes(self.cert), read_bytes(self.key)
