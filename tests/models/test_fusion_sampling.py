"""The ``sample`` decision draws as the released code: Gumbel noise on ``log(clamp(softmax(logits), 1e-8))``."""

from __future__ import annotations

import math

import torch
from torch import nn

from adafuse.models import fusion
from adafuse.models.fusion import RELEASED_PROB_FLOOR, AdaptiveFusion, hard_gumbel_softmax

# action 1 has probability ~1e-22, far below the floor; action 0 is the most likely
LOGITS = torch.tensor([[[0.0, -50.0, -1.0]]])  # (N*T=1, C=1, 3)
NOISE = torch.tensor([[[0.0, 30.0, 0.0]]])  # a large draw on the rare action


class FixedLogits(nn.Module):
    learned = True

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return LOGITS.expand(x.shape[0], 1, 3)


def test_clamp_changes_which_action_a_noise_draw_selects(monkeypatch):
    """log p1 = -50.3 (+30 = -20.3 < log p0 = -0.31): unclamped keeps action 0; clamped at 1e-8, log p1 =
    -18.42 (+30 = 11.6): the released rule draws action 1."""
    monkeypatch.setattr(fusion, "gumbel_noise", lambda like, generator=None: NOISE.to(like))
    assert hard_gumbel_softmax(LOGITS, 0.67).argmax(-1).item() == 0
    assert hard_gumbel_softmax(LOGITS, 0.67, prob_floor=RELEASED_PROB_FLOOR).argmax(-1).item() == 1
    assert math.log(RELEASED_PROB_FLOOR) + 30.0 > math.log(torch.softmax(LOGITS, -1)[0, 0, 0].item())

    f = AdaptiveFusion(FixedLogits(), channels=1, num_frames=1).eval()
    x, y = torch.randn(1, 4, 2, 2), torch.randn(1, 1, 2, 2)
    f.decision = "sample"
    assert f.decide(x, y)[0, 0].tolist() == [0.0, 1.0, 0.0]  # reuse: the clamped draw
    f.decision = "argmax"
    assert f.decide(x, y)[0, 0].tolist() == [1.0, 0.0, 0.0]


def test_clamped_sample_is_one_hot_with_straight_through_gradients():
    logits = torch.randn(6, 5, 3, requires_grad=True)
    mask = hard_gumbel_softmax(logits, 0.67, torch.Generator().manual_seed(0), prob_floor=RELEASED_PROB_FLOOR)
    assert torch.equal(mask.detach().sum(-1), torch.ones(6, 5))
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    (mask * torch.randn(6, 5, 3)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
