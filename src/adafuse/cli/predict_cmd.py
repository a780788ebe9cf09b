"""``adafuse predict`` (classify videos with a checkpoint, sparse by default) and ``adafuse export`` (ONNX)."""

from __future__ import annotations

import argparse
import json
import sys

from adafuse.cli.train_cmd import add_budget_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify videos / frame folders with a checkpoint (sparse execution by default)",
        description="Top-k classes of each video (mp4, webm, ...) or frame folder (frame files as the checkpoint's "
                    "data.frame_template/frame_start say, default {:05d}.jpg from 1), the GFLOPs "
                    "spent against the dense model (paper convention: MACs) and the time taken. The clip mode "
                    "uses the model's T segment-centre frames; --stream feeds frames one at a time and prints "
                    "the running prediction after each. Sparse execution computes only the channels the policy "
                    "keeps (AdaFuse-TSN models; TSM models cannot be streamed and run densely in clip mode).",
        epilog="exit codes: 0 every source predicted; 1 some source failed (damaged video, frame folder with a "
               "gap, non-finite logits; each named on stderr); 2 bad arguments or checkpoint.\n\n"
               "examples:\n"
               "  adafuse predict clip.mp4 --checkpoint runs/sthv1_r50/checkpoints/best.pt\n"
               "  adafuse predict clip.webm frames/00042 --checkpoint best.pt --dense\n"
               "  adafuse predict clip.mp4 --checkpoint best.pt --stream --every 4 --jsonl steps.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or frame folders")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="adafuse checkpoint file (.pt)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sparse", dest="sparse", action="store_true", default=True,
                      help="compute only the channels the policy asks for (default)")
    mode.add_argument("--dense", dest="sparse", action="store_false",
                      help="run the dense model (clip mode: the PyTorch model; --stream: every channel, masked)")
    p.add_argument("--stream", action="store_true", help="feed frames one by one, print the running prediction")
    p.add_argument("--every", type=int, default=None, metavar="K",
                   help="with --stream: use every K-th frame of the whole video instead of the T clip frames")
    p.add_argument("--frames", type=int, default=None, metavar="T", help="frames per clip (default: checkpoint's)")
    p.add_argument("--size", type=int, default=None, metavar="PX", help="crop side (default: checkpoint's)")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="classes to print (default 5)")
    p.add_argument("--template", default=None,
                   help="frame file name template of frame folders (default: the checkpoint's data.frame_template, "
                        "else {:05d}.jpg)")
    p.add_argument("--frame-start", type=int, default=None, metavar="K",
                   help="number of the first frame file (default: the checkpoint's data.frame_start, else 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    p.add_argument("--jsonl", default=None, metavar="FILE",
                   help="write per-frame, per-gated-block accounting (one JSON object per frame, then one per video)")
    p.add_argument("--json", action="store_true", help="print one JSON object per video instead of text")
    add_budget_arguments(p)
    p.set_defaults(func=cmd_predict)

    e = subparsers.add_parser(
        "export",
        help="export the dense clip model of a checkpoint to ONNX and check it with onnxruntime",
        description="Export the checkpoint's clip model (input 'clip' (N, T, 3, S, S) normalised float32, output "
                    "'logits' (N, K); N dynamic) to ONNX. AdaFuse models keep the argmax policy inside the graph "
                    "(every channel is computed and masked). The file's metadata holds the preprocessing (JSON: "
                    "frames, resize, crop, mean/std) and the class names. The export is then run with onnxruntime "
                    "on random clips and compared with PyTorch. Needs the extra 'onnx' (pip install 'adafuse[onnx]').",
        epilog="example:\n  adafuse export --checkpoint best.pt --onnx adafuse_r50.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--checkpoint", required=True, metavar="CKPT", help="adafuse checkpoint file (.pt)")
    e.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    e.add_argument("--frames", type=int, default=None, metavar="T", help="frames per clip (default: checkpoint's)")
    e.add_argument("--size", type=int, default=None, metavar="PX", help="crop side (default: checkpoint's)")
    e.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    e.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest accepted relative difference of the logits (default 1e-4)")
    e.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    add_budget_arguments(e)
    e.set_defaults(func=cmd_export)


def apply_budget(model, args: argparse.Namespace, size: int) -> float:
    """Resolve ``--budget``/``--shift`` for the checkpoint and apply the shift to ``model``; returns it."""
    if args.budget is None and args.shift is None:
        return 0.0
    from adafuse.engine.budget_eval import resolve_shift
    from adafuse.engine.trainer import checkpoint_config
    from adafuse.inference.budget import set_budget_shift
    from adafuse.models.serialization import load_checkpoint_file

    payload = load_checkpoint_file(args.checkpoint)
    cfg = checkpoint_config(payload, None, None) if payload.get("config") else None
    if cfg is not None:
        cfg.data.input_size = size
    shift, _ = resolve_shift(model, payload, cfg, args.budget, args.shift, args.calib_list, args.calib_clips,
                             size=size)
    set_budget_shift(model, shift)
    return shift


def _gate_records(report) -> list[dict]:
    return [
        {"name": g.name, "skip": g.skip, "reuse": g.reuse, "keep": g.keep, "produced": g.produced,
         "produced_prev": g.produced_prev, "consumed": g.consumed, "f1_macs": g.f1, "f1_prev_macs": g.f1_prev,
         "f2_macs": g.f2}
        for g in report.gates
    ]


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from adafuse.data.errors import DataError
    from adafuse.inference.predictor import Predictor
    from adafuse.inference.sparse import StreamingNotSupportedError

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.every is not None and (args.every < 1 or not args.stream):
        print("error: --every needs --stream and a value >= 1", file=sys.stderr)
        return 2
    from adafuse.inference.predictor import NonFiniteLogitsError
    from adafuse.models.serialization import CheckpointError

    try:
        predictor = Predictor.from_checkpoint(args.checkpoint, sparse=args.sparse, num_frames=args.frames,
                                              size=args.size, topk=args.topk, template=args.template,
                                              start_index=args.frame_start)
    except (CheckpointError, NonFiniteLogitsError, FileNotFoundError) as err:
        print(f"adafuse predict: error: {err}", file=sys.stderr)
        return 2
    try:
        shift = apply_budget(predictor.model, args, predictor.size)
    except (DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {args.checkpoint}: {err}", file=sys.stderr)
        return 2
    if shift and not args.json:
        print(f"budget shift {shift:+.6g}")
    jsonl = open(args.jsonl, "w") if args.jsonl else None  # noqa: SIM115 -- closed in finally
    status = 0
    try:
        for video in args.videos:
            try:
                if args.stream:
                    result = _stream_one(predictor, video, args, jsonl)
                else:
                    reports: list = []
                    result = predictor.predict(video, reports)
                    if jsonl is not None:
                        for step, (index, report) in enumerate(zip(result.frame_indices, reports, strict=False)):
                            jsonl.write(_frame_record(video, step, index, report))
            except (DataError, StreamingNotSupportedError, FileNotFoundError, ValueError) as err:
                print(f"error: {video}: {err}", file=sys.stderr)
                status = 1
                continue
            if jsonl is not None:
                jsonl.write(json.dumps({"type": "video", **result.to_dict()}) + "\n")
            if args.json:
                print(json.dumps(result.to_dict()))
            else:
                _print_result(result)
    finally:
        if jsonl is not None:
            jsonl.close()
    return status


def _stream_one(predictor, video: str, args: argparse.Namespace, jsonl):
    quiet = args.json

    def on_step(step: int, index: int, logits, report) -> None:
        cls, name, prob = predictor._top(logits)[0]
        if not quiet:
            print(f"  frame {index:6d}  step {step:4d}  {report.flops / 1e9:8.4g} GFLOPs  running top-1: "
                  f"{prob:.3f} {name} [{cls}]", flush=True)
        if jsonl is not None:
            jsonl.write(_frame_record(video, step, index, report, cls))

    if not quiet:
        print(f"{video}: streaming ({'sparse' if predictor.sparse else 'dense'})")
    return predictor.stream(video, args.every, on_step)


def _frame_record(video: str, step: int, index: int, report, top1: int | None = None) -> str:
    rec = {"type": "frame", "source": video, "step": step, "frame_index": index, "gflops": report.flops / 1e9,
           "gflops_prev_frame": report.flops_prev / 1e9, "macs": report.macs}
    if top1 is not None:
        rec["top1"] = top1
    rec["blocks"] = _gate_records(report)
    return json.dumps(rec) + "\n"


def _print_result(r) -> None:
    share = 100.0 * r.gflops / r.gflops_dense if r.gflops_dense else float("nan")
    print(f"{r.source}: {len(r.frame_indices)} frames, {r.mode}, {r.gflops:.4g} GFLOPs "
          f"(dense {r.gflops_dense:.4g} GFLOPs, {share:.1f}%), model {r.seconds:.3f} s, total {r.total_seconds:.3f} s")
    for rank, (cls, name, prob) in enumerate(r.top, start=1):
        print(f"  {rank}. {prob:.4f}  {name}  [{cls}]")


def cmd_export(args: argparse.Namespace) -> int:
    from adafuse.data.preprocessing import Preprocessing
    from adafuse.inference.export import check_onnx, export_onnx
    from adafuse.models.serialization import model_from_checkpoint

    model, payload = model_from_checkpoint(args.checkpoint)
    pre = Preprocessing.of_checkpoint(payload).with_frames(args.frames).with_crop(args.size)
    try:
        shift = apply_budget(model, args, pre.crop_size)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {args.checkpoint}: {err}", file=sys.stderr)
        return 2
    if shift:
        print(f"budget shift {shift:+.6g} (fixed in the exported graph)")
    names = payload.get("class_names")
    exported = export_onnx(model, args.onnx, opset=args.opset, class_names=names, preprocessing=pre)
    path = exported.path
    t, s = pre.num_frames, pre.crop_size
    print(f"wrote {path} ({model.arch}, {exported.exporter} exporter; input clip (N, {t}, 3, {s}, {s}), "
          f"output logits (N, {model.num_classes}))")
    print(f"metadata: preprocessing ({pre.sampling} sampling of {t} frames, short side {pre.resize_short}, centre "
          f"crop {s}), {'class names (' + str(len(names)) + ')' if names else 'no class names'}; run it on a video "
          "with examples/onnx_predict.py")
    if args.no_check:
        return 0
    check = check_onnx(model, path, tolerance=args.tolerance)
    verdict = "OK" if check.ok else "MISMATCH"
    print(f"onnxruntime check on {check.batch} random clips: max |diff| {check.max_abs_diff:.3e}, "
          f"relative {check.rel_diff:.3e} (tolerance {check.tolerance:g}): {verdict}")
    if not check.ok:
        print("  a policy decision near a tie can flip between runtimes; compare on real clips before relying "
              "on the export", file=sys.stderr)
        return 1
    return 0
