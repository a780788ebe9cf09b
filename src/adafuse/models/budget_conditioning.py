"""Budget-conditioned policies: one model trained for a range of compute budgets.

:func:`enable_budget_conditioning` gives every learned :class:`~adafuse.models.fusion.PolicyNet` of a model an
extra input, the target budget ``F`` (GFLOPs per video as a fraction of the all-keep model): a zero-initialised
``Linear(1, C * A)`` (``target_embed``) maps ``F`` to an offset of every channel's action logits, so the policy
can learn, per channel and action, how much cheaper to be at a smaller budget. The trainer samples ``F`` per
batch and penalises the distance of the spent fraction to it (``train.budget_range``); at test time
:func:`set_budget_target` chooses the operating point. With the embedding at zero the policy is the plain one.

The offset is a constant ``(C, A)`` per target, so the sparse executor applies it like the budget shift
(:meth:`BudgetPolicyNet.target_offset`). A checkpoint of a conditioned model holds ``*.target_embed.*`` keys;
:func:`adafuse.models.serialization.model_from_checkpoint` enables the conditioning before loading them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from adafuse.models.fusion import PolicyNet, fusion_modules

EMBED_KEY = ".target_embed."
DEFAULT_TARGET = 1.0


class BudgetPolicyNet(PolicyNet):
    """A :class:`PolicyNet` whose logits get ``target_embed(F)`` added (``F``: :attr:`target`, a float)."""

    target_embed: nn.Linear
    target: float

    def target_offset(self) -> Tensor:
        """The ``(C, A)`` logit offset at the current target."""
        w = self.target_embed.weight
        f = torch.full((1, 1), float(self.target), dtype=w.dtype, device=w.device)
        return self.target_embed(f).view(self.channels, self.num_actions)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        """``x``: ``(N*T, C_in, H, W)`` -> logits ``(N*T, C, A)`` (the plain policy's + the target offset)."""
        return super().forward(x, num_frames) + self.target_offset()


def is_budget_conditioned(model: nn.Module) -> bool:
    return any(isinstance(f.policy, BudgetPolicyNet) for f in fusion_modules(model))


def enable_budget_conditioning(model: nn.Module) -> nn.Module:
    """Turn every learned policy of ``model`` into a :class:`BudgetPolicyNet` (in place; idempotent). The new
    ``target_embed`` layers start at zero, so the model's outputs do not change until they are trained."""
    for f in fusion_modules(model):
        p = f.policy
        if isinstance(p, BudgetPolicyNet) or not isinstance(p, PolicyNet):
            continue
        embed = nn.Linear(1, p.channels * p.num_actions)
        nn.init.zeros_(embed.weight)
        nn.init.zeros_(embed.bias)
        device = p.fc1.weight.device
        p.__class__ = BudgetPolicyNet
        p.target_embed = embed.to(device)
        p.target = DEFAULT_TARGET
    return model


def set_budget_target(model: nn.Module, target: float) -> None:
    """The budget ``F`` every conditioned policy of ``model`` is asked for (no effect on other models)."""
    for f in fusion_modules(model):
        if isinstance(f.policy, BudgetPolicyNet):
            f.policy.target = float(target)


@contextlib.contextmanager
def budget_target(model: nn.Module, target: float) -> Iterator[None]:
    """``with budget_target(model, F):`` sets the target and restores the previous ones on exit."""
    policies = [f.policy for f in fusion_modules(model) if isinstance(f.policy, BudgetPolicyNet)]
    saved = [p.target for p in policies]
    try:
        set_budget_target(model, target)
        yield
    finally:
        for p, t in zip(policies, saved, strict=True):
            p.target = t
