"""Fixtures shared by test modules, and the numerical environment every test runs in.

Seeded runs give the same model bit for bit only where the linear-algebra kernels are
the same: OpenBLAS (numpy), MKL and ATen (torch) each pick kernels by CPU, and an AVX-512
kernel sums in another order than an AVX2 one. The suite pins all three to their AVX2
code paths, which every x86-64 CI machine has, before numpy or torch is imported (here,
and so in every worker and subprocess a test starts): the pinned model hashes
(``tests/integration/test_model_hashes.py``) then hold on Intel and AMD machines alike.
"""

from __future__ import annotations

import os

PINNED_KERNELS = {"OPENBLAS_CORETYPE": "Haswell", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
os.environ.update(PINNED_KERNELS)

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models train faster on one torch thread; more only contend on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
