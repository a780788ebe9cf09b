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
