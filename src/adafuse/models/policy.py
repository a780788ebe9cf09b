"""Policy helpers shared by every backbone family: the quota rule for hidden sizes and the factory that
gives each gated block its :class:`AdaptiveFusion`.

A backbone takes a :data:`FusionFactory` ``(C_in, C, stage) -> AdaptiveFusion | None`` and calls it once per
gated block, in forward order; :class:`PolicyFactory` is the learned-policy one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from adafuse.models.fusion import ACTIONS, DEFAULT_TAU, AdaptiveFusion, PolicyNet

# Builds the fusion module of one block from (block input channels C_in, gated channels C, stage index).
FusionFactory = Callable[[int, int, int], AdaptiveFusion | None]

# With the quota rule, H = floor(POLICY_QUOTA / C) and the Linear layers are shared between blocks with the
# same (2*C_in, 3*C); this reproduces the released ResNet-50 parameter counts (docs/paper-and-code.md).
POLICY_QUOTA = 196608


def quota_hidden(channels: int, quota: int = POLICY_QUOTA) -> int:
    """Hidden width of the quota rule for a gate over ``channels`` channels."""
    return quota // channels


class PolicyFactory:
    """Makes the fusion module of each gated block (a :data:`FusionFactory`).

    ``hidden=None`` uses the quota rule with Linear layers shared by shape; an int gives every block
    its own MLP of that width. ``stages`` restricts gating to some stages (TSM+Last: ``(4,)``).
    """

    def __init__(
        self,
        hidden: int | None,
        share: bool | None = None,
        stages: Sequence[int] = (1, 2, 3, 4),
        actions: Sequence[str] = ACTIONS,
        use_history: bool = True,
        num_frames: int = 8,
        tau: float = DEFAULT_TAU,
    ) -> None:
        self.hidden, self.stages, self.actions = hidden, tuple(stages), tuple(actions)
        self.share = hidden is None if share is None else share
        self.use_history, self.num_frames, self.tau = use_history, num_frames, tau
        self._shared: dict[tuple[int, int], tuple[nn.Linear, nn.Linear]] = {}

    def __call__(self, in_channels: int, channels: int, stage: int) -> AdaptiveFusion | None:
        if stage not in self.stages:
            return None
        hidden = self.hidden if self.hidden is not None else quota_hidden(channels)
        fc0 = fc1 = None
        if self.share:
            key = (in_channels, channels)
            if key in self._shared:
                fc0, fc1 = self._shared[key]
        policy = PolicyNet(in_channels, channels, hidden, len(self.actions), self.use_history, fc0, fc1)
        if self.share:
            self._shared.setdefault((in_channels, channels), (policy.fc0, policy.fc1))
        return AdaptiveFusion(policy, channels, self.actions, self.num_frames, self.tau)


def fixed_rule_factory(make_policy: Callable[[int, int], nn.Module], actions: Sequence[str], num_frames: int,
                       tau: float = DEFAULT_TAU) -> FusionFactory:
    """A :data:`FusionFactory` gating every block with ``make_policy(C_in, C)`` (a fixed-rule or custom
    policy module, see :meth:`AdaptiveFusion.decide`) over ``actions``."""

    def factory(in_channels: int, channels: int, stage: int) -> AdaptiveFusion:
        return AdaptiveFusion(make_policy(in_channels, channels), channels, actions, num_frames, tau)

    return factory
