"""Inference tests run single-threaded: they check behaviour, and on a shared, busy CPU two OpenMP threads
waiting on each other make small batch-1 convs many times slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["compiled", "pytorch"])
def kernel_path(request, monkeypatch):
    """Run a test on both executor paths: the compiled kernels (skipped where they are not built) and the
    pure-PyTorch fallback that is selected when they are missing."""
    from adafuse.inference import kernels

    if request.param == "compiled":
        if not kernels.available():
            pytest.skip(kernels.status())
    else:
        monkeypatch.setattr(kernels, "available", lambda: False)
    return request.param
