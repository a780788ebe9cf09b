"""``adafuse data prepare|extract|check|synth``: thin wrappers over :mod:`adafuse.data`.

Heavy imports (torch, PyAV) happen inside the command functions so ``adafuse --help`` stays instant.
"""

from __future__ import annotations

import argparse
import os

DATASET_CHOICES = ("sthv1", "sthv2", "jester", "kinetics", "minikinetics")

EXIT_CODES = (
    "exit codes: 0 done; 1 problems found (check), videos failed (extract) or missing with --strict (prepare); "
    "2 bad input (missing or unreadable list, classes or annotation file; one line naming the file and line)"
)


def _guarded(verb: str, fn):
    """Run a data command; a bad input file is one line on stderr and exit code 2 (no traceback)."""

    def run(args: argparse.Namespace) -> int:
        import sys

        from adafuse.data.errors import DataError

        try:
            return fn(args)
        except (DataError, FileNotFoundError, IsADirectoryError, ValueError) as err:
            print(f"adafuse data {verb}: error: {err}", file=sys.stderr)
            return 2

    return run


def _frame_range(text: str) -> tuple[int, int]:
    """``"16..48"`` / ``"16-48"`` / ``"32"`` -> (lo, hi)."""
    for sep in ("..", "-", ":"):
        if sep in text:
            lo, hi = text.split(sep, 1)
            return int(lo), int(hi)
    n = int(text)
    return n, n


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data",
        help="prepare, extract, check data sets; generate the synthetic benchmark",
        description="Data preparation commands. See docs/datasets.md for each data set's steps.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: (data.print_help(), 0)[1])

    p = sub.add_parser(
        "prepare",
        help="official annotations, or a folder of your own videos -> train.txt, val.txt, classes.txt",
        description=(
            "Your own videos: `prepare folder SOURCE --out DIR`, SOURCE a folder of class sub-folders "
            "(SOURCE/<class name>/<video files or frame folders>; or SOURCE/train/<class>/ + SOURCE/val/<class>/) "
            "or a CSV of path,label[,split] lines (paths relative to --root, default the CSV's folder). Each class "
            "is split on its own (--val-fraction, --seed: deterministic) unless the split is given (train/ val/ "
            "folders, a split column, or --val-list naming the validation videos). Official data sets: "
            "build list files from the official annotation files. Videos are looked up under --root as "
            "frame folders <id>/ or video files <id>.<ext> (up to 3 directory levels deep). Missing or "
            "unreadable or damaged videos (truncated files, frame folders with a gap) are left out of the lists "
            "and reported (all of them in OUT/missing.txt, with the reason). Annotation files may have the "
            "official long names (something-something-v2-train.json, jester-v1-train.csv, ...) or the short "
            "ones (labels.json/train.json/validation.json, labels.csv/train.csv/validation.csv)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=EXIT_CODES,
    )
    p.add_argument("dataset", choices=(*DATASET_CHOICES, "folder"), help="an official data set, or folder: your own")
    p.add_argument("source", nargs="?", metavar="SOURCE",
                   help="folder only: a folder of class sub-folders of videos, or a path,label CSV file")
    p.add_argument("--annotations", nargs="+", metavar="DIR_OR_FILE",
                   help="annotation directory or files (labels/train/validation CSV or JSON, Kinetics CSVs); "
                        "official data sets only, required there")
    p.add_argument("--root", help="data root holding the frame folders or video files (required for an official data "
                                  "set; for a CSV: the folder its paths are relative to, default the CSV's)")
    p.add_argument("--out", required=True, help="output directory for train.txt, val.txt, classes.txt")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="folder: share of each class's videos used for validation")
    g.add_argument("--val-list", metavar="FILE",
                   help="folder: the validation videos, one path per line as in the lists (the others: training)")
    p.add_argument("--seed", type=int, default=0, help="folder: seed of the stratified split")
    p.add_argument("--subset-train", metavar="FILE", help="YouTube ids of the training subset (Mini-Kinetics)")
    p.add_argument("--subset-val", metavar="FILE", help="YouTube ids of the validation subset (Mini-Kinetics)")
    p.add_argument("--class-order", choices=("sorted", "file"), default="sorted",
                   help="SthV1/Jester class order: sorted names (TSM/AdaFuse checkpoints) or labels-file order")
    p.add_argument("--prefer", choices=("auto", "frames", "video"), default="auto",
                   help="which form to list when a video exists as both a frame folder and a file")
    p.add_argument("--template", default="{:05d}.jpg", help="frame file name template (1-based)")
    p.add_argument("--workers", type=int, default=8, help="threads counting frames / probing videos")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any video is missing")
    p.set_defaults(func=_guarded("prepare", _prepare))

    p = sub.add_parser(
        "extract",
        help="videos -> frame folders {:05d}.jpg + frame list (parallel, resumable)",
        description=(
            "Decode every video of a list into <out>/<path without extension>/00001.jpg ... and write a "
            "frame-folder list. Resumable: complete folders are skipped (each is written to a temporary "
            "folder and renamed when done). Exit status 1 if any video failed."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=EXIT_CODES,
    )
    p.add_argument("--list", required=True, help="video list ('<path> [<num_frames>] <label>' lines)")
    p.add_argument("--root", default=None, help="directory the list paths are relative to (default: the list's)")
    p.add_argument("--out", required=True, help="output root of the frame folders")
    p.add_argument("--out-list", default=None,
                   help="frame list to write (default: OUT/<list stem>_frames.txt; *_videos -> *_frames)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    p.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: all frames)")
    p.add_argument("--short-side", type=int, default=None, help="resize so the short side has S pixels")
    p.add_argument("--template", default="{:05d}.jpg", help="frame file name template (1-based)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.set_defaults(func=_guarded("extract", _extract))

    p = sub.add_parser(
        "check",
        help="report every problem of a list and its videos (exit 1 if any)",
        description=(
            "Check a list file: malformed lines, labels out of range, duplicate paths, missing folders or "
            "videos, undecodable or truncated videos (fewer frames than the container declares), frame folders "
            "with a gap below their highest frame, fewer frames than listed; with --deep also frames of "
            "different sizes. Every problem is printed as file:line. Videos are decoded completely."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=EXIT_CODES,
    )
    p.add_argument("list", help="list file")
    p.add_argument("--root", default=None, help="directory the list paths are relative to (default: the list's)")
    p.add_argument("--template", default="{:05d}.jpg", help="frame file name template")
    p.add_argument("--start-index", type=int, default=1, help="number of the first frame file")
    p.add_argument("--num-classes", type=int, default=None,
                   help="check labels are in [0, K) (default: length of classes.txt next to the list, if any)")
    p.add_argument("--classes", default=None, help="classes file giving K")
    p.add_argument("--kind", choices=("auto", "frames", "video"), default="auto", help="list format")
    p.add_argument("--deep", action="store_true", help="decode every frame image, not only the first and last")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes decoding videos")
    p.set_defaults(func=_guarded("check", _check))

    p = sub.add_parser(
        "synth",
        help="generate the synthetic time-direction benchmark (mp4 + frame folders + lists)",
        description=(
            "Generate 'synthetic something': 15 classes, 12 in time-reversal pairs (move left/right, up/down, "
            "grow/shrink, rotate cw/ccw, appear/disappear, approach/separate) and 3 static shapes. Writes "
            "videos/<id>.mp4, frames/<id>/00001.jpg, train_frames.txt, val_frames.txt, train_videos.txt, "
            "val_videos.txt, classes.txt, synth.json. Options override the preset."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=EXIT_CODES,
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--preset", choices=("default", "small", "tiny"), default="default",
                   help="default: 80 videos/class, 96 px, 16..48 frames; small: 24/class, 64 px; tiny: 4/class")
    p.add_argument("--videos-per-class", type=int, default=None, help="videos per class (train + val)")
    p.add_argument("--val-per-class", type=int, default=None, help="validation videos per class")
    p.add_argument("--size", type=int, default=None, help="frame side in pixels (even)")
    p.add_argument("--frames", type=_frame_range, default=None, metavar="MIN..MAX",
                   help="frame-count range per video, e.g. 16..48")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical data)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="regenerate even if OUT holds the same set")
    p.set_defaults(func=_guarded("synth", _synth))


def _prepare(args: argparse.Namespace) -> int:
    from adafuse.data.prepare import prepare_dataset

    if args.dataset == "folder":
        return _prepare_folder(args)
    if args.source is not None:
        raise ValueError(f"SOURCE ({args.source}) is only for `prepare folder`; {args.dataset} takes --annotations "
                         "and --root")
    if not args.annotations or not args.root:
        raise ValueError(f"{args.dataset} needs --annotations and --root")
    annotations = args.annotations[0] if len(args.annotations) == 1 else args.annotations
    if args.dataset == "minikinetics" and (args.subset_train is None or args.subset_val is None):
        raise ValueError("minikinetics needs --subset-train and --subset-val (YouTube-id list files)")
    report = prepare_dataset(
        args.dataset, annotations, args.root, args.out,
        subset_train=args.subset_train, subset_val=args.subset_val, class_order=args.class_order,
        prefer=args.prefer, template=args.template, workers=args.workers, log=print,
    )
    print(report.summary())
    return 1 if (args.strict and report.missing) else 0


def _prepare_folder(args: argparse.Namespace) -> int:
    import shlex

    from adafuse.data.folder import prepare_folder

    if args.source is None:
        raise ValueError("prepare folder needs SOURCE: a folder of class sub-folders of videos, or a path,label CSV")
    report = prepare_folder(args.source, args.out, root=args.root, val_fraction=args.val_fraction,
                            val_list=args.val_list, seed=args.seed, template=args.template, workers=args.workers,
                            log=print)
    print(report.summary())
    files = report.files
    overrides = [f"data.root={files['root']}", f"data.train_list={files['train']}", f"data.val_list={files['val']}",
                 f"data.classes={files['classes']}"]
    print("next (train, then evaluate the best checkpoint; see docs/own-videos.md):\n"
          f"  adafuse train configs/own_videos.yaml {' '.join(shlex.quote(x) for x in overrides)}\n"
          "  adafuse eval --checkpoint runs/own_videos/checkpoints/best.pt")
    return 1 if (args.strict and report.missing) else 0


def _extract(args: argparse.Namespace) -> int:
    from adafuse.data.extract import extract_frames

    report = extract_frames(
        args.list, args.root, args.out, workers=args.workers, fps=args.fps, short_side=args.short_side,
        template=args.template, quality=args.quality, out_list=args.out_list,
    )
    print(report.summary())
    return 1 if report.failed else 0


def _check(args: argparse.Namespace) -> int:
    from adafuse.data.check import check_list

    report = check_list(
        args.list, args.root, template=args.template, start_index=args.start_index,
        num_classes=args.num_classes, classes=args.classes, kind=args.kind, deep=args.deep,
        workers=args.workers,
    )
    for problem in report.problems:
        print(problem)
    print(report.summary())
    return 0 if report.ok else 1


def _synth(args: argparse.Namespace) -> int:
    from adafuse.data.synthetic import generate_synthetic, synth_settings

    settings = synth_settings(args.preset)
    for key in ("videos_per_class", "val_per_class", "size", "frames"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.videos_per_class is not None and args.val_per_class is None:
        settings["val_per_class"] = None  # re-derived from val_fraction
    result = generate_synthetic(args.out, seed=args.seed, workers=args.workers, overwrite=args.overwrite,
                                **settings)
    state = "reused (same settings)" if result.reused else f"generated in {result.seconds:.1f} s"
    print(f"synthetic set {state}: {result.num_classes} classes, {result.num_train} train / "
          f"{result.num_val} val videos in {result.root}")
    for name in ("train_frames", "val_frames", "train_videos", "val_videos", "classes"):
        print(f"  {name}: {getattr(result, name)}")
    return 0
