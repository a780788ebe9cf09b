"""``adafuse models`` (every registered model with its size and cost) and ``adafuse flops ARCH`` (one model).

Costs follow the paper's convention (thop 0.0.31: conv = multiply-accumulates, Linear = 2 x MACs,
BN = 2 x elements); see :mod:`adafuse.flops`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

CONVENTION = """
GFLOPs follow the paper's tables (thop 0.0.31 rules): conv = multiply-accumulates,
Linear = 2 x MACs, BatchNorm = 2 x elements, ReLU / max-pool / dropout free,
average pool = window + 1 per output element ("exact" convention).
  static = every gated channel computed (policy all keep; policy MLPs included)
  floor  = every gated channel skipped (the fixed part of the cost)
  released = the dense count of the authors' released code (thop 0.0.31 charges a
             fixed-window average pool 1 op per output element; differs for BN-Inception)
A learned policy costs between static and floor: see `adafuse eval` / `adafuse report`."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list registered models with parameters and GFLOPs per video",
        description="List every registered model with its parameter count and its static and floor GFLOPs "
                    "per video.\n" + CONVENTION,
        epilog="example:\n  adafuse models --num-classes 27 --json > models.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p)
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser(
        "flops",
        help="parameters and GFLOPs per video of one model",
        description="Parameters and GFLOPs per video of one registered model.\n" + CONVENTION,
        epilog="examples:\n  adafuse flops adafuse_tsn_r50\n  adafuse flops adafuse_tsm_last_r50 --policy-hidden 2048 "
               "--json\n  adafuse flops adafuse_tsn_r18 --blocks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("arch", metavar="ARCH", help="registered model name (see `adafuse models`)")
    _add_common(p)
    p.add_argument("--policy-hidden", type=int, default=None, metavar="H",
                   help="hidden width of the policy MLPs (default: the paper's rule for this model)")
    p.add_argument("--blocks", action="store_true",
                   help="also print the per-frame cost of each gated block's producers (F1) and consumers (F2)")
    p.set_defaults(func=cmd_flops)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-classes", type=int, default=174, metavar="K",
                   help="classifier size (default: 174, Something-Something V1)")
    p.add_argument("--frames", type=int, default=8, metavar="T", help="frames per video (default: 8)")
    p.add_argument("--size", type=int, default=None, metavar="S",
                   help="frame side in pixels (default: the model's crop size, 224 for ResNet/BN-Inception)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _summary(arch: str, args: argparse.Namespace, policy_hidden: int | None = None) -> tuple[dict[str, Any], Any]:
    """``(cost_summary dict, StaticCost)`` of model ``arch`` built with the command's options."""
    from adafuse.flops import cost_summary, static_cost
    from adafuse.models import build_model

    model = build_model(arch, num_classes=args.num_classes, num_frames=args.frames, policy_hidden=policy_hidden)
    cost = static_cost(model, args.size)
    return cost_summary(arch, cost, args.num_classes), cost


def _row(s: dict[str, Any]) -> str:
    return (f"{s['arch']:<28} {s['params'] / 1e6:>10.3f} {s['gflops_per_video']:>14.2f} "
            f"{s['gflops_floor_per_video']:>14.2f} {s['gflops_per_video_released']:>14.2f} {s['size']:>5}")


HEADER = (f"{'model':<28} {'params (M)':>10} {'GFLOPs/video':>14} {'floor GFLOPs':>14} {'released':>14} "
          f"{'size':>5}\n{'':<28} {'':>10} {'(exact)':>14} {'(exact)':>14} {'(thop 0.0.31)':>14}")


def cmd_models(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from adafuse.models import MODEL_NAMES

    summaries, failures = [], []
    bar = tqdm(MODEL_NAMES, desc="counting", unit="model", file=sys.stderr, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        try:
            summaries.append(_summary(name, args)[0])
        except Exception as e:  # one broken model must not hide the others
            failures.append((name, f"{type(e).__name__}: {e}"))
    bar.close()
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print(f"{len(summaries)} models, {args.frames} frames per video, {args.num_classes} classes")
        print(HEADER)
        for s in summaries:
            print(_row(s))
    for name, err in failures:
        print(f"adafuse models: cannot count model {name!r}: {err}", file=sys.stderr)
    return 1 if failures else 0


def cmd_flops(args: argparse.Namespace) -> int:
    from adafuse.models import MODEL_NAMES

    if args.arch not in MODEL_NAMES:
        print(f"adafuse flops: unknown model {args.arch!r}; known models: {', '.join(MODEL_NAMES)}",
              file=sys.stderr)
        return 2
    try:
        summary, cost = _summary(args.arch, args, args.policy_hidden)
    except TypeError as err:  # e.g. --policy-hidden for a model without a policy network
        print(f"adafuse flops: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model        {summary['arch']}")
    print(f"params       {summary['params']:,} ({summary['params'] / 1e6:.3f} M)")
    print(f"input        {summary['frames']} frames x {summary['size']}x{summary['size']}, "
          f"{summary['num_classes']} classes")
    print(f"static       {cost.gflops_per_frame:.4f} GFLOPs/frame = {summary['gflops_per_video']:.2f} GFLOPs/video "
          "(exact convention)")
    print(f"floor        {cost.floor / 1e9:.4f} GFLOPs/frame = {summary['gflops_floor_per_video']:.2f} GFLOPs/video "
          f"(exact convention; every gated channel skipped)")
    print(f"released     {cost.released / 1e9:.4f} GFLOPs/frame = {summary['gflops_per_video_released']:.2f} "
          "GFLOPs/video (the released code's thop 0.0.31 count, dense)")
    print(f"gated blocks {len(cost.blocks)}")
    if cost.uncounted:
        print(f"not counted  {', '.join(cost.uncounted)} (no rule: 0 FLOPs)")
    if args.blocks and cost.blocks:
        print(f"\n{'block':<24} {'channels':>8} {'F1 GFLOPs/frame':>16} {'F2 GFLOPs/frame':>16}")
        for b in cost.blocks:
            print(f"{b.name:<24} {b.channels:>8} {b.f1 / 1e9:>16.4f} {b.f2 / 1e9:>16.4f}")
    return 0
