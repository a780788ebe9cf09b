"""``adafuse convert SRC --out DST [--arch NAME]``: the authors' released checkpoints -> our checkpoint format."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a released AdaFuse checkpoint (DataParallel state dict) into an adafuse checkpoint",
        description=(
            "Read a checkpoint of the authors' released code (sthv1_adatsn50.pth.tar, sthv1_adatsm50.pth.tar,\n"
            "sthv1_adatsm50last.pth.tar, or a BN-Inception AdaFuse / TSN checkpoint of that code) and write an\n"
            "adafuse checkpoint (arch, build_config, input_spec, weights) that `adafuse eval` / `adafuse predict`\n"
            "read directly. The architecture is inferred from the weights; TSN and TSM ResNets have identical\n"
            "weights, so for those the file name must contain 'tsn' or 'tsm', or pass --arch. The file is read\n"
            "with torch.load(weights_only=True): no code in it runs."
        ),
        epilog="examples:\n  adafuse convert sthv1_adatsm50last.pth.tar --out adatsm50last.pt\n"
               "  adafuse convert model_best.pth.tar --out adatsn50.pt --arch adafuse_tsn_r50",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="released checkpoint file")
    p.add_argument("--out", required=True, metavar="DST", help="adafuse checkpoint to write (.pt)")
    p.add_argument("--arch", default=None, metavar="NAME",
                   help="adafuse_tsn_r50 | adafuse_tsm_r50 | adafuse_tsm_last_r50 | adafuse_tsn_bninception | "
                        "tsn_bninception (default: inferred)")
    p.add_argument("--num-frames", type=int, default=8, metavar="T",
                   help="frames per clip the model is set up for (default: %(default)s, as released)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from adafuse.models.convert import convert_released_checkpoint
    from adafuse.models.serialization import model_payload

    try:
        model, report = convert_released_checkpoint(args.src, arch=args.arch, num_frames=args.num_frames)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise SystemExit(f"adafuse convert: {e.args[0] if isinstance(e, KeyError) else e}") from e
    payload = model_payload(model)
    payload["converted_from"] = {"file": str(args.src), "summary": report.summary(), "notes": report.notes}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out)
    print(report.summary())
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
