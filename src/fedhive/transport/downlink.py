"""What a server sends a client for a model: the whole model, or a delta against the
version the client holds (:mod:`fedhive.transport.delta`), whichever is smaller.

The server keeps the last few published models as bases, and makes each (base, target)
delta once, when the first client asks for it: a cohort of a thousand clients that held
the last round's model costs one encoding. Both engines use it: the gRPC server streams
what it returns; a simulation counts its size as the client's download.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from fedhive.transport.delta import encode_delta

DEFAULT_BASES = 4
"""Models kept as bases: the last rounds' (a client absent longer gets the full model)."""


@dataclass(frozen=True)
class Download:
    """The bytes to send, and whether they are a delta (against ``base``)."""

    data: bytes
    delta: bool


class Downlink:
    """The published models a delta may start from, and the deltas made so far.

    Args:
        delta: send deltas at all (False: every download is the full model).
        bases: how many recently published models are kept as bases.
        level: the zstd level of the deltas.
    """

    def __init__(self, *, delta: bool = True, bases: int = DEFAULT_BASES, level: int = 3) -> None:
        if bases < 1:
            raise ValueError(f"bases must be at least 1, got {bases}")
        self.delta = delta
        self._bases: OrderedDict[str, bytes] = OrderedDict()
        self._made: dict[tuple[str, str], bytes | None] = {}
        self._keep = bases
        self._level = level
        self._lock = threading.Lock()

    def published(self, version: str, model: bytes) -> None:
        """Note a published model: a base for the next ones (the oldest drops out)."""
        if not self.delta:
            return
        with self._lock:
            self._bases[version] = model
            self._bases.move_to_end(version)
            while len(self._bases) > self._keep:
                old, _ = self._bases.popitem(last=False)
                self._made = {k: v for k, v in self._made.items() if old not in k}

    def download(self, version: str, model: bytes, base: str) -> Download:
        """What to send a client that asks for ``version`` (whose bytes are ``model``)
        holding ``base`` ("" if none): the delta when there is one smaller than the
        model, else the model."""
        if not self.delta or not base or base == version:
            return Download(model, delta=False)
        with self._lock:  # one encoding per pair, even with many clients asking at once
            held = self._bases.get(base)
            if held is None:
                return Download(model, delta=False)
            key = (base, version)
            if key not in self._made:
                self._made[key] = encode_delta(held, model, level=self._level)
            made = self._made[key]
        if made is None or len(made) >= len(model):
            return Download(model, delta=False)
        return Download(made, delta=True)
