"""BN-Inception (Ioffe & Szegedy, 2015) as used by TSN/TSM, with one AdaFuse gate per inception module.

Layout (224 px input)::

    conv1_7x7_s2(64) -> maxpool -> conv2_3x3_reduce(64) -> conv2_3x3(192) -> maxpool     (N*T, 192, 28, 28)
    inception 3a 3b 3c  (28 -> 14)  4a 4b 4c 4d 4e  (14 -> 7)  5a 5b                      (N*T, 1024, 7, 7)
    global average pool                                                                   (N*T, 1024)

Every conv has a bias and is followed by an affine BatchNorm (eps 1e-5) and a ReLU. Inputs are BGR in
0-255 minus the mean (104, 117, 128), std 1 (see :data:`BNINCEPTION_INPUT`).

Parameter names. The layers of an inception module ``inception_3a`` are its children named like the
suffixes of the widely used PyTorch port (pretrainedmodels ``bninception``, TSN's ``tf_model_zoo``):
``inception_3a.1x1``, ``inception_3a.1x1_bn``, ``inception_3a.3x3_reduce``, ..., ``inception_3a.pool_proj_bn``;
the stem layers keep the port's names (``conv1_7x7_s2``, ``conv1_7x7_s2_bn``, ...). A state-dict file of
that port (keys ``inception_3a_1x1.weight``, ...) loads directly: a load-state-dict pre-hook of
:class:`BNInception` turns ``inception_3a_1x1.*`` into ``inception_3a.1x1.*`` and squeezes the ``(1, C)``
BatchNorm tensors some copies of the file carry. Its classifier (``last_linear``/``fc``) is not part of the
backbone.

AdaFuse (paper Sec. 3.3, Fig. 1c): module ``m`` gates its concatenated output ``y`` ``(N*T, C_out, H, W)``
with its own input ``x`` ``(N*T, C_in, H, W)`` as the policy input; history ``h[t] = y[t-1]``. The fused
output feeds the next module. For the FLOPs engine, the channels of ``y`` are *produced* by the last conv
of each branch (a pool-only branch produces its channels for free) and *consumed* by the first conv of
each branch of the next module (a pooling before ``pool_proj`` works channel by channel, so ``pool_proj``
reads channel ``c`` only); after ``inception_5b`` only the classifier reads them (a fixed cost).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adafuse.models.fusion import ACTIONS, DEFAULT_TAU, AdaptiveFusion, GatedLayers
from adafuse.models.policy import FusionFactory, PolicyFactory
from adafuse.models.recognizer import InputSpec, VideoRecognizer
from adafuse.models.registry import register_model
from adafuse.pixels import BNINCEPTION_MEAN, BNINCEPTION_STD

BNINCEPTION_INPUT = InputSpec(mean=BNINCEPTION_MEAN, std=BNINCEPTION_STD, bgr=True, value_range=255.0, size=224)
BNINCEPTION_POLICY_HIDDEN = 128  # H = 128, unshared -> +4.05M params (docs/paper-and-code.md)
BN_EPS = 1e-5


@dataclass(frozen=True)
class Conv:
    """One ``conv -> BN -> ReLU`` unit of a branch; ``name`` is the port's layer suffix (``3x3_reduce``)."""

    name: str
    out_channels: int
    kernel: int = 1
    stride: int = 1


@dataclass(frozen=True)
class Pool:
    """A pooling layer of a branch (3x3 window). Stride 1 pools are padded by 1 (size kept)."""

    kind: str  # "avg" | "max"
    stride: int = 1


Branch = tuple[Conv | Pool, ...]


def _standard(c1: int, c3r: int, c3: int, cd_r: int, cd: int, pool: str, proj: int) -> tuple[Branch, ...]:
    """Four-branch module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | pool -> 1x1."""
    return (
        (Conv("1x1", c1),),
        (Conv("3x3_reduce", c3r), Conv("3x3", c3, 3)),
        (Conv("double_3x3_reduce", cd_r), Conv("double_3x3_1", cd, 3), Conv("double_3x3_2", cd, 3)),
        (Pool(pool), Conv("pool_proj", proj)),
    )


def _reduction(c3r: int, c3: int, cd_r: int, cd: int) -> tuple[Branch, ...]:
    """Grid-reduction module (stride 2): 1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | maxpool/2 (passes channels)."""
    return (
        (Conv("3x3_reduce", c3r), Conv("3x3", c3, 3, 2)),
        (Conv("double_3x3_reduce", cd_r), Conv("double_3x3_1", cd, 3), Conv("double_3x3_2", cd, 3, 2)),
        (Pool("max", 2),),
    )


# name -> (input channels, branches). Output channels are the sum over branches.
INCEPTION_MODULES: dict[str, tuple[int, tuple[Branch, ...]]] = {
    "3a": (192, _standard(64, 64, 64, 64, 96, "avg", 32)),  # -> 256
    "3b": (256, _standard(64, 64, 96, 64, 96, "avg", 64)),  # -> 320
    "3c": (320, _reduction(128, 160, 64, 96)),  # -> 576
    "4a": (576, _standard(224, 64, 96, 96, 128, "avg", 128)),  # -> 576
    "4b": (576, _standard(192, 96, 128, 96, 128, "avg", 128)),  # -> 576
    "4c": (576, _standard(160, 128, 160, 128, 160, "avg", 128)),  # -> 608
    "4d": (608, _standard(96, 128, 192, 160, 192, "avg", 128)),  # -> 608
    "4e": (608, _reduction(128, 192, 192, 256)),  # -> 1056
    "5a": (1056, _standard(352, 192, 320, 160, 224, "avg", 128)),  # -> 1024
    "5b": (1024, _standard(352, 192, 320, 192, 224, "max", 128)),  # -> 1024
}


def branch_out_channels(in_channels: int, branch: Branch) -> int:
    """Channels a branch contributes to the concatenation (a pool-only branch passes its input through)."""
    convs = [layer for layer in branch if isinstance(layer, Conv)]
    return convs[-1].out_channels if convs else in_channels


def module_out_channels(in_channels: int, branches: Sequence[Branch]) -> int:
    return sum(branch_out_channels(in_channels, b) for b in branches)


class InceptionModule(nn.Module):
    """Parallel branches concatenated on channels, optionally gated by an :class:`AdaptiveFusion`.

    ``x`` ``(N*T, C_in, H, W)`` -> ``y`` ``(N*T, C_out, H', W')``; with ``fusion``, ``y`` is fused with its
    previous frame under the policy computed from ``x``.

    Layers are children named by the port's suffixes (``1x1``, ``1x1_bn``, ``pool``, ``pool_proj``...).
    The first convs of the *next* module (the consumers of the gated output, for the FLOPs engine) are kept
    in a plain tuple attribute, set by the backbone with :meth:`set_consumers`; a plain attribute is not
    registered as a submodule, so the state dict holds every tensor exactly once.
    """

    def __init__(self, in_channels: int, branches: Sequence[Branch], fusion: AdaptiveFusion | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = module_out_channels(in_channels, branches)
        self.branches: tuple[tuple[str, ...], ...] = tuple(self._build_branch(b) for b in branches)
        self.fusion = fusion
        self._consumers: tuple[nn.Conv2d, ...] = ()

    def _build_branch(self, branch: Branch) -> tuple[str, ...]:
        """Registers the layers of one branch and returns their names in forward order."""
        names = []
        channels = self.in_channels
        for layer in branch:
            if isinstance(layer, Pool):
                pad = 1 if layer.stride == 1 else 0
                if layer.kind == "avg":
                    pool: nn.Module = nn.AvgPool2d(3, layer.stride, pad, ceil_mode=True, count_include_pad=True)
                else:
                    pool = nn.MaxPool2d(3, layer.stride, pad, ceil_mode=True)
                self.add_module("pool", pool)
                names.append("pool")
            else:
                self.add_module(layer.name, nn.Conv2d(channels, layer.out_channels, layer.kernel, layer.stride,
                                                      padding=layer.kernel // 2))
                self.add_module(f"{layer.name}_bn", nn.BatchNorm2d(layer.out_channels, eps=BN_EPS))
                names.append(layer.name)
                channels = layer.out_channels
        return tuple(names)

    def _run_branch(self, names: tuple[str, ...], x: Tensor) -> Tensor:
        for name in names:
            x = self._modules[name](x)
            if name != "pool":
                x = F.relu(self._modules[f"{name}_bn"](x), inplace=True)
        return x

    def forward(self, x: Tensor) -> Tensor:
        outs = [self._run_branch(names, x) for names in self.branches]
        sizes = {tuple(int(s) for s in o.shape[2:]) for o in outs}
        if len(sizes) > 1:
            raise ValueError(f"inception branches give different spatial sizes {sorted(sizes)} for an input of "
                             f"{tuple(x.shape[2:])}; BN-Inception needs an input side such as 64, 96, 128, 160, "
                             "192 or 224")
        y = torch.cat(outs, dim=1)
        if self.fusion is not None:
            y = self.fusion(x, y)
        return y

    def producer_convs(self) -> list[nn.Conv2d]:
        """The last conv of each branch: the convs whose outputs are concatenated into ``y``."""
        return [self._modules[names[-1]] for names in self.branches if names[-1] != "pool"]

    def input_convs(self) -> list[nn.Conv2d]:
        """The first conv of each branch: the layers that read this module's input channel by channel."""
        convs = []
        for names in self.branches:
            first = next((n for n in names if n != "pool"), None)
            if first is not None:
                convs.append(self._modules[first])
        return convs

    def set_consumers(self, consumers: Sequence[nn.Conv2d]) -> None:
        """Layers outside this module that read its (gated) output; not registered as submodules."""
        self._consumers = tuple(consumers)

    def fusion_cost_layers(self) -> GatedLayers:
        """Producers and consumers of the gated output (see the module docstring)."""
        return GatedLayers(list(self.producer_convs()), list(self._consumers))


class BNInception(nn.Module):
    """BN-Inception trunk without classifier: ``(N*T, 3, H, W)`` -> pooled features ``(N*T, 1024)``.

    ``fusion_factory(C_in, C_out, stage)`` gives each inception module its fusion module (or ``None``);
    ``stage`` is 3, 4 or 5.
    """

    feature_dim = 1024

    def __init__(self, fusion_factory: FusionFactory | None = None) -> None:
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(3, 64, 7, 2, 3)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(64, eps=BN_EPS)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2_3x3_reduce = nn.Conv2d(64, 64, 1)
        self.conv2_3x3_reduce_bn = nn.BatchNorm2d(64, eps=BN_EPS)
        self.conv2_3x3 = nn.Conv2d(64, 192, 3, 1, 1)
        self.conv2_3x3_bn = nn.BatchNorm2d(192, eps=BN_EPS)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.module_names = tuple(f"inception_{name}" for name in INCEPTION_MODULES)
        for name, (in_channels, branches) in INCEPTION_MODULES.items():
            out_channels = module_out_channels(in_channels, branches)
            fusion = fusion_factory(in_channels, out_channels, int(name[0])) if fusion_factory else None
            self.add_module(f"inception_{name}", InceptionModule(in_channels, branches, fusion))
        self.global_pool = nn.AdaptiveAvgPool2d(1)

        modules = list(self.inception_modules())
        for module, following in zip(modules, modules[1:], strict=False):
            module.set_consumers(following.input_convs())
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.register_load_state_dict_pre_hook(_port_keys_pre_hook)

    @staticmethod
    def convert_pretrained_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
        """The port's ImageNet state dict with our key names (:func:`convert_port_state_dict`); for loaders
        that match keys before calling ``load_state_dict``."""
        return convert_port_state_dict(state_dict)

    def inception_modules(self) -> Iterator[InceptionModule]:
        for name in self.module_names:
            yield self._modules[name]

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1_3x3_s2(F.relu(self.conv1_7x7_s2_bn(self.conv1_7x7_s2(x)), inplace=True))
        x = F.relu(self.conv2_3x3_reduce_bn(self.conv2_3x3_reduce(x)), inplace=True)
        x = self.pool2_3x3_s2(F.relu(self.conv2_3x3_bn(self.conv2_3x3(x)), inplace=True))
        for module in self.inception_modules():
            x = module(x)
        return self.global_pool(x).flatten(1)


def _port_keys_pre_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook of :class:`BNInception`: accept the port's key names."""
    local = {k[len(prefix):]: state_dict.pop(k) for k in list(state_dict) if k.startswith(prefix)}
    state_dict.update({prefix + k: v for k, v in convert_port_state_dict(local).items()})


def convert_port_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Keys of the pretrainedmodels/TSN BN-Inception port -> ours; other keys pass unchanged.

    ``inception_3a_1x1.weight`` -> ``inception_3a.1x1.weight``; BatchNorm tensors stored as ``(1, C)`` (as
    in some copies of the TSN file) are squeezed to ``(C,)``. The port's classifier keys (``last_linear.*``
    or ``fc.*``) are kept as they are: they are not backbone keys, so drop them before a strict load.
    """
    module_names = [f"inception_{name}" for name in INCEPTION_MODULES]
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        head = key.split(".", 1)[0]
        for name in module_names:
            if head.startswith(name + "_"):
                key = f"{name}.{key[len(name) + 1:]}"
                break
        if isinstance(value, Tensor) and value.dim() == 2 and value.shape[0] == 1 and "_bn." in key:
            value = value.squeeze(0)
        out[key] = value
    return out


def bninception_recognizer(num_classes: int, num_frames: int, dropout: float,
                           fusion_factory: FusionFactory | None = None) -> VideoRecognizer:
    backbone = BNInception(fusion_factory)
    return VideoRecognizer(backbone, backbone.feature_dim, num_classes, num_frames, dropout,
                           input_spec=BNINCEPTION_INPUT)


@register_model("tsn_bninception")
def tsn_bninception(num_classes: int = 174, num_frames: int = 8, dropout: float = 0.5) -> VideoRecognizer:
    """TSN with BN-Inception: per-frame BN-Inception + Dropout + Linear, logits averaged over frames."""
    return bninception_recognizer(num_classes, num_frames, dropout)


@register_model("adafuse_tsn_bninception")
def adafuse_tsn_bninception(
    num_classes: int = 174,
    num_frames: int = 8,
    dropout: float = 0.5,
    policy_hidden: int | None = None,
    actions: Sequence[str] = ACTIONS,
    use_history: bool = True,
    tau: float = DEFAULT_TAU,
) -> VideoRecognizer:
    """AdaFuse-TSN on BN-Inception: one policy per inception module gating its concatenated output.

    ``policy_hidden``: hidden width of every policy MLP (default 128, unshared; docs/paper-and-code.md).
    """
    hidden = BNINCEPTION_POLICY_HIDDEN if policy_hidden is None else policy_hidden
    factory = PolicyFactory(hidden, share=False, stages=(3, 4, 5), actions=actions, use_history=use_history,
                            num_frames=num_frames, tau=tau)
    return bninception_recognizer(num_classes, num_frames, dropout, factory)
