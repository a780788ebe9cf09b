"""The `adafuse` command: thin verbs over library functions.

Each verb lives in its own module ``adafuse.cli.<verb>`` exposing ``register(subparsers)``; heavy imports
happen inside the command functions so that ``adafuse --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb module -> one-line help (the order is the order of `adafuse --help`)
VERB_MODULES = (
    "models_cmd",  # models, flops
    "data_cmd",  # data prepare|extract|check|synth
    "train_cmd",  # train, eval, demo
    "budget_cmd",  # calibrate (compute budgets)
    "report_cmd",  # report
    "predict_cmd",  # predict, export
    "convert_cmd",  # convert (released checkpoints)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adafuse",
        description="AdaFuse: adaptive temporal fusion for efficient video action recognition.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in VERB_MODULES:
        module = importlib.import_module(f"adafuse.cli.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides after an option (e.g. `train cfg.yaml --print-config optim.lr=0.1`)
        target = getattr(args, "accepts_overrides", None)
        if target is None or any("=" not in x or x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        setattr(args, target, [*getattr(args, target), *extra])
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
