"""Update compression (the codec library): quantize, sparsify and zstd a client update.

A client runs these when its config carries the
:class:`~fedhive.core.extensions.Compression` instruction
(:mod:`fedhive.client.compress`; the server decodes in
:func:`fedhive.server.verify.accept_fit_reply`). The library:

* specs (:mod:`~fedhive.core.codecs`): :class:`StochasticQuantization` (8 or 4
  bits, per tensor or per block; QSGD's unbiased min-max rounding), :class:`TopK` and
  :class:`RandomK` sparsification, :class:`Zstd`, composed by :class:`Pipeline` (at most
  one lossy stage, then optionally zstd);
* :func:`encode` and :func:`decode` (:mod:`~fedhive.compression.codec`), pure functions:
  ``encode(update, pipeline, rng=..., residual=...)`` gives an :class:`Encoded` (the
  payload and the new error-feedback residual), ``decode(payload, layout)`` the weights,
  :func:`residual_layout` the residual's layout;
* the payload frame (:mod:`~fedhive.compression.wire`), binary and 56 bytes for 8-bit:
  magic, format version, the pipeline spec (:mod:`~fedhive.compression.spec_bytes`),
  the counts and a digest of the layout it was made for, the body, and a checksum of it
  all. Decoding untrusted bytes raises :class:`~fedhive.errors.CodecError` and nothing
  else: for an unknown codec, corruption, truncation, another layout, out-of-range
  indices, non-finite values or a zstd bomb.

Only float tensors are compressed; integer and boolean tensors travel exactly.
"""

from __future__ import annotations

from fedhive.compression.codec import Encoded, decode, encode, residual_layout
from fedhive.core.codecs import Pipeline, RandomK, StochasticQuantization, TopK, Zstd

__all__ = [
    "Encoded",
    "Pipeline",
    "RandomK",
    "StochasticQuantization",
    "TopK",
    "Zstd",
    "decode",
    "encode",
    "residual_layout",
]
