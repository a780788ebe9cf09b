"""Adaptive temporal fusion (paper Sec. 3, Eq. 2-3): policy network, hard Gumbel-softmax, keep/reuse/skip.

A gated tensor ``y`` of shape ``(N*T, C, H, W)`` (frames of a video contiguous) is fused with its previous
frame ``h[t] = y[t-1]`` (zeros at ``t = 0``) under a one-hot mask ``(N*T, C, 3)`` over the actions
``(skip, reuse, keep)``::

    y~ = keep * y + reuse * h          (skip -> 0)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adafuse.models.temporal import init_small_linear

# The action layout of every mask (..., 3) in the project: index SKIP, REUSE, KEEP of the last dim.
SKIP, REUSE, KEEP = 0, 1, 2
ACTIONS = ("skip", "reuse", "keep")
DECISIONS = ("gumbel", "argmax", "sample")
DEFAULT_TAU = 0.67
DEFAULT_ACTION_COST = (0.0, 0.5, 1.0)  # relative cost of (skip, reuse, keep) for the budget shift
RELEASED_PROB_FLOOR = 1e-8  # the released gate samples on log(clamp(softmax(logits), min=1e-8))


def previous_frame(x: Tensor, num_frames: int) -> Tensor:
    """``out[n*T + t] = x[n*T + t - 1]`` and zeros at ``t = 0``. ``x``: ``(N*T, ...)``."""
    nt = x.shape[0]
    if nt % num_frames:
        raise ValueError(f"batch of {nt} frames is not a multiple of num_frames={num_frames}")
    v = x.reshape(nt // num_frames, num_frames, *x.shape[1:])
    out = torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], dim=1)
    return out.reshape(x.shape)


def gumbel_noise(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel noise of the shape, dtype and device of ``like``."""
    u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    return -torch.log((-torch.log(u.clamp_min(1e-10))).clamp_min(1e-10))


def hard_gumbel_softmax(
    logits: Tensor, tau: float = DEFAULT_TAU, generator: torch.Generator | None = None,
    prob_floor: float | None = None,
) -> Tensor:
    """One-hot sample over the last dim with straight-through gradients of the relaxed sample.

    The noise is added to ``log_softmax(logits)``, or with ``prob_floor`` to ``log(clamp(softmax(logits),
    prob_floor))`` (the released code's rule, :data:`RELEASED_PROB_FLOOR`: an action below that probability
    is drawn as if it had it); forward value is exactly one-hot.
    """
    if prob_floor is None:
        log_p = F.log_softmax(logits, dim=-1)
    else:
        log_p = torch.log(F.softmax(logits, dim=-1).clamp(min=prob_floor))
    soft = F.softmax((log_p + gumbel_noise(log_p, generator)) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def one_hot_argmax(logits: Tensor) -> Tensor:
    """Deterministic one-hot of the most likely action (no gradient)."""
    return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)


def fuse(y: Tensor, mask: Tensor, num_frames: int) -> Tensor:
    """Paper Eq. 3. ``y``: ``(N*T, C, H, W)``, ``mask``: ``(N*T, C, 3)`` -> ``(N*T, C, H, W)``."""
    keep = mask[..., KEEP, None, None]
    reuse = mask[..., REUSE, None, None]
    return y * keep + previous_frame(y, num_frames) * reuse


class GatedLayers(NamedTuple):
    """The layers around one gated tensor ``y`` ``(N*T, C, H, W)``, described once per block type.

    ``producers`` compute the channels of ``y`` (a channel that is skipped, or reused from the previous
    frame, need not be computed); ``consumers`` read ``y`` channel by channel (a skipped channel is a zero
    input they need not read). Either list may be empty. Every block that owns a fusion module returns this
    from ``fusion_cost_layers()``; the FLOPs engine and the sparse executor both read it.
    """

    producers: list[nn.Module]
    consumers: list[nn.Module]


class PolicyNet(nn.Module):
    """Per-channel action logits from the block input.

    ``v_t = GAP(x_t)``; input ``[v_{t-1}, v_t]`` (``v_{-1} = 0``) when ``use_history`` else ``v_t``;
    ``Linear -> BatchNorm1d -> ReLU -> Linear`` -> logits ``(N*T, C, A)``.

    ``fc0``/``fc1`` may be passed in to share them between blocks (the ResNet-50 quota rule,
    docs/paper-and-code.md); the BatchNorm is always per block.
    """

    learned = True

    def __init__(
        self,
        in_channels: int,
        channels: int,
        hidden: int,
        num_actions: int = 3,
        use_history: bool = True,
        fc0: nn.Linear | None = None,
        fc1: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.channels, self.hidden = in_channels, channels, hidden
        self.num_actions, self.use_history = num_actions, use_history
        in_features = in_channels * (2 if use_history else 1)
        if fc0 is None:
            fc0 = nn.Linear(in_features, hidden)
            init_small_linear(fc0)
        if fc1 is None:
            fc1 = nn.Linear(hidden, channels * num_actions)
            init_small_linear(fc1)
        expected = ((hidden, in_features), (channels * num_actions, hidden))
        if (tuple(fc0.weight.shape), tuple(fc1.weight.shape)) != expected:
            raise ValueError(f"shared policy layers have shapes {fc0.weight.shape}, {fc1.weight.shape}; "
                             f"expected {expected}")
        self.fc0 = fc0
        self.bn = nn.BatchNorm1d(hidden)
        self.fc1 = fc1

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        """``x``: ``(N*T, C_in, H, W)`` -> logits ``(N*T, C, A)``."""
        v = x.mean(dim=(2, 3))
        if self.use_history:
            v = torch.cat([previous_frame(v, num_frames), v], dim=1)
        h = F.relu(self.bn(self.fc0(v)))
        return self.fc1(h).view(x.shape[0], self.channels, self.num_actions)


class AdaptiveFusion(nn.Module):
    """Decides keep/reuse/skip per frame and channel and fuses the gated tensor with its previous frame.

    ``policy`` is either a learned :class:`PolicyNet` (logits over ``actions``) or a fixed-rule module
    (``learned = False``) returning a ready ``(N*T, C, 3)`` mask from ``(x, y, num_frames)``.

    Decision rule: hard Gumbel-softmax (straight-through, ``tau``) in training; at evaluation
    ``decision="argmax"`` (default, deterministic) or ``"sample"`` (seeded Gumbel sampling on
    ``log(clamp(softmax, 1e-8))``, as the released code does). An injected mask (:func:`inject_policy`)
    overrides everything.
    After each forward ``last_mask`` holds the ``(N*T, C, 3)`` mask used.

    Compute budget (:mod:`adafuse.inference.budget`): with ``budget_shift = b != 0`` the learned policy's logits
    become ``logits - b * budget_cost`` before any decision rule; ``budget_cost`` ``(A,)`` is the relative cost
    of each of this module's actions (default skip 0, reuse 0.5, keep 1; the budget module sets the FLOPs
    engine's per-channel costs). ``b > 0`` moves decisions towards cheaper actions, ``b < 0`` towards keep;
    ``b = 0`` (default) leaves the logits untouched.
    """

    def __init__(
        self,
        policy: nn.Module,
        channels: int,
        actions: Sequence[str] = ACTIONS,
        num_frames: int = 8,
        tau: float = DEFAULT_TAU,
    ) -> None:
        super().__init__()
        unknown = set(actions) - set(ACTIONS)
        if unknown or len(set(actions)) != len(actions) or "keep" not in actions:
            raise ValueError(f"actions must be distinct names from {ACTIONS} including 'keep'; got {actions}")
        self.policy = policy
        self.channels = channels
        self.actions = tuple(actions)
        self.num_frames = num_frames
        self.tau = tau
        self.decision = "argmax"
        self.generator: torch.Generator | None = None
        self.injected: Tensor | None = None
        self.last_mask: Tensor | None = None
        self.budget_shift = 0.0
        self.budget_cost = torch.tensor([DEFAULT_ACTION_COST[ACTIONS.index(a)] for a in self.actions])
        select = torch.zeros(len(actions), 3)
        for i, name in enumerate(actions):
            select[i, ACTIONS.index(name)] = 1.0
        self.register_buffer("select", select, persistent=False)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, actions={self.actions}, tau={self.tau}, decision={self.decision}"

    def __getstate__(self) -> dict:
        # last_mask may be a non-leaf tensor of the last training step: copies and pickles drop it
        state = self.__dict__.copy()
        state["last_mask"] = None
        return state

    def decide(self, x: Tensor, y: Tensor) -> Tensor:
        """Mask ``(N*T, C, 3)`` for block input ``x`` ``(N*T, C_in, H, W)`` and gated tensor ``y``."""
        if self.injected is not None:
            expected = (y.shape[0], y.shape[1], 3)
            if tuple(self.injected.shape) != expected:
                raise ValueError(f"injected policy has shape {tuple(self.injected.shape)}, expected {expected}")
            return self.injected.to(dtype=y.dtype, device=y.device)
        if not getattr(self.policy, "learned", False):
            return self.policy(x, y, self.num_frames)
        logits = self.policy(x, self.num_frames).float()
        if self.budget_shift:
            logits = logits - self.budget_shift * self.budget_cost.to(logits.device)
        if self.training:
            mask = hard_gumbel_softmax(logits, self.tau)
        elif self.decision == "sample":
            gen = self.generator if self.generator is not None and self.generator.device == logits.device else None
            mask = hard_gumbel_softmax(logits, self.tau, generator=gen, prob_floor=RELEASED_PROB_FLOOR)
        else:
            mask = one_hot_argmax(logits)
        return (mask @ self.select).to(y.dtype)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x``: policy input ``(N*T, C_in, H, W)``; ``y``: gated tensor ``(N*T, C, H, W)``."""
        mask = self.decide(x, y)
        self.last_mask = mask
        return fuse(y, mask, self.num_frames)


def fusion_modules(model: nn.Module) -> list[AdaptiveFusion]:
    """Every :class:`AdaptiveFusion` of ``model`` in forward (registration) order."""
    return [m for m in model.modules() if isinstance(m, AdaptiveFusion)]


def collect_masks(model: nn.Module) -> list[Tensor]:
    """The ``(N*T, C, 3)`` masks of the last forward, one per fusion module."""
    masks = []
    for i, f in enumerate(fusion_modules(model)):
        if f.last_mask is None:
            raise RuntimeError(f"fusion module {i} has no mask yet: run a forward pass first")
        masks.append(f.last_mask)
    return masks


def inject_policy(model: nn.Module, masks: Sequence[Tensor] | None) -> None:
    """Fix the masks ``(N*T, C, 3)`` of every fusion module (``None`` restores the model's own policy)."""
    modules = fusion_modules(model)
    if masks is None:
        for f in modules:
            f.injected = None
        return
    if len(masks) != len(modules):
        raise ValueError(f"got {len(masks)} masks for {len(modules)} fusion modules")
    for f, m in zip(modules, masks, strict=True):
        if m.shape[-1] != 3 or m.shape[1] != f.channels:
            raise ValueError(f"mask of shape {tuple(m.shape)} does not fit a fusion module of {f.channels} "
                             "channels (expected (N*T, C, 3))")
        f.injected = m


def set_decision(model: nn.Module, decision: str, seed: int | None = None) -> None:
    """Evaluation-time decision rule of every fusion module: ``argmax`` or seeded ``sample``.

    (``gumbel`` is what training always uses; it is accepted as an alias of ``sample``.)
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    for i, f in enumerate(fusion_modules(model)):
        f.decision = "sample" if decision == "gumbel" else decision
        if decision != "argmax" and seed is not None:
            device = next((b.device for b in f.buffers()), torch.device("cpu"))
            f.generator = torch.Generator(device=device).manual_seed(seed + i)


def _temporal_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules()
            if hasattr(m, "num_frames") and not isinstance(getattr(type(m), "num_frames", None), property)]


def set_num_frames(model: nn.Module, num_frames: int) -> None:
    """Set ``num_frames`` on every temporal module (fusion, shift, heads) of ``model``."""
    for m in _temporal_modules(model):
        m.num_frames = num_frames


_KEEP_INJECTED: Any = object()


@contextmanager
def policy_state(
    model: nn.Module,
    decision: str | None = None,
    seed: int | None = None,
    masks: Sequence[Tensor] | None = _KEEP_INJECTED,
    num_frames: int | None = None,
) -> Iterator[list[AdaptiveFusion]]:
    """Set the policy state of every fusion module of ``model`` for a ``with`` block; restore it on exit.

    ``decision``: ``argmax``/``sample`` (see :func:`set_decision`, ``seed`` seeds sampling); ``masks``:
    inject one ``(N*T, C, 3)`` mask per fusion module, or ``None`` to use the model's own policy (left as
    it is when not given); ``num_frames``: clip length of every temporal module. Arguments left at
    ``None`` change nothing. On exit the decision rules, samplers, injected masks, last masks, budget
    shifts (set inside the block with ``adafuse.inference.budget.set_budget_shift``) and ``num_frames`` are
    put back as they were, so read :func:`collect_masks` inside the block.
    Yields the fusion modules.
    """
    modules = fusion_modules(model)
    saved = [(f.decision, f.generator, f.injected, f.last_mask, f.budget_shift) for f in modules]
    frames = [(m, m.num_frames) for m in _temporal_modules(model)]
    try:
        if decision is not None:
            set_decision(model, decision, seed)
        if masks is not _KEEP_INJECTED:
            inject_policy(model, masks)
        if num_frames is not None:
            set_num_frames(model, num_frames)
        yield modules
    finally:
        for f, (dec, gen, injected, last_mask, shift) in zip(modules, saved, strict=True):
            f.decision, f.generator, f.injected, f.last_mask, f.budget_shift = dec, gen, injected, last_mask, shift
        for m, n in frames:
            m.num_frames = n
