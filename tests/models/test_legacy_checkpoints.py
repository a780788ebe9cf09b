"""Checkpoints written by an earlier version of the code still load and behave the same.

``tests/fixtures/legacy_checkpoints.pt`` was written by ``tests/fixtures/make_legacy_checkpoints.py`` with the
code before the models refactor (registry, strict builders, policy state); it holds, per model, the
checkpoint payload, an input clip and what that code computed for it: logits, policy masks and FLOPs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adafuse.flops import dynamic_gflops, static_cost
from adafuse.models import collect_masks
from adafuse.models.serialization import model_from_checkpoint

FIXTURE = Path(__file__).parents[1] / "fixtures" / "legacy_checkpoints.pt"
RECORDS = torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("record", RECORDS, ids=[r["checkpoint"]["arch"] for r in RECORDS])
def test_legacy_checkpoint_gives_the_same_logits_masks_and_flops(record) -> None:
    model, payload = model_from_checkpoint(record["checkpoint"])
    assert model.arch == payload["arch"]
    with torch.no_grad():
        logits = model(record["clip"])
    torch.testing.assert_close(logits, record["logits"], rtol=0, atol=1e-6)
    masks = collect_masks(model)
    assert len(masks) == len(record["masks"])
    for got, expected in zip(masks, record["masks"], strict=True):
        assert torch.equal(got, expected)
    cost = static_cost(model, record["clip"].shape[-1])
    assert cost.total == pytest.approx(record["static_total"], rel=1e-12)
    assert cost.floor == pytest.approx(record["static_floor"], rel=1e-9)
    assert [f for b in cost.blocks for f in (b.f1, b.f2)] == pytest.approx(
        [f for pair in record["block_f1_f2"] for f in pair], rel=1e-12)
    torch.testing.assert_close(dynamic_gflops(cost, masks, model.num_frames), record["gflops"], rtol=0, atol=1e-9)
