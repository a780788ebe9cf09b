"""`adafuse train`, `adafuse eval`, `adafuse demo`: thin verbs over :mod:`adafuse.engine`.

Every expected failure is one line on stderr naming the file (and line) at fault, with the exit code of
:data:`EXIT_CODES_HELP` (also printed by ``--help``).
"""

from __future__ import annotations

import argparse
import sys

EXIT_FAILED, EXIT_CONFIG, EXIT_DIVERGED, EXIT_LOCKED, EXIT_PEER, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 143

EXIT_CODES_HELP = (
    "exit codes:\n"
    "  0    done\n"
    "  1    could not write an output (disk full, permissions; the message names the file)\n"
    "  2    bad input: config, override, list/classes file, video data, or checkpoint (one line naming the file)\n"
    "  3    training diverged or a checkpoint/evaluation is not finite (last.pt keeps the last good state)\n"
    "  4    the run directory is in use by another training (the message names its pid and host)\n"
    "  5    another process of a distributed run failed (its own error is printed by that process)\n"
    "  143  stopped by SIGTERM/SIGINT after saving last.pt (rerun the same command to resume)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model from a YAML config",
        description="Train from CONFIG.yaml; key=value arguments override options (e.g. optim.lr=0.01). "
                    "Resumes automatically from <run>/checkpoints/last.pt when it exists (run.resume=true). "
                    "Under `torchrun --nproc_per_node=N -m adafuse train ...` it runs data-parallel. The run directory "
                    "is locked while training; resuming with a config that differs in more than harmless keys "
                    "(epochs, logging, eval, data.num_workers/root/val_list) is refused unless --force-resume.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config file (see configs/defaults.yaml for every option)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=0.01")
    p.add_argument("--resume", metavar="CKPT", help="resume from this checkpoint instead of the run's last.pt")
    p.add_argument("--force-resume", action="store_true",
                   help="resume even though the config differs from the checkpoint's (the differences are logged)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_train, accepts_overrides="overrides")

    e = subparsers.add_parser(
        "eval", help="evaluate a checkpoint (writes eval/predictions.jsonl and eval/metrics.json)",
        description="Evaluate on data.val_list. With --checkpoint alone the checkpoint's own config is used; a "
                    "CONFIG.yaml and key=value overrides change it (e.g. data.val_list=other.txt eval.num_clips=2). "
                    "Without --checkpoint: <run>/checkpoints/{eval.checkpoint}.pt of CONFIG's run.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                   help="optional config file followed by overrides")
    e.add_argument("--checkpoint", "-c", metavar="CKPT", help="checkpoint file (.pt)")
    e.add_argument("--out", metavar="DIR", help="output directory (default: <run>/eval)")
    add_budget_arguments(e)
    e.add_argument("--budgets", type=float, nargs="+", metavar="F",
                   help="evaluate every budget F in one run and write <out>/budget_curve.json (accuracy vs GFLOPs)")
    e.add_argument("--sparse-timing", type=int, default=0, metavar="N",
                   help="also time the sparse executor on N validation clips at each budget (ms per clip)")
    e.set_defaults(func=_eval, accepts_overrides="items")

    d = subparsers.add_parser(
        "demo", help="train TSN and AdaFuse on the embedded synthetic benchmark and compare them",
        description="Generates the synthetic time-reversal benchmark, trains TSN and AdaFuse-TSN on the same small "
                    "ResNet-18, evaluates both and writes a Table-6-style comparison (markdown, JSON, plot) into "
                    "the output directory.")
    d.add_argument("--ablation", action="store_true", help="also train Ada.Skip, Ada.Reuse, Random and TSM")
    d.add_argument("--seed", type=int, default=0, help="seed of data generation and training (default 0)")
    d.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    d.add_argument("--data", metavar="DIR", help="where the synthetic data lives (default: <out>/data; reused "
                                                 "when present)")
    d.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores left after one data-loading process)")
    d.add_argument("--recipe", default=None, help=argparse.SUPPRESS)  # full | test (the test suite's)
    d.set_defaults(func=_demo)


def add_budget_arguments(p: argparse.ArgumentParser) -> None:
    """``--budget F`` / ``--shift S`` / ``--calib-list`` / ``--calib-clips`` (shared by eval, predict, export)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--budget", type=float, default=None, metavar="F",
                   help="compute budget: GFLOPs per video as a fraction of the model with every channel kept "
                        "(calibrated shift: stored in the checkpoint by `adafuse calibrate`, else calibrated now)")
    g.add_argument("--shift", type=float, default=None, metavar="S",
                   help="budget shift of the policy directly (>0 cheaper, <0 keeps more; 0 = the model's own)")
    p.add_argument("--calib-list", default=None, metavar="LIST",
                   help="list file of calibration clips for --budget (default: the checkpoint's training list)")
    p.add_argument("--calib-clips", type=int, default=32, metavar="N",
                   help="calibration clips sampled from that list (default 32)")


def _split_items(items: list[str]) -> tuple[str | None, list[str]]:
    config = None
    overrides = []
    for i, item in enumerate(items):
        if "=" not in item and i == 0 and item.endswith((".yaml", ".yml")):
            config = item
        elif "=" in item:
            overrides.append(item)
        else:
            print(f"adafuse eval: error: {item!r} is neither a .yaml config (first) nor a key=value override",
                  file=sys.stderr)
            raise SystemExit(EXIT_CONFIG)
    return config, overrides


def _bad_input() -> tuple[type[BaseException], ...]:
    from adafuse.config import ConfigError
    from adafuse.data.errors import DataError
    from adafuse.models.serialization import CheckpointError

    return (ConfigError, DataError, CheckpointError, FileNotFoundError, IsADirectoryError, UnicodeDecodeError,
            ValueError, KeyError)


def _run_engine(verb: str, fn, *args, **kwargs) -> tuple[int, object]:
    """Call ``fn``; map every expected failure to (exit code, None) after one line on stderr."""
    import torch.distributed as dist

    from adafuse.engine.checkpoint import CheckpointWriteError, RunDirLocked
    from adafuse.engine.distributed import shutdown_distributed
    from adafuse.engine.trainer import NonFiniteCheckpoint, PeerFailed, TrainingDiverged, TrainingInterrupted

    # (failure, exit code, message prefix), first match wins
    failures = ((TrainingDiverged, EXIT_DIVERGED, "training diverged: "),
                (NonFiniteCheckpoint, EXIT_DIVERGED, "error: "), (TrainingInterrupted, EXIT_INTERRUPTED, ""),
                (RunDirLocked, EXIT_LOCKED, "error: "), (PeerFailed, EXIT_PEER, ""),
                (CheckpointWriteError, EXIT_FAILED, "error: "))
    code, result = 0, None
    try:
        result = fn(*args, **kwargs)
    except tuple(kind for kind, _, _ in failures) as err:
        code, prefix = next((c, p) for kind, c, p in failures if isinstance(err, kind))
        print(f"adafuse {verb}: {prefix}{err}", file=sys.stderr)
    except _bad_input() as err:
        text = str(err) if not isinstance(err, KeyError) else f"missing key {err}"
        print(f"adafuse {verb}: error: {text}", file=sys.stderr)
        code = EXIT_CONFIG
    except dist.DistError as err:  # a collective failed: a peer process died
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        print(f"adafuse {verb}: stopping: another process of the distributed run failed ({first})", file=sys.stderr)
        code = EXIT_PEER
    except OSError as err:  # writing logs/metrics/eval files
        print(f"adafuse {verb}: error: {err}", file=sys.stderr)
        code = EXIT_FAILED
    finally:
        if code == 0:
            shutdown_distributed()  # never on an error path: it may wait for a dead peer
    return code, result


def _train(args: argparse.Namespace) -> int:
    from adafuse.config import load_config
    from adafuse.engine.trainer import train

    code, cfg = _run_engine("train", load_config, args.config, args.overrides)
    if code:
        return code
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    code, metrics = _run_engine("train", train, cfg, resume_from=args.resume, force_resume=args.force_resume)
    if code:
        return code
    if metrics:
        print(f"best val top1 {metrics.get('top1', float('nan')):.2f}%  top5 {metrics.get('top5', float('nan')):.2f}%"
              f"  GFLOPs/video {metrics.get('gflops_per_video', float('nan')):.4f} (exact){_released(metrics)}"
              f"  skipped {metrics.get('num_skipped', 0)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from adafuse.engine.trainer import evaluate_checkpoint

    config, overrides = _split_items(args.items)
    if config is None and args.checkpoint is None:
        print("adafuse eval: give --checkpoint CKPT and/or a CONFIG.yaml", file=sys.stderr)
        return EXIT_CONFIG
    budgeted = args.budget is not None or args.shift is not None or args.budgets or args.sparse_timing
    if budgeted:
        code, status = _run_engine("eval", _eval_budgets, args, config, overrides)
        return code or int(status or 0)
    code, metrics = _run_engine("eval", evaluate_checkpoint, args.checkpoint, config, overrides, args.out)
    if code:
        return code
    print(f"top1 {metrics['top1']:.2f}%  top5 {metrics['top5']:.2f}%  GFLOPs/video {metrics['gflops_per_video']:.4f}"
          f" (exact){_released(metrics)}  ({metrics['num_videos']} videos, {metrics['num_skipped']} skipped)")
    return 0


def _eval_budgets(args: argparse.Namespace, config: str | None, overrides: list[str]) -> int:
    from adafuse.engine.budget_eval import evaluate_budgets

    if args.checkpoint is None:
        raise ValueError("--budget/--budgets/--shift need --checkpoint")
    result = evaluate_budgets(args.checkpoint, config, overrides, args.out, budgets=args.budgets, budget=args.budget,
                              shift=args.shift, calib_list=args.calib_list, calib_clips=args.calib_clips,
                              sparse_clips=args.sparse_timing)
    if "points" not in result:
        print(f"top1 {result['top1']:.2f}%  top5 {result['top5']:.2f}%  GFLOPs/video {result['gflops_per_video']:.4f}"
              f" (exact)  (shift {result['budget_shift']:g}, {result['num_videos']} videos)")
        return 0
    print(f"all-keep GFLOPs/video {result['gflops_all_keep']:.4f} (exact)  (floor {result['floor']:.3f})")
    for p in result["points"]:
        ms = f"  sparse {p['sparse_ms_per_clip']:.1f} ms/clip" if "sparse_ms_per_clip" in p else ""
        print(f"budget {p['budget']:.3f}: shift {p['shift']:+.4g}  GFLOPs/video (exact) {p['gflops_per_video']:.4f} "
              f"({p['fraction']:.3f})  top1 {p['top1']:.2f}%  top5 {p['top5']:.2f}%{ms}")
    return 0


def _released(metrics: dict) -> str:
    """`` / released real R, upb U`` when the metrics carry the released conventions' GFLOPs/video."""
    real, upb = metrics.get("gflops_per_video_released_real"), metrics.get("gflops_per_video_released_upb")
    return "" if real is None or upb is None else f" / released real {real:.4f}, upb {upb:.4f}"


def _demo(args: argparse.Namespace) -> int:
    from adafuse.engine.demo import run_demo
    from adafuse.engine.trainer import TrainingDiverged, TrainingInterrupted

    try:
        result = run_demo(out=args.out, seed=args.seed, ablation=args.ablation,
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
