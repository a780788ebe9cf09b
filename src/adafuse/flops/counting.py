"""Static cost of a model: per-frame FLOPs counted with forward hooks, and its gated blocks' (F1, F2).

Convention of the paper's tables (thop 0.0.31 rules, docs/paper-and-code.md#flops), per leaf module call:

==========================================  =============================================================
Conv1d/2d/3d                                output elements x (C_in / groups x prod(kernel) [+1 if bias])
                                            i.e. multiply-accumulates
Linear                                      2 x MACs = 2 x in_features x output elements (bias not counted)
BatchNorm1d/2d/3d (also Group/Layer/        2 x input elements
Instance norm)
AvgPool / AdaptiveAvgPool                   (window size + 1) x output elements (adds + one divide, as thop)
LSTM / GRU / RNN (and their cells)          2 x MACs of the gate matmuls: per step, layer and direction
                                            gates x (input + hidden) x hidden (elementwise gate math free)
ReLU and other activations, max-pool,       0
dropout, identity, flatten, TSM shift
==========================================  =============================================================

Functional ops (``x.mean`` in the policy's GAP, the fusion's ``keep * y + reuse * h``, the residual
add, the consensus mean) are not modules and cost 0, as under thop. The adaptive average pool of a
ResNet trunk is counted ((49 + 1) x 2048 per frame for R50): that is what gives TSN-R50's 4.1102 G/frame.
A custom leaf module can state its own cost with a method ``flops(inputs, output) -> float`` (FLOPs of
that call, whole batch). Leaf modules without a rule count 0 and are listed in :attr:`StaticCost.uncounted`.

The released count (:attr:`StaticCost.released_total`). The authors' code counted its models with thop 0.0.31,
whose average pool (``AvgPool1d/2d/3d``) charges **1 op per output element** (adaptive pools: window + 1, as
above). Every other rule is the same. Their BN-Inception pools globally with a fixed 7x7 ``AvgPool2d`` where
ours uses ``AdaptiveAvgPool2d(1)`` (same values at 224 px), so that pool is charged 1 per output element in the
released count too. Result for TSN-BN-Inception: 16.35 GFLOPs/video released vs 16.41 here; ResNets and
EfficientNets count the same under both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from adafuse.models.fusion import AdaptiveFusion, fusion_modules, policy_state
from adafuse.models.recognizer import unwrap
from adafuse.models.temporal import TemporalShift

GIGA = 1e9

# Leaf modules that are free under the paper's convention.
ZERO_COST: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softmax, nn.LogSoftmax,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.Identity, nn.Flatten, nn.Unflatten, TemporalShift,
)


def _conv_flops(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    kernel = math.prod(m.weight.shape[2:])
    per_output = m.in_channels // m.groups * kernel + (1 if m.bias is not None else 0)
    return float(out.numel() * per_output)


def _linear_flops(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    return float(2 * m.in_features * out.numel())


def _norm_flops(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    return float(2 * inputs[0].numel())


def _avgpool_flops(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    kernel = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * (out.dim() - 2)
    return float((math.prod(kernel) + 1) * out.numel())


def _adaptive_avgpool_flops(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    in_spatial = inputs[0].shape[2:]
    out_spatial = out.shape[2:]
    window = math.prod(i // o for i, o in zip(in_spatial, out_spatial, strict=True))
    return float((window + 1) * out.numel())


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _rnn_flops(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    x = inputs[0]
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = x.data.shape[0]
    else:
        steps = x.numel() // m.input_size  # time steps x batch
    gates = _GATES[m.mode]
    proj = getattr(m, "proj_size", 0)
    recurrent = proj or m.hidden_size
    directions = 2 if m.bidirectional else 1
    macs = 0
    for layer in range(m.num_layers):
        layer_in = m.input_size if layer == 0 else recurrent * directions
        macs += gates * (layer_in + recurrent) * m.hidden_size + m.hidden_size * proj
    return float(2 * macs * directions * steps)


def _rnn_cell_flops(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    x = inputs[0]
    batch = x.shape[0] if x.dim() == 2 else 1
    gates = {nn.LSTMCell: 4, nn.GRUCell: 3, nn.RNNCell: 1}[type(m)]
    return float(2 * gates * (m.input_size + m.hidden_size) * m.hidden_size * batch)


RULES: dict[type[nn.Module], Callable[[nn.Module, tuple[Any, ...], Any], float]] = {
    nn.Conv1d: _conv_flops, nn.Conv2d: _conv_flops, nn.Conv3d: _conv_flops,
    nn.Linear: _linear_flops,
    nn.BatchNorm1d: _norm_flops, nn.BatchNorm2d: _norm_flops, nn.BatchNorm3d: _norm_flops,
    nn.GroupNorm: _norm_flops, nn.LayerNorm: _norm_flops,
    nn.InstanceNorm1d: _norm_flops, nn.InstanceNorm2d: _norm_flops, nn.InstanceNorm3d: _norm_flops,
    nn.AvgPool1d: _avgpool_flops, nn.AvgPool2d: _avgpool_flops, nn.AvgPool3d: _avgpool_flops,
    nn.AdaptiveAvgPool1d: _adaptive_avgpool_flops, nn.AdaptiveAvgPool2d: _adaptive_avgpool_flops,
    nn.AdaptiveAvgPool3d: _adaptive_avgpool_flops,
    nn.LSTM: _rnn_flops, nn.GRU: _rnn_flops, nn.RNN: _rnn_flops,
    nn.LSTMCell: _rnn_cell_flops, nn.GRUCell: _rnn_cell_flops, nn.RNNCell: _rnn_cell_flops,
}


def _released_pool_flops(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    return float(out.numel())


RELEASED_POOLS: tuple[type[nn.Module], ...] = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def _released_fixed_window_pools(model: nn.Module) -> set[int]:
    """Ids of modules the released code implements as a fixed-window ``AvgPool`` although ours are adaptive:
    the global pool of BN-Inception (``AvgPool2d(7)`` there)."""
    from adafuse.models.bninception import BNInception

    return {id(m.global_pool) for m in model.modules() if isinstance(m, BNInception)}


def _own_rule(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> float:
    return float(m.flops(inputs, out))


def _rule(m: nn.Module) -> Callable[[nn.Module, tuple[Any, ...], Any], float] | None:
    """The counting rule of a leaf module: its own ``flops(inputs, output) -> float`` method if it has
    one (the extension point for custom leaf modules), else the rule of its class or nearest base class."""
    if callable(getattr(m, "flops", None)):
        return _own_rule
    for cls in type(m).__mro__:
        if cls in RULES:
            return RULES[cls]
    return None


@dataclass(frozen=True)
class BlockCost:
    """Cost of one gated block, aligned with ``fusion_modules(model)``.

    ``f1``: per-frame FLOPs of the producers of the ``channels`` gated channels (all of them computed);
    ``f2``: per-frame FLOPs of the consumers reading the gated tensor (no channel skipped);
    ``producer_groups``: ``(channels, FLOPs)`` of each producer in channel order (their sum is ``f1``; a group
    of cost 0 holds channels passed through without a producer, e.g. BN-Inception's max-pool branch). Empty
    means one group ``(channels, f1)``. Only the released convention weighs groups separately.
    """

    name: str
    channels: int
    f1: float
    f2: float
    producer_groups: tuple[tuple[int, float], ...] = ()

    @property
    def groups(self) -> tuple[tuple[int, float], ...]:
        """``producer_groups``, or the single group ``((channels, f1),)``."""
        return self.producer_groups or ((self.channels, self.f1),)


@dataclass
class StaticCost:
    """Per-frame FLOPs of a model executed densely (every gated channel computed), paper convention.

    ``total``: FLOPs per frame of the whole network (policy MLPs and classifier included);
    ``floor``: FLOPs per frame with every gated channel skipped (``total - sum(f1 + f2)``);
    ``blocks``: one :class:`BlockCost` per fusion module, in forward order;
    ``params``: parameter count (shared tensors once); ``num_frames``/``size``: the clip the costs were
    counted on (costs are per frame and do not depend on ``num_frames``);
    ``by_type``: per-frame FLOPs per module class name; ``modules``: per-frame FLOPs per qualified
    module name; ``uncounted``: class names of leaf modules that ran but have no counting rule (cost 0);
    ``released_total``: FLOPs per frame as the authors' released code counts them (thop 0.0.31 average
    pools, see the module docstring); ``None`` = the same as ``total``.
    """

    total: float
    blocks: list[BlockCost]
    floor: float
    num_frames: int
    size: int
    params: int
    by_type: dict[str, float] = field(default_factory=dict)
    modules: dict[str, float] = field(default_factory=dict)
    uncounted: tuple[str, ...] = ()
    released_total: float | None = None

    @property
    def released(self) -> float:
        """Dense FLOPs per frame under the released count."""
        return self.total if self.released_total is None else self.released_total

    @property
    def released_floor(self) -> float:
        """FLOPs per frame with every gated channel skipped, released count (gated convs count the same)."""
        return self.floor + self.released - self.total

    @property
    def released_gflops_per_video(self) -> float:
        """Dense GFLOPs per video of ``num_frames`` frames, released count."""
        return self.released * self.num_frames / GIGA

    @property
    def gflops_per_frame(self) -> float:
        return self.total / GIGA

    @property
    def gflops_per_video(self) -> float:
        """Dense GFLOPs per video of ``num_frames`` frames."""
        return self.total * self.num_frames / GIGA

    @property
    def floor_gflops_per_video(self) -> float:
        """GFLOPs per video with every gated channel skipped (the fixed part of the cost)."""
        return self.floor * self.num_frames / GIGA


def count_params(model: nn.Module) -> int:
    """Number of parameters; a tensor shared by several modules counts once."""
    return sum(p.numel() for p in model.parameters())


def _fusion_owners(model: nn.Module) -> dict[int, tuple[str, nn.Module]]:
    """``id(fusion module) -> (qualified name, owning block)`` for blocks holding it as ``.fusion``."""
    owners = {}
    for name, m in model.named_modules():
        f = getattr(m, "fusion", None)
        if isinstance(f, AdaptiveFusion):
            owners[id(f)] = (name, m)
    return owners


def _short_name(name: str) -> str:
    return name.removeprefix("backbone.")


@torch.no_grad()
def _hooked_forward(
    module: nn.Module, inputs: tuple[Any, ...], released: dict[int, float] | None = None
) -> tuple[dict[int, float], list[str]]:
    """Runs ``module(*inputs)`` once with counting hooks on every leaf module. Returns FLOPs per module id
    (all calls of a module summed) and the class names of leaf modules that ran without a rule.
    ``released``: if given, filled with the released count's FLOPs of the modules where it differs."""
    costs: dict[int, float] = {}
    unknown: list[str] = []
    fixed_window = _released_fixed_window_pools(module) if released is not None else set()

    def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        rule = _rule(m)
        if rule is None:
            if not isinstance(m, ZERO_COST):
                unknown.append(type(m).__name__)
            return
        costs[id(m)] = costs.get(id(m), 0.0) + rule(m, args, out)
        if released is not None and (rule is not _own_rule and isinstance(m, RELEASED_POOLS)
                                     or id(m) in fixed_window):
            released[id(m)] = released.get(id(m), 0.0) + _released_pool_flops(m, args, out)

    handles = [m.register_forward_hook(hook) for m in module.modules() if next(m.children(), None) is None]
    try:
        module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return costs, unknown


def count_flops(module: nn.Module, *inputs: Any) -> float:
    """FLOPs (paper convention, whole batch) of one call ``module(*inputs)``, under ``torch.no_grad``."""
    costs, _ = _hooked_forward(module, inputs)
    return sum(costs.values())


def static_cost(model: nn.Module, size: int | None = None) -> StaticCost:
    """Count the per-frame FLOPs of ``model`` (a ``VideoRecognizer``) on ``size x size`` frames.

    Runs one clip ``(1, T, 3, size, size)`` (``T = model.num_frames``) in eval mode with the model's own
    argmax policy (the dense count does not depend on the decisions) and divides by ``T``. The model's
    train/eval mode, injected policies, last masks and decision rules are restored afterwards.
    ``size=None`` uses the model's crop size (``model.input_spec.size``, else 224). A DataParallel or
    DistributedDataParallel wrapper is looked through.

    Every block owning an ``AdaptiveFusion`` as attribute ``fusion`` must implement
    ``fusion_cost_layers() -> (producers, consumers)``: lists of modules (a container costs the sum of its
    leaves); ``F1``/``F2`` are their summed per-frame costs, and either list may be empty.
    """
    model = unwrap(model)
    if size is None:
        spec = getattr(model, "input_spec", None)
        size = int(getattr(spec, "size", 224))
    num_frames = int(getattr(model, "num_frames", 1))
    names = {id(m): name for name, m in model.named_modules()}
    fusions = fusion_modules(model)
    owners = _fusion_owners(model)
    block_layers = []
    for f in fusions:
        if id(f) not in owners:
            raise ValueError(f"fusion module {names[id(f)]!r} is not held as attribute 'fusion' by a block; "
                             "the FLOPs engine cannot find its producer/consumer layers")
        owner_name, owner = owners[id(f)]
        if not callable(getattr(owner, "fusion_cost_layers", None)):
            raise ValueError(f"block {owner_name!r} ({type(owner).__name__}) owns a fusion module but does not "
                             "implement fusion_cost_layers() -> (producers, consumers)")
        producers, consumers = owner.fusion_cost_layers()
        block_layers.append((owner_name, f, list(producers), list(consumers)))

    # The count must leave no trace: modes, the policy state (policy_state restores it) and the random
    # generators of sampling/random policies (global and private) are put back afterwards.
    generators = [g for m in model.modules() for g in vars(m).values() if isinstance(g, torch.Generator)]
    generator_states = [g.get_state() for g in generators]
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                policy_state(model, decision="argmax", masks=None):
            model.eval()
            clip = torch.zeros(1, num_frames, 3, size, size, device=device)
            released: dict[int, float] = {}
            costs, unknown = _hooked_forward(model, (clip,), released)
    finally:
        model.train(was_training)
        for g, state in zip(generators, generator_states, strict=True):
            g.set_state(state)

    total = sum(costs.values()) / num_frames
    released_total = (sum(costs.values()) + sum(released[i] - costs[i] for i in released)) / num_frames
    by_type: dict[str, float] = {}
    modules: dict[str, float] = {}
    for m in model.modules():
        if id(m) in costs:
            by_type[type(m).__name__] = by_type.get(type(m).__name__, 0.0) + costs[id(m)] / num_frames
            modules[names[id(m)]] = costs[id(m)] / num_frames

    def layers_cost(owner_name: str, role: str, layers: list[nn.Module]) -> float:
        out = 0.0  # an empty list is legitimate (e.g. the last gated module feeds only the pooling)
        for layer in layers:  # a container layer costs the sum of its leaves
            counted = [costs[id(sub)] for sub in layer.modules() if id(sub) in costs]
            if not counted:
                raise ValueError(f"block {owner_name!r}: {role[:-1]} {names.get(id(layer), type(layer).__name__)!r} "
                                 "did not run or has no counting rule")
            out += sum(counted) / num_frames
        return out

    def groups(owner_name: str, channels: int, producers: list[nn.Module]) -> tuple[tuple[int, float], ...]:
        """One ``(channels, FLOPs)`` group per producer (``out_channels``), pass-through channels last."""
        widths = [getattr(p, "out_channels", None) for p in producers]
        if len(producers) < 2 or any(not isinstance(w, int) for w in widths) or sum(widths) > channels:
            return ()
        out = tuple((w, layers_cost(owner_name, "producers", [p])) for w, p in zip(widths, producers, strict=True))
        return out + (((channels - sum(widths), 0.0),) if sum(widths) < channels else ())

    blocks = [
        BlockCost(_short_name(owner_name), int(f.channels), layers_cost(owner_name, "producers", producers),
                  layers_cost(owner_name, "consumers", consumers), groups(owner_name, int(f.channels), producers))
        for owner_name, f, producers, consumers in block_layers
    ]
    floor = total - sum(b.f1 + b.f2 for b in blocks)
    return StaticCost(total=total, blocks=blocks, floor=floor, num_frames=num_frames, size=size,
                      params=count_params(model), by_type=by_type, modules=modules,
                      uncounted=tuple(sorted(set(unknown))), released_total=released_total)


def cost_summary(arch: str, cost: StaticCost, num_classes: int) -> dict[str, Any]:
    """JSON-ready summary of a counted model: ``arch, params, gflops_per_video, gflops_floor_per_video,
    gflops_per_video_released, flops_convention, num_classes, frames, size`` (GFLOPs per video of
    ``cost.num_frames`` frames; ``flops_convention`` names the convention of the first two, ``exact``;
    ``gflops_per_video_released``: the dense count of the authors' released code, thop 0.0.31)."""
    return {
        "arch": arch,
        "params": cost.params,
        "gflops_per_video": cost.gflops_per_video,
        "gflops_floor_per_video": cost.floor_gflops_per_video,
        "gflops_per_video_released": cost.released_gflops_per_video,
        "flops_convention": "exact",
        "num_classes": num_classes,
        "frames": cost.num_frames,
        "size": cost.size,
    }

