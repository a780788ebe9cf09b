"""SGD (or AdamW) with the TSN/TSM parameter groups and the step learning-rate schedule
(docs/paper-and-code.md#training-recipe).

Groups: conv/linear weights (weight decay, lr x1); biases outside normalisation layers (no decay,
lr x ``bias_lr_mult``); normalisation-layer weights and biases (no decay, lr x1). Parameters shared
between modules (the R50 policy MLPs) appear once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from adafuse.config import OptimConfig

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def param_groups(model: nn.Module, weight_decay: float, bias_lr_mult: float) -> list[dict[str, Any]]:
    """The three parameter groups; each group carries ``lr_mult`` (its learning rate = base lr x lr_mult)."""
    seen: set[int] = set()
    weights, biases, norms = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, NORM_TYPES):
                norms.append(p)
            elif name == "bias" or p.dim() == 1:
                biases.append(p)
            else:
                weights.append(p)
    groups = [
        {"params": weights, "weight_decay": weight_decay, "lr_mult": 1.0, "name": "weights"},
        {"params": biases, "weight_decay": 0.0, "lr_mult": bias_lr_mult, "name": "biases"},
        {"params": norms, "weight_decay": 0.0, "lr_mult": 1.0, "name": "norms"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW over the groups above; ``lr_scale`` multiplies ``cfg.lr``."""
    groups = param_groups(model, cfg.weight_decay, cfg.bias_lr_mult)
    base = cfg.lr * lr_scale
    for g in groups:
        g["lr"] = base * g["lr_mult"]
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=base, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)
    if cfg.name != "sgd":
        raise ValueError(f"optim.name must be sgd or adamw, got {cfg.name!r}")
    return torch.optim.SGD(groups, lr=base, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class LRSchedule:
    """Learning rate as a function of training progress ``e`` (fractional epochs):
    ``lr(e) = lr * warmup(e) * decay(e)`` with ``decay = gamma ** #{s in lr_steps : e >= s}`` (``step``) or
    ``(1 + cos(pi * e / epochs)) / 2`` (``cosine``), and ``warmup(e) = min(1, (e + 1/spe) / w)`` when ``w > 0``.

    Being a pure function of progress, its state is just the last progress it was set to; resuming at a
    given (epoch, step) gives the same learning rate as the uninterrupted run.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int,
                 lr_scale: float = 1.0) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.optimizer = optimizer
        self.base_lr = cfg.lr * lr_scale
        self.steps = sorted(cfg.lr_steps)
        self.gamma = cfg.lr_gamma
        self.warmup = cfg.warmup_epochs
        self.kind = cfg.schedule
        self.epochs = cfg.epochs
        self.steps_per_epoch = steps_per_epoch
        self.last_progress = 0.0

    def factor(self, epoch: int, step_in_epoch: int) -> float:
        progress = epoch + step_in_epoch / self.steps_per_epoch
        if self.kind == "cosine":
            f = 0.5 * (1.0 + math.cos(math.pi * min(progress / max(self.epochs, 1e-9), 1.0)))
        else:
            f = self.gamma ** sum(progress >= s for s in self.steps)
        if self.warmup > 0:
            f *= min(1.0, (progress + 1.0 / self.steps_per_epoch) / self.warmup)
        return f

    def set(self, epoch: int, step_in_epoch: int) -> float:
        """Set every group's learning rate for the step about to run; returns the base lr."""
        lr = self.base_lr * self.factor(epoch, step_in_epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        self.last_progress = epoch + step_in_epoch / self.steps_per_epoch
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_lr": self.base_lr, "lr_steps": list(self.steps), "gamma": self.gamma,
                "warmup_epochs": self.warmup, "steps_per_epoch": self.steps_per_epoch,
                "last_progress": self.last_progress}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_progress = float(state.get("last_progress", 0.0))


def ramp(progress: float, warmup_epochs: float, start_epoch: float = 0.0) -> float:
    """0 before ``start_epoch``, then a linear ramp 0 -> 1 over ``warmup_epochs`` (a step if 0); the factor of
    lambda of the FLOPs term at ``progress`` (fractional epochs)."""
    if progress < start_epoch:
        return 0.0
    if warmup_epochs <= 0:
        return 1.0
    return float(min(1.0, (progress - start_epoch) / warmup_epochs))

