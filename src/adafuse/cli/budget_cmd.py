"""``adafuse calibrate``: find the policy shifts that reach compute budgets and store them in the checkpoint."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate compute budgets of a checkpoint (policy shifts, stored with the checkpoint)",
        description="For each budget F (GFLOPs per video as a fraction of the same model with every channel kept) "
                    "find by bisection the shift of the policy that spends it on calibration clips, and store "
                    "the shifts in the checkpoint; `adafuse eval/predict/export --budget F` then use them.",
        epilog="example:\n  adafuse calibrate --checkpoint best.pt --budgets 0.8 0.6 0.4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", "-c", required=True, metavar="CKPT", help="adafuse checkpoint file (.pt)")
    p.add_argument("--budgets", type=float, nargs="+", required=True, metavar="F", help="budgets in (floor, 1]")
    p.add_argument("--out", default=None, metavar="CKPT", help="write here instead of updating CKPT in place")
    p.add_argument("--calib-list", default=None, metavar="LIST",
                   help="list file of calibration clips (default: the checkpoint's training list)")
    p.add_argument("--calib-clips", type=int, default=32, metavar="N", help="clips sampled from it (default 32)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides for reading the clips (e.g. data.root=/data)")
    p.set_defaults(func=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from adafuse.config import ConfigError
    from adafuse.data.errors import DataError
    from adafuse.engine.budget_eval import calibrate_checkpoint

    try:
        cals = calibrate_checkpoint(args.checkpoint, args.budgets, args.out, args.calib_list, args.calib_clips,
                                    overrides=args.overrides)
    except (ConfigError, DataError, FileNotFoundError, ValueError, KeyError) as err:
        print(f"adafuse calibrate: error: {err}", file=sys.stderr)
        return 2
    for c in cals:
        print(f"budget {c.budget:.3f}: shift {c.shift:+.6g}  ({c.achieved:.4f} of all-keep on {c.num_clips} clips, "
              f"floor {c.floor:.3f}, own policy {c.natural:.3f})")
    print(f"stored in {args.out or args.checkpoint}")
    return 0
