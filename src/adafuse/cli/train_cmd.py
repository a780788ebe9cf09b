"""`adafuse train`, `adafuse eval`, `adafuse demo`: thin verbs over :mod:`adafuse.engine`.

Exit codes: 0 ok; 2 bad config/arguments/data; 3 training diverged (NaN/inf; ``last.pt`` keeps the last
good state); 143 stopped by SIGTERM/SIGINT after saving ``last.pt`` (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import sys

EXIT_CONFIG, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 143


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model from a YAML config",
        description="Train from CONFIG.yaml; key=value arguments override options (e.g. optim.lr=0.01). "
                    "Resumes automatically from <run>/checkpoints/last.pt when it exists (run.resume=true). "
                    "Under `torchrun --nproc_per_node=N -m adafuse train ...` it runs data-parallel.")
    p.add_argument("config", help="YAML config file (see configs/defaults.yaml for every option)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=0.01")
    p.add_argument("--resume", metavar="CKPT", help="resume from this checkpoint instead of the run's last.pt")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "eval", help="evaluate a checkpoint (writes eval/predictions.jsonl and eval/metrics.json)",
        description="Evaluate on data.val_list. With --checkpoint alone the checkpoint's own config is used; a "
                    "CONFIG.yaml and key=value overrides change it (e.g. data.val_list=other.txt eval.num_clips=2). "
                    "Without --checkpoint: <run>/checkpoints/{eval.checkpoint}.pt of CONFIG's run.")
    e.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                   help="optional config file followed by overrides")
    e.add_argument("--checkpoint", "-c", metavar="CKPT", help="checkpoint file (.pt)")
    e.add_argument("--out", metavar="DIR", help="output directory (default: <run>/eval)")
    e.set_defaults(func=_eval)

    d = subparsers.add_parser(
        "demo", help="train TSN and AdaFuse on the embedded synthetic benchmark and compare them",
        description="Generates the synthetic time-reversal benchmark, trains TSN and AdaFuse-TSN on the same small "
                    "ResNet-18, evaluates both and writes a Table-6-style comparison (markdown, JSON, plot) into "
                    "the output directory.")
    d.add_argument("--quick", action="store_true", help="a smaller, shorter run (a few minutes) for smoke tests")
    d.add_argument("--ablation", action="store_true", help="also train Ada.Skip, Ada.Reuse, Random and TSM")
    d.add_argument("--seed", type=int, default=0, help="seed of data generation and training (default 0)")
    d.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    d.add_argument("--data", metavar="DIR", help="where the synthetic data lives (default: <out>/data; reused "
                                                 "when present)")
    d.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores left after one data-loading process)")
    d.add_argument("--recipe", default=None, help=argparse.SUPPRESS)  # full | quick | test (the test suite's)
    d.set_defaults(func=_demo)


def _split_items(items: list[str]) -> tuple[str | None, list[str]]:
    config = None
    overrides = []
    for i, item in enumerate(items):
        if "=" not in item and i == 0 and item.endswith((".yaml", ".yml")):
            config = item
        elif "=" in item:
            overrides.append(item)
        else:
            raise SystemExit(f"adafuse eval: {item!r} is neither a .yaml config (first) nor a key=value override")
    return config, overrides


def _errors() -> tuple[type[BaseException], ...]:
    from adafuse.config import ConfigError
    from adafuse.data.errors import DataError

    return (ConfigError, DataError, FileNotFoundError, ValueError, KeyError)


def _train(args: argparse.Namespace) -> int:
    from adafuse.config import load_config
    from adafuse.engine.trainer import TrainingDiverged, TrainingInterrupted, train

    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            print(cfg.to_yaml(), end="")
            return 0
        metrics = train(cfg, resume_from=args.resume)
    except TrainingDiverged as err:
        print(f"adafuse train: training diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as err:
        print(f"adafuse train: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _errors() as err:
        print(f"adafuse train: error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        from adafuse.engine.distributed import shutdown_distributed

        shutdown_distributed()
    if metrics:
        print(f"best val top1 {metrics.get('top1', float('nan')):.2f}%  top5 {metrics.get('top5', float('nan')):.2f}%"
              f"  GFLOPs/video {metrics.get('gflops_per_video', float('nan')):.4f}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from adafuse.engine.trainer import evaluate_checkpoint

    config, overrides = _split_items(args.items)
    if config is None and args.checkpoint is None:
        print("adafuse eval: give --checkpoint CKPT and/or a CONFIG.yaml", file=sys.stderr)
        return EXIT_CONFIG
    try:
        metrics = evaluate_checkpoint(args.checkpoint, config, overrides, args.out)
    except _errors() as err:
        print(f"adafuse eval: error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        from adafuse.engine.distributed import shutdown_distributed

        shutdown_distributed()
    print(f"top1 {metrics['top1']:.2f}%  top5 {metrics['top5']:.2f}%  GFLOPs/video {metrics['gflops_per_video']:.4f}"
          f"  ({metrics['num_videos']} videos)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from adafuse.engine.demo import run_demo
    from adafuse.engine.trainer import TrainingDiverged, TrainingInterrupted

    try:
        result = run_demo(out=args.out, seed=args.seed, quick=args.quick, ablation=args.ablation,
                          data_dir=args.data, threads=args.threads, recipe=args.recipe)
    except TrainingDiverged as err:
        print(f"adafuse demo: training diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as err:
        print(f"adafuse demo: {err} (rerun the same command to continue)", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result["table_markdown"])
    print(f"written to {result['out']}")
    return 0
