"""``adafuse report RUN_DIR [RUN_DIR ...] --out DIR``: figures, ``report.json`` and one HTML page."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="plots + self-contained HTML report of evaluated runs (policy, compute budget, accuracy)",
        description=(
            "Read RUN_DIR/eval/predictions.jsonl and RUN_DIR/eval/metrics.json of each run and write PNG "
            "figures, report.json (every number) and report.html (one self-contained page: figures embedded, "
            "no network) into --out. Dense runs (no policy) appear in the comparison and accuracy figures."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (written by train/eval)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--title", default="AdaFuse report", help="page title (default: %(default)s)")
    p.add_argument("--videos", type=int, default=2, metavar="K",
                   help="frame strips for the K cheapest and K most expensive correct videos (default: %(default)s)")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="folder to resolve relative video/frame-folder paths of the predictions against "
                        "(repeatable; the working directory is tried first)")
    p.add_argument("--frame-template", default="{:05d}.jpg",
                   help="frame file names inside frame folders (default: %(default)s)")
    p.add_argument("--frame-start", type=int, default=1,
                   help="number of the first frame file in frame folders (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from adafuse.analysis.report import build_report
    from adafuse.analysis.runs import RunFormatError

    if args.videos < 0:
        print("adafuse report: error: --videos must be >= 0", file=sys.stderr)
        return 2
    try:
        files = build_report(
            args.run_dirs,
            args.out,
            title=args.title,
            videos_per_extreme=args.videos,
            frame_template=args.frame_template,
            frame_start=args.frame_start,
            data_roots=args.data_root,
        )
    except (FileNotFoundError, RunFormatError) as exc:
        print(f"adafuse report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {files.html} ({files.html.stat().st_size / 1e6:.2f} MB), {files.json} and "
          f"{len(files.figures)} figures in {files.html.parent}")
    return 0
