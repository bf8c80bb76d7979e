"""Secure aggregation (SecAgg+): sans-IO client and server state machines.

The server learns the weighted sum of the clients' clipped updates (and the total weight),
never an individual update. The protocol is SecAgg (Bonawitz et al., "Practical Secure
Aggregation for Privacy-Preserving Machine Learning", CCS 2017) over the sparse random
neighbour graph of SecAgg+ (Bell et al., "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead", CCS 2020), so each client talks to k = O(log n) others.

Threat model:

* the server is honest-but-curious: it follows the protocol and tries to learn from what
  it sees. This is *not* secure against a malicious server, which could lie about who
  dropped out (consistency checks and signed dropout lists of the malicious variant are
  not implemented);
* up to a fraction gamma (``corruption_fraction``) of clients collude (with each other,
  or with the server's view), and never hold t shares of an honest client's secret except
  with probability 2^-sigma (:class:`SecAggParams`);
* up to a fraction delta (``dropout_fraction``) of clients may drop at any stage of a
  round; the round then completes over the survivors except with probability 2^-eta;
* clients commit to their self-mask seed and to every share they deal, so a client that
  deals inconsistent shares is detected: the round still completes when the server can
  rebuild its secret from another subset, and otherwise aborts naming it. A client that
  reveals a false share is set aside. Commitments detect inconsistency; they do not make
  the protocol robust against every malicious client.

Every refusal and abort is a :class:`fedhive.errors.SecAggError` carrying client id,
round and stage. A round that aborts unmasks nothing. Drive a round in memory with
:func:`run_local_round`, or over a transport with :func:`server_start`,
:func:`server_receive`, :func:`server_close_stage` on the server and
:func:`client_start`, :func:`client_handle` on each client, shipping messages as
``to_bytes()`` / :func:`decode_message`.
"""

from __future__ import annotations

from fedhive.secagg.client import ClientState, client_handle, client_start
from fedhive.secagg.local import LocalRound, run_local_round
from fedhive.secagg.messages import (
    AdvertiseKeys,
    MaskedInput,
    MaskedInputRequest,
    Message,
    NeighbourKeys,
    PeerKeys,
    RevealedShare,
    RoundSetup,
    RoutedShare,
    ShareKeys,
    SharePacket,
    UnmaskRequest,
    UnmaskResponse,
    decode_message,
)
from fedhive.secagg.params import SecAggParams
from fedhive.secagg.report import Abort, ClientStatus, SecAggResult, Stage
from fedhive.secagg.server import server_close_stage, server_receive, server_start
from fedhive.secagg.server_state import ServerState

__all__ = [
    "Abort",
    "AdvertiseKeys",
    "ClientState",
    "ClientStatus",
    "LocalRound",
    "MaskedInput",
    "MaskedInputRequest",
    "Message",
    "NeighbourKeys",
    "PeerKeys",
    "RevealedShare",
    "RoundSetup",
    "RoutedShare",
    "SecAggParams",
    "SecAggResult",
    "ServerState",
    "ShareKeys",
    "SharePacket",
    "Stage",
    "UnmaskRequest",
    "UnmaskResponse",
    "client_handle",
    "client_start",
    "decode_message",
    "run_local_round",
    "server_close_stage",
    "server_receive",
    "server_start",
]
