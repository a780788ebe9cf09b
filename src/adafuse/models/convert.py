"""Converter of the authors' released AdaFuse checkpoints (docs/paper-and-code.md#released-checkpoints) into our models.

Released layout (facts of the released code; after the ``module.`` prefix of DataParallel is stripped):

- backbone under ``base_model.`` with torchvision ResNet names, except the shortcut: ``downsample0`` (conv)
  and ``downsample1`` (BN) instead of ``downsample.0`` / ``downsample.1``; ``base_model.fc`` holds a dropout
  (no tensors);
- per gated block ``<block>.policy_net.gate_fc0`` (Linear ``2*C_in -> H``), ``.gate_bn`` (BatchNorm1d ``H``),
  ``.gate_fc1`` (Linear ``H -> 3*C``);
- with shared policy layers (the quota rule) the same Linear tensors also appear under
  ``base_model.gate_fc0s.<key>`` / ``base_model.gate_fc1s.<key>``, ``<key> = "{2*C_in}_{3*C}"``;
- the classifier is ``new_fc``.

Gate output layout. The released gate views its ``3*C`` outputs as ``(N*T, C, 3)`` (channel-major: output
row ``c*3 + a``) with actions in the order (skip, reuse, keep) -- the mask's last column is "keep", the one
before it "reuse". Our :class:`PolicyNet` does ``.view(N*T, C, A)`` with the same order, so the mapping is the
identity. It lives in one place, :func:`released_gate_rows_to_ours` (``RELEASED_GATE_LAYOUT`` /
``RELEASED_ACTIONS``), should another release differ.

Architecture inference. Which blocks have a ``policy_net`` tells AdaFuse-TSM+Last (layer4 only) from the
others; TSN and TSM have identical weights (the shift has none), so for a policy in every block the variant
comes from ``arch=`` or, failing that, from the file name (the released files are ``sthv1_adatsn50.pth.tar``,
``sthv1_adatsm50.pth.tar``, ``sthv1_adatsm50last.pth.tar``: "tsm" + "last" -> tsm_last, "tsm" -> tsm,
"tsn" -> tsn). Depth comes from the blocks per stage, ``num_classes`` from ``new_fc``, the policy widths
from the ``gate_fc0`` shapes (quota widths with shared layers -> our default quota rule; one width for every
block, unshared -> ``policy_hidden``).

BN-Inception (AdaFuse-BN-Inception and plain TSN-BN-Inception). The backbone under ``base_model.`` carries
the names of the widely used PyTorch port (``conv1_7x7_s2``, ``inception_3a_1x1``, ``inception_3a_1x1_bn``,
...; ours: ``inception_3a.1x1``); the gate of inception module ``3a`` is ``base_model.policy_net_3a.gate_fc0``
/ ``.gate_bn`` / ``.gate_fc1`` (unshared, the same channel-major (skip, reuse, keep) layout), gating the
module's concatenated output; the classifier is ``new_fc``. A checkpoint with ``policy_net_*`` keys converts
to ``adafuse_tsn_bninception``, one without to ``tsn_bninception``.

Evaluation: the released code samples its Gumbel policy even at test time; our default is argmax. Use
``set_decision(model, "sample", seed)`` to mimic it (the exact draws cannot be replayed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from adafuse.models.fusion import ACTIONS, AdaptiveFusion, PolicyNet
from adafuse.models.policy import quota_hidden
from adafuse.models.pretrained import read_state_dict, unwrap_state_dict
from adafuse.models.recognizer import VideoRecognizer
from adafuse.models.registry import MODELS

RELEASED_ACTIONS = ACTIONS  # the released gates' action order is ours (skip, reuse, keep)
RELEASED_GATE_LAYOUT = "channel_major"  # fc1 output row = c * num_actions + a, i.e. .view(N*T, C, A)

RESNET_LAYOUTS = {  # (blocks per stage, bottleneck) -> our depth suffix
    ((2, 2, 2, 2), False): "r18",
    ((3, 4, 6, 3), False): "r34",
    ((3, 4, 6, 3), True): "r50",
    ((3, 4, 23, 3), True): "r101",
}
_BLOCK = re.compile(r"^base_model\.layer([1-4])\.(\d+)\.")
_SHARED = re.compile(r"^base_model\.gate_fc([01])s\.(\d+)_(\d+)\.(weight|bias)$")
_RENAMES = (
    (re.compile(r"\.downsample([01])\."), r".downsample.\1."),
    (re.compile(r"\.policy_net\.gate_fc0\."), ".fusion.policy.fc0."),
    (re.compile(r"\.policy_net\.gate_bn\."), ".fusion.policy.bn."),
    (re.compile(r"\.policy_net\.gate_fc1\."), ".fusion.policy.fc1."),
)


# ------------------------------------------------------------------------------------- gate output layout


def _gate_order(actions: tuple[str, ...]) -> list[int]:
    if sorted(actions) != sorted(ACTIONS):
        raise ValueError(f"released actions {actions} must be a permutation of {ACTIONS}")
    return [actions.index(name) for name in ACTIONS]


def released_gate_rows_to_ours(
    t: Tensor, channels: int, layout: str = RELEASED_GATE_LAYOUT, actions: tuple[str, ...] = RELEASED_ACTIONS
) -> Tensor:
    """Reorder the ``3*C`` output rows of a released ``gate_fc1`` weight ``(3C, H)`` or bias ``(3C,)`` into our
    layout (channel-major, actions (skip, reuse, keep)). ``layout``: ``channel_major`` (row ``c*3 + a``) or
    ``action_major`` (row ``a*C + c``). The released code is channel-major in our order: identity."""
    a = len(actions)
    rest = tuple(t.shape[1:])
    if layout == "channel_major":
        grid = t.reshape(channels, a, *rest)
    elif layout == "action_major":
        grid = t.reshape(a, channels, *rest).transpose(0, 1)
    else:
        raise ValueError(f"unknown gate layout {layout!r}; use 'channel_major' or 'action_major'")
    return grid[:, _gate_order(actions)].reshape(channels * a, *rest).contiguous()


def ours_gate_rows_to_released(
    t: Tensor, channels: int, layout: str = RELEASED_GATE_LAYOUT, actions: tuple[str, ...] = RELEASED_ACTIONS
) -> Tensor:
    """Inverse of :func:`released_gate_rows_to_ours`."""
    a = len(actions)
    rest = tuple(t.shape[1:])
    inverse = [ACTIONS.index(name) for name in actions]
    grid = t.reshape(channels, a, *rest)[:, inverse]
    if layout == "action_major":
        grid = grid.transpose(0, 1)
    elif layout != "channel_major":
        raise ValueError(f"unknown gate layout {layout!r}; use 'channel_major' or 'action_major'")
    return grid.reshape(channels * a, *rest).contiguous()


# ------------------------------------------------------------------------------------------- key mapping

_BNINC_GATE = re.compile(r"^base_model\.policy_net_(\w+?)\.gate_(fc0|bn|fc1)\.(.+)$")
_BNINC_MARKERS = ("base_model.conv1_7x7_s2.", "base_model.inception_3a_")


def is_released_bninception(sd: Mapping[str, Any]) -> bool:
    """True for a released BN-Inception state dict (``module.`` stripped): the port's stem/module names."""
    return any(key.startswith(_BNINC_MARKERS) for key in sd)


def released_bninception_key_to_ours(key: str, value: Tensor) -> tuple[str, Tensor] | None:
    """Our key (and value: the port's ``(1, C)`` BatchNorm tensors squeezed) for a released BN-Inception key;
    ``None`` if it has no place."""
    from adafuse.models.bninception import convert_port_state_dict

    if key.startswith("new_fc."):
        return "head.fc." + key[len("new_fc."):], value
    m = _BNINC_GATE.match(key)
    if m:
        module, layer, param = m.groups()
        return f"backbone.inception_{module}.fusion.policy.{layer}.{param}", value
    if not key.startswith("base_model."):
        return None
    ((rest, value),) = convert_port_state_dict({key[len("base_model."):]: value}).items()
    return "backbone." + rest, value


def released_key_to_ours(key: str) -> str | None:
    """Our state-dict key for a released key (``module.`` already stripped); ``None`` if it has no place."""
    if key.startswith("new_fc."):
        return "head.fc." + key[len("new_fc."):]
    if not key.startswith("base_model."):
        return None
    rest = "." + key[len("base_model."):]
    for pattern, replacement in _RENAMES:
        rest = pattern.sub(replacement, rest)
    return "backbone" + rest


def _policy_modules(model: nn.Module) -> dict[str, PolicyNet]:
    """``"<fusion module name>.policy"`` -> its PolicyNet, for every learned fusion module."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, AdaptiveFusion):
            if not isinstance(m.policy, PolicyNet):
                raise ValueError(f"{name} has a {type(m.policy).__name__} policy; released checkpoints carry "
                                 "PolicyNet gates only")
            out[f"{name}.policy"] = m.policy
    return out


def _listing(keys: list[str], limit: int = 20) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def convert_state_dict(sd: Mapping[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """Released state dict (``module.`` prefixes allowed, or wrapped in ``{"state_dict": ...}``) -> a state dict
    for ``model`` (one of our AdaFuse ResNets built with the matching configuration).

    Every key of ``model.state_dict()`` is filled (``num_batches_tracked`` from the model when the file has
    none); raises ``ValueError`` listing released keys without a place, model keys without a source, shape
    mismatches (both names and shapes), and shared-layer copies that disagree.
    """
    source = unwrap_state_dict(sd, "released checkpoint")
    target = model.state_dict()
    policies = _policy_modules(model)
    bninception = is_released_bninception(source)
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    shared: dict[tuple[str, str, str], tuple[str, Tensor]] = {}
    unexpected = []
    for key, value in source.items():
        m = _SHARED.match(key)
        if m:
            fc, in_dim, out_dim, param = m.groups()
            shared[(fc, f"{in_dim}_{out_dim}", param)] = (key, value)
            continue
        if bninception:
            mapped = released_bninception_key_to_ours(key, value)
            new, value = mapped if mapped is not None else (None, value)
        else:
            new = released_key_to_ours(key)
        if new is None or new not in target:
            unexpected.append(key)
            continue
        if new.endswith((".policy.fc1.weight", ".policy.fc1.bias")):
            value = released_gate_rows_to_ours(value, policies[new.rsplit(".", 2)[0]].channels)
        out[new], origin[new] = value, key

    # Shared Linear layers: every block using the key must hold the same tensors (or take them from here).
    for (fc, gate_key, param), (key, value) in shared.items():
        users = [name for name, p in policies.items()
                 if f"{p.fc0.in_features}_{p.fc1.out_features}" == gate_key]
        if not users:
            unexpected.append(key)
            continue
        for name in users:
            new = f"{name}.fc{fc}.{param}"
            converted = released_gate_rows_to_ours(value, policies[name].channels) if fc == "1" else value
            if new in out and not torch.equal(out[new], converted):
                raise ValueError(f"released checkpoint: {origin[new]} differs from the shared {key}")
            out.setdefault(new, converted)
            origin.setdefault(new, key)

    if unexpected:
        raise ValueError(f"released checkpoint: {len(unexpected)} keys have no place in {type(model).__name__} "
                         f"{getattr(model, 'arch', '')}: {_listing(sorted(unexpected))}")
    missing = []
    for key, value in target.items():
        if key not in out:
            if key.endswith("num_batches_tracked"):
                out[key] = value.clone()
            else:
                missing.append(key)
    if missing:
        raise ValueError(f"released checkpoint lacks {len(missing)} tensors of {getattr(model, 'arch', 'the model')}: "
                         f"{_listing(missing)}")
    for key, value in out.items():
        if value.shape != target[key].shape:
            raise ValueError(f"shape mismatch: released {origin.get(key, key)} has {tuple(value.shape)}, "
                             f"our {key} expects {tuple(target[key].shape)}")

    # Parameters our model shares (quota rule) appear under several keys: their sources must agree.
    groups: dict[int, list[str]] = {}
    for key, value in target.items():
        if value.numel():
            groups.setdefault(value.data_ptr(), []).append(key)
    for keys in groups.values():
        first = keys[0]
        for other in keys[1:]:
            if target[other].shape == target[first].shape and not torch.equal(out[other], out[first]):
                raise ValueError(f"our {first} and {other} are one shared tensor but the released checkpoint "
                                 f"gives different values ({origin.get(first)} vs {origin.get(other)})")
    return {key: out[key] for key in target}


# ----------------------------------------------------------------------------------- inference and driver


@dataclass
class ReleasedLayout:
    """What the weights of a released checkpoint say about its architecture."""

    depth: str  # "r18" | "r34" | "r50" | "r101"
    num_classes: int
    gated_blocks: list[str]  # "layer4.0", ...
    all_blocks: list[str]
    hidden: dict[str, int]  # gated block -> gate width H
    channels: dict[str, int]  # gated block -> gated channels C (conv1 width)
    shared: bool

    @property
    def placement(self) -> str:
        """``all`` (TSN or TSM) or ``layer4`` (TSM+Last)."""
        if self.gated_blocks == self.all_blocks:
            return "all"
        if self.gated_blocks == [b for b in self.all_blocks if b.startswith("layer4.")]:
            return "layer4"
        raise ValueError(f"released checkpoint gates blocks {self.gated_blocks}: neither every block "
                         "(AdaFuse-TSN/TSM) nor layer4 only (AdaFuse-TSM+Last)")


def inspect_released(sd: Mapping[str, Any]) -> ReleasedLayout:
    """Read depth, classes, gated blocks and gate widths off a released state dict."""
    source = unwrap_state_dict(sd, "released checkpoint")
    if "new_fc.weight" not in source:
        raise ValueError("released checkpoint has no new_fc.weight (classifier); is it an AdaFuse TSN_Gate "
                         f"state dict? first keys: {_listing(sorted(source), 8)}")
    blocks: dict[tuple[int, int], bool] = {}
    bottleneck = False
    for key in source:
        m = _BLOCK.match(key)
        if m:
            blocks.setdefault((int(m.group(1)), int(m.group(2))), False)
            bottleneck |= ".conv3." in key
            if ".policy_net.gate_fc0.weight" in key:
                blocks[(int(m.group(1)), int(m.group(2)))] = True
    per_stage = tuple(sum(1 for s, _ in blocks if s == stage) for stage in (1, 2, 3, 4))
    depth = RESNET_LAYOUTS.get((per_stage, bottleneck))
    if depth is None:
        raise ValueError(f"released checkpoint has {per_stage} blocks per stage "
                         f"({'bottleneck' if bottleneck else 'basic'}); not a ResNet-18/34/50/101")
    names = [f"layer{s}.{i}" for s, i in sorted(blocks)]
    gated = [f"layer{s}.{i}" for s, i in sorted(blocks) if blocks[(s, i)]]
    if not gated:
        raise ValueError("released checkpoint has no policy_net in any block: not an AdaFuse model")
    hidden, channels = {}, {}
    for name in gated:
        fc0 = source[f"base_model.{name}.policy_net.gate_fc0.weight"]
        fc1 = source[f"base_model.{name}.policy_net.gate_fc1.weight"]
        conv1 = source[f"base_model.{name}.conv1.weight"]
        c, c_in = conv1.shape[:2]
        if fc0.shape[1] != 2 * c_in or fc1.shape[0] != len(RELEASED_ACTIONS) * c:
            raise ValueError(f"released gate of {name} maps {fc0.shape[1]} -> {fc1.shape[0]} features; expected "
                             f"{2 * c_in} (history: 2*C_in) -> {3 * c} (3 actions x C); other gate options of "
                             "the released code are not supported")
        hidden[name], channels[name] = int(fc0.shape[0]), int(c)
    shared = any(_SHARED.match(k) for k in source)
    return ReleasedLayout(depth, int(source["new_fc.weight"].shape[0]), gated, names, hidden, channels, shared)


def _variant_from_name(name: str) -> str | None:
    name = name.lower()
    if "tsm" in name and "tsn" not in name:
        return "tsm_last" if "last" in name else "tsm"
    if "tsn" in name and "tsm" not in name:
        return "tsn"
    return None


def _resolve_arch(layout: ReleasedLayout, arch: str | None, name_hint: str | None) -> str:
    placement = layout.placement
    if arch is None:
        if placement == "layer4":
            variant = "tsm_last"
        else:
            variant = _variant_from_name(name_hint or "")
            if variant is None or variant == "tsm_last":
                raise ValueError("TSN and TSM checkpoints have identical weights (the shift has none) and the file "
                                 f"name {name_hint!r} does not say which: pass arch='adafuse_tsn_{layout.depth}' "
                                 f"or arch='adafuse_tsm_{layout.depth}'")
        arch = f"adafuse_{variant}_{layout.depth}"
    if arch not in MODELS:
        raise KeyError(f"unknown model {arch!r}; known models: {', '.join(sorted(MODELS))}")
    m = re.fullmatch(r"adafuse_(tsn|tsm|tsm_last)_(r\d+)", arch)
    if m is None:
        raise ValueError(f"{arch!r} is not an AdaFuse ResNet; released checkpoints convert to adafuse_<tsn|tsm|"
                         "tsm_last>_r<depth>")
    variant, depth = m.groups()
    if depth != layout.depth:
        raise ValueError(f"arch {arch!r} is a ResNet-{depth[1:]} but the checkpoint is a ResNet-{layout.depth[1:]}")
    if (variant == "tsm_last") != (placement == "layer4"):
        where = "layer4 only" if placement == "layer4" else "every block"
        raise ValueError(f"arch {arch!r} does not match the checkpoint, which has a policy in {where}")
    return arch


def _policy_hidden(layout: ReleasedLayout, arch: str) -> int | None:
    widths = set(layout.hidden.values())
    quota = all(h == quota_hidden(layout.channels[b]) for b, h in layout.hidden.items())
    if layout.shared:
        if not (quota and layout.depth in ("r50", "r101") and "tsm_last" not in arch):
            raise ValueError(f"released gates are shared with widths {layout.hidden}; only the quota rule of "
                             "ResNet-50/101 TSN/TSM shares its layers in our models")
        return None
    if len(widths) != 1:
        raise ValueError(f"released gates are unshared with several widths {layout.hidden}; our models use one "
                         "width for unshared gates")
    return widths.pop()


@dataclass
class ConvertReport:
    """What :func:`convert_released_checkpoint` found and built."""

    source: str
    arch: str
    build_config: dict[str, Any]
    num_classes: int
    gated_blocks: list[str]
    policy_hidden: dict[str, int]
    shared_policy: bool
    tensors: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        widths = sorted(set(self.policy_hidden.values()))
        return (f"{self.source}: {self.arch}, {self.num_classes} classes, policy in {len(self.gated_blocks)} blocks "
                f"(widths {widths}, {'shared' if self.shared_policy else 'unshared'} Linear layers), "
                f"{self.tensors} tensors")


def _convert_bninception(
    sd: dict[str, Tensor], arch: str | None, num_frames: int, dropout: float, source: str
) -> tuple[VideoRecognizer, ConvertReport]:
    """The BN-Inception branch of :func:`convert_released_checkpoint`."""
    from adafuse.models.bninception import BNINCEPTION_POLICY_HIDDEN, INCEPTION_MODULES, module_out_channels

    if "new_fc.weight" not in sd:
        raise ValueError("released BN-Inception checkpoint has no new_fc.weight (classifier); first keys: "
                         f"{_listing(sorted(sd), 8)}")
    found = {m.group(1) for k in sd if (m := _BNINC_GATE.match(k))}
    unknown = sorted(found - set(INCEPTION_MODULES))
    if unknown:
        raise ValueError(f"released checkpoint has gates for unknown inception modules {unknown}")
    gated = [name for name in INCEPTION_MODULES if name in found]
    inferred = "adafuse_tsn_bninception" if gated else "tsn_bninception"
    if arch is None:
        arch = inferred
    if arch not in MODELS:
        raise KeyError(f"unknown model {arch!r}; known models: {', '.join(sorted(MODELS))}")
    if arch != inferred:
        raise ValueError(f"arch {arch!r} does not match the checkpoint, a BN-Inception "
                         f"{'with a policy per inception module' if gated else 'without policy'} ({inferred})")
    if gated and gated != list(INCEPTION_MODULES):
        raise ValueError(f"released checkpoint gates inception modules {gated}; our AdaFuse-BN-Inception gates "
                         f"every one of {list(INCEPTION_MODULES)}")
    hidden: dict[str, int] = {}
    for name in gated:
        in_channels, branches = INCEPTION_MODULES[name]
        channels = module_out_channels(in_channels, branches)
        gate = f"base_model.policy_net_{name}"
        if f"{gate}.gate_fc0.weight" not in sd or f"{gate}.gate_fc1.weight" not in sd:
            raise ValueError(f"released checkpoint lacks {gate}.gate_fc0.weight or {gate}.gate_fc1.weight")
        fc0, fc1 = sd[f"{gate}.gate_fc0.weight"], sd[f"{gate}.gate_fc1.weight"]
        if fc0.shape[1] != 2 * in_channels or fc1.shape[0] != len(RELEASED_ACTIONS) * channels:
            raise ValueError(f"released gate of inception_{name} maps {fc0.shape[1]} -> {fc1.shape[0]} features; "
                             f"expected {2 * in_channels} (history: 2*C_in) -> {3 * channels} (3 actions x C)")
        hidden[f"inception_{name}"] = int(fc0.shape[0])
    widths = set(hidden.values())
    if len(widths) > 1:
        raise ValueError(f"released gates have several widths {hidden}; our models use one width")
    width = widths.pop() if widths else None
    kwargs: dict[str, Any] = {}
    if gated:
        kwargs["policy_hidden"] = None if width == BNINCEPTION_POLICY_HIDDEN else width
    num_classes = int(sd["new_fc.weight"].shape[0])
    model = MODELS[arch](num_classes=num_classes, num_frames=num_frames, dropout=dropout, **kwargs)
    model.arch = arch
    converted = convert_state_dict(sd, model)
    model.load_state_dict(converted, strict=True)
    model.eval()
    notes = ["input: BGR 0-255 minus (104, 117, 128), as the released BN-Inception (the checkpoint's "
             "input_spec says so)"]
    if gated:
        notes.insert(0, "the released code samples the Gumbel policy at evaluation; ours defaults to argmax "
                        "(set_decision(model, 'sample', seed) to sample)")
    report = ConvertReport(source, arch, dict(model.build_config), num_classes, [f"inception_{g}" for g in gated],
                           hidden, False, len(converted), notes)
    return model, report


def convert_released_checkpoint(
    src: str | os.PathLike | Mapping[str, Any],
    arch: str | None = None,
    num_frames: int = 8,
    dropout: float = 0.5,
    name_hint: str | None = None,
) -> tuple[VideoRecognizer, ConvertReport]:
    """Build our model from a released AdaFuse checkpoint (a file path or its loaded state dict).

    ``arch``: ``adafuse_tsn_r50`` / ``adafuse_tsm_r50`` / ``adafuse_tsm_last_r50`` (or another depth),
    ``adafuse_tsn_bninception`` / ``tsn_bninception``; ``None`` infers it (see the module docstring; TSN vs TSM
    needs ``arch`` or a file name / ``name_hint`` saying "tsn"/"tsm"). Returns the model (eval mode, weights
    loaded strictly) and a :class:`ConvertReport`.
    """
    if isinstance(src, Mapping):
        sd, source = unwrap_state_dict(src, "released checkpoint"), name_hint or "<state dict>"
    else:
        sd, source = read_state_dict(src), str(src)
        name_hint = name_hint or Path(src).name
    if is_released_bninception(sd):
        return _convert_bninception(sd, arch, num_frames, dropout, source)
    layout = inspect_released(sd)
    arch = _resolve_arch(layout, arch, name_hint)
    hidden = _policy_hidden(layout, arch)
    model = MODELS[arch](num_classes=layout.num_classes, num_frames=num_frames, dropout=dropout,
                         policy_hidden=hidden)
    model.arch = arch
    converted = convert_state_dict(sd, model)
    model.load_state_dict(converted, strict=True)
    model.eval()
    notes = ["the released code samples the Gumbel policy at evaluation; ours defaults to argmax "
             "(set_decision(model, 'sample', seed) to sample)"]
    if arch.startswith("adafuse_tsm"):
        notes.append("AdaFuse-TSM: the downsample shortcut sees the shifted input, as in the released code")
    report = ConvertReport(source, arch, dict(model.build_config), layout.num_classes, layout.gated_blocks,
                           layout.hidden, layout.shared, len(converted), notes)
    return model, report
