"""The server's downlink: whole models, deltas against kept bases, one encoding a pair."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fedhive.core.serde import model_version, weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.transport import downlink as downlink_module
from fedhive.transport.delta import apply_delta
from fedhive.transport.downlink import Downlink


def models(count: int) -> list[tuple[str, bytes]]:
    """``count`` consecutive versions of a 1,000-value model, each a small step on."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=1000).astype(np.float32)
    out = []
    for _ in range(count):
        weights = Weights({"w": w})
        out.append((model_version(weights), weights_to_bytes(weights)))
        w = (w + 1e-3 * rng.normal(size=1000)).astype(np.float32)
    return out


def test_a_client_holding_a_kept_base_gets_the_exact_smaller_delta() -> None:
    (v0, m0), (v1, m1) = models(2)
    downlink = Downlink(delta=True)
    downlink.published(v0, m0)
    downlink.published(v1, m1)
    sent = downlink.download(v1, m1, v0)
    assert sent.delta
    assert len(sent.data) < len(m1)
    assert apply_delta(m0, sent.data, max_size=len(m1)) == m1


@pytest.mark.parametrize("base", ["", "unknown-version"])
def test_no_base_or_an_unknown_one_gets_the_whole_model(base: str) -> None:
    (v0, m0), (v1, m1) = models(2)
    downlink = Downlink(delta=True)
    downlink.published(v0, m0)
    downlink.published(v1, m1)
    assert downlink.download(v1, m1, base).data == m1
    assert not downlink.download(v1, m1, base).delta


def test_without_deltas_every_download_is_the_whole_model() -> None:
    (v0, m0), (v1, m1) = models(2)
    downlink = Downlink(delta=False)
    downlink.published(v0, m0)
    downlink.published(v1, m1)
    sent = downlink.download(v1, m1, v0)
    assert (sent.data, sent.delta) == (m1, False)


def test_only_the_last_bases_are_kept() -> None:
    versions = models(4)
    downlink = Downlink(delta=True, bases=2)
    for version, model in versions:
        downlink.published(version, model)
    (v0, _), (v1, _), _, (v3, m3) = versions
    assert not downlink.download(v3, m3, v0).delta  # dropped: the client gets it all
    assert not downlink.download(v3, m3, v1).delta
    assert downlink.download(v3, m3, versions[2][0]).delta


def test_a_base_of_another_layout_gets_the_whole_model() -> None:
    (v1, m1) = models(1)[0]
    other = weights_to_bytes(Weights({"w": np.zeros(10, np.float32)}))
    downlink = Downlink(delta=True)
    downlink.published("other", other)
    downlink.published(v1, m1)
    assert downlink.download(v1, m1, "other") == downlink_module.Download(m1, delta=False)


def test_a_delta_no_smaller_than_the_model_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """(The model's safetensors header is not in a delta, so a real one is nearly always
    smaller; the encoder here makes one exactly the model's size.)"""
    (v0, m0), (v1, m1) = models(2)
    monkeypatch.setattr(downlink_module, "encode_delta", lambda a, b, level: bytes(len(b)))
    downlink = Downlink(delta=True)
    downlink.published(v0, m0)
    downlink.published(v1, m1)
    assert downlink.download(v1, m1, v0) == downlink_module.Download(m1, delta=False)


def test_many_clients_asking_at_once_cost_one_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    (v0, m0), (v1, m1) = models(2)
    calls = []
    real = downlink_module.encode_delta

    def counting(base: bytes, target: bytes, *, level: int = 3) -> bytes | None:
        calls.append(1)
        return real(base, target, level=level)

    monkeypatch.setattr(downlink_module, "encode_delta", counting)
    downlink = Downlink(delta=True)
    downlink.published(v0, m0)
    downlink.published(v1, m1)
    sent = []
    threads = [
        threading.Thread(target=lambda: sent.append(downlink.download(v1, m1, v0)))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len({s.data for s in sent}) == 1
    assert all(s.delta for s in sent)


def test_bases_must_be_positive() -> None:
    with pytest.raises(ValueError, match="bases"):
        Downlink(bases=0)
