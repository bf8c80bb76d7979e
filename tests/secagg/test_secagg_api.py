"""The secagg public API is pinned, and hazmat stays out of it."""

from __future__ import annotations

from fedhive import secagg

PUBLIC = [
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


def test_all_is_pinned_and_importable() -> None:
    assert sorted(secagg.__all__) == sorted(PUBLIC)
    for name in secagg.__all__:
        assert hasattr(secagg, name), name
    assert not any("hazmat" in name for name in secagg.__all__)
