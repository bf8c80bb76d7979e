"""benchmarks/privacy_attack.py at a tiny size: an unprotected update of one image leaks
the image, the same update under heavy DP noise does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.usefixtures("one_torch_thread")
def test_no_protection_reconstructs_far_better_than_heavy_dp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import privacy_attack as bench

    settings = bench.Settings(
        seed=3,
        batch_sizes=(1,),
        noise_multipliers=(1.0,),
        trials=2,
        restarts=1,
        iterations=100,
        calibration_batches=8,
        secagg_joint=False,
    )
    rows, derived, conditions = bench.attack_rows(settings)
    psnr: dict[Any, float] = {(r["protection"], r.get("noise_multiplier")): r["psnr"] for r in rows}

    assert derived["clipping_norm"]["1"] > 0
    # Exact update, batch of one: iDLG recovers the digit (about 120 dB here, capped).
    assert psnr["none", None] > 40, rows
    # Noise of norm ~50 C swamps it: no better than guessing the mean digit (~11 dB).
    assert psnr["dp", 1.0] < psnr["mean_image", None] + 3, rows
    assert psnr["none", None] > psnr["dp", 1.0] + 25, rows
    assert psnr["secagg", None] < psnr["none", None] - 25, rows
    if bench.plot(conditions, tmp_path / "grid.png"):
        assert (tmp_path / "grid.png").stat().st_size > 0
