"""Shared helpers of the inference tests: small models with non-trivial BN statistics and random policies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adafuse.models import build_model, fusion_modules
from adafuse.models.fusion import PolicyNet

STHV1_MIX = (0.37, 0.26, 0.37)  # (skip, reuse, keep)


def randomize_bn(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters (so that folding is exercised)."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
            if m.weight is not None:
                m.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.data.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)


def decisive_policies(model: nn.Module, generator: torch.Generator, scale: float = 10.0) -> None:
    """Make the learned policies' argmax far from ties (large random output biases, weights that still
    matter), so that float rounding differences between two execution paths cannot flip a decision."""
    for m in model.modules():
        if isinstance(m, PolicyNet):
            h = m.fc1.weight.shape[1]
            m.fc0.weight.data.copy_(torch.randn(m.fc0.weight.shape, generator=generator) / m.fc0.weight.shape[1] ** 0.5)
            m.fc1.weight.data.copy_(torch.randn(m.fc1.weight.shape, generator=generator) * 2.0 / h ** 0.5)
            m.fc1.bias.data.copy_(torch.randn(m.fc1.bias.shape, generator=generator) * scale)


def tiny_model(arch: str, num_frames: int = 4, num_classes: int = 7, seed: int = 0) -> nn.Module:
    """A registered model in eval mode with randomized BN and a readable classifier (N(0, 0.05) weights)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(arch, num_classes=num_classes, num_frames=num_frames).eval()
    randomize_bn(model, gen)
    decisive_policies(model, gen)
    model.head.fc.weight.data.copy_(torch.randn(model.head.fc.weight.shape, generator=gen) * 0.05)
    return model


def random_masks(model: nn.Module, rows: int, mix=STHV1_MIX, seed: int = 0) -> list[torch.Tensor]:
    """One i.i.d. random one-hot ``(rows, C, 3)`` (skip, reuse, keep) mask per fusion module."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for f in fusion_modules(model):
        a = torch.multinomial(torch.tensor(mix), rows * f.channels, replacement=True, generator=gen)
        out.append(F.one_hot(a.view(rows, f.channels), 3).float())
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())
