"""`adafuse demo`: TSN vs AdaFuse on the embedded synthetic time-reversal benchmark (paper Table 6 in small).

The synthetic "something" set (:mod:`adafuse.data.synthetic`) has 15 classes, 12 of them in time-reversal
pairs (a class's clips are its partner's clips played backwards). TSN averages per-frame predictions, so it
cannot tell the members of a pair apart (chance within pairs); AdaFuse's reuse lets a frame see channels
of the previous frame, which carries the direction of time. The demo trains both from scratch on the same
small ResNet-18 with the same recipe, evaluates the best checkpoint of each, and writes::

    OUT/data/                     the generated benchmark (reused when present with the same settings)
    OUT/<method>/                 a normal run directory per method (config.yaml, metrics.jsonl,
                                  checkpoints/{best,last}.pt, eval/{predictions.jsonl,metrics.json})
    OUT/results.md|json|png       the comparison table (markdown, JSON) and a GFLOPs-vs-top-1 plot
    OUT/policy_mix.png            the skip/reuse/keep mix of the methods with a policy

Reruns reuse finished runs (their ``last.pt``); a run whose recipe changed starts over.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from adafuse.analysis.formats import fmt_gflops
from adafuse.analysis.runs import read_predictions
from adafuse.analysis.stats import mix_from_ratios
from adafuse.config import Config
from adafuse.engine.metrics import setup_logging
from adafuse.flops import POLICY_RATIO_DEFINITION

log = logging.getLogger("adafuse")


@dataclass(frozen=True)
class DemoRecipe:
    """Data size and training recipe of a demo variant (the same for every method of the comparison)."""

    videos_per_class: int  # synthetic videos per class (train + val)
    val_per_class: int  # of which validation
    video_size: int  # generated frame side (px); also the network input side
    video_frames: tuple[int, int]  # frames per generated video (inclusive range)
    width: int  # ResNet-18 base width (64 = the standard network)
    policy_hidden: int  # policy MLP width (the paper's 512 is for width 64)
    batch_size: int
    pretrain_epochs: int  # stage 1: TSN from scratch (the shared backbone initialisation)
    pretrain_lr: float  # its learning rate (at 2e-3 it sat at chance for 6-8 epochs on some seeds)
    epochs: int  # stage 2: each method, from that backbone
    optimizer: str  # "adamw" (from scratch) or "sgd"
    lr: float
    weight_decay: float
    schedule: str  # "cosine" or "step"
    warmup_epochs: float
    flops_weight: float  # lambda, with G in per-frame GFLOPs of this small network
    flops_start_epoch: float
    flops_warmup_epochs: float
    dropout: float = 0.5
    scales: tuple[float, ...] = (1.0, 0.875)
    num_frames: int = 8
    num_workers: int = 1
    eval_every: int = 1


_COMMON = dict(video_frames=(16, 32), optimizer="adamw", pretrain_lr=1e-3, lr=2e-3, weight_decay=0.01,
               schedule="cosine", warmup_epochs=0.0, flops_start_epoch=0.0, flops_warmup_epochs=1.0)
RECIPES: dict[str, DemoRecipe] = {
    # `adafuse demo`
    "full": DemoRecipe(videos_per_class=200, val_per_class=24, video_size=48, width=16, policy_hidden=64,
                       batch_size=16, pretrain_epochs=10, epochs=10, flops_weight=8.0, eval_every=2, **_COMMON),
    # the test suite's end-to-end run (same code path, smallest setting)
    "test": DemoRecipe(videos_per_class=6, val_per_class=2, video_size=32, width=8, policy_hidden=16, batch_size=8,
                       pretrain_epochs=1, epochs=1, flops_weight=10.0, num_workers=0, **_COMMON),
}

PRETRAIN_RUN = "pretrain_tsn"

# method label -> registered model name (Table 6 of the paper, ResNet-18 body)
MAIN_METHODS = {"TSN": "tsn_r18", "AdaFuse-TSN": "adafuse_tsn_r18"}
ABLATION_METHODS = {"Ada.Skip": "adaskip_r18", "Ada.Reuse": "adareuse_r18", "Random": "random_r18",
                    "TSM": "tsm_r18"}


def _slug(label: str) -> str:
    return label.lower().replace(".", "").replace("-", "_").replace(" ", "_")


def _has_policy_net(model_name: str) -> bool:
    return model_name.startswith(("adafuse_", "adaskip_", "adareuse_"))


def demo_config(recipe: DemoRecipe, model_name: str, data: Any, val_list: Path | None, out: Path, name: str, seed: int,
                threads: int | None, model_kwargs: dict[str, Any] | None = None, pretrained: str | None = None,
                epochs: int | None = None, lr: float | None = None) -> Config:
    """The full training config of one demo run (stage 2 unless ``epochs``/``lr`` say otherwise)."""
    kwargs = dict(model_kwargs or {})
    if recipe.width != 64:
        kwargs["width"] = recipe.width
    size = recipe.video_size
    overrides = {
        "model.name": model_name, "model.num_frames": recipe.num_frames, "model.dropout": recipe.dropout,
        "model.kwargs": kwargs, "model.pretrained": pretrained,
        "model.policy_hidden": recipe.policy_hidden if _has_policy_net(model_name) else None,
        "data.root": data.root, "data.train_list": data.train_frames, "data.val_list": str(val_list or ""),
        "data.classes": data.classes, "data.input_size": size, "data.scale_size": size,
        "data.scales": list(recipe.scales), "data.batch_size": recipe.batch_size,
        "data.num_workers": recipe.num_workers,
        "optim.name": recipe.optimizer, "optim.epochs": epochs or recipe.epochs, "optim.lr": lr or recipe.lr,
        "optim.weight_decay": recipe.weight_decay, "optim.schedule": recipe.schedule, "optim.lr_steps": [],
        "optim.warmup_epochs": recipe.warmup_epochs,
        "train.flops_weight": recipe.flops_weight, "train.flops_start_epoch": recipe.flops_start_epoch,
        "train.flops_warmup_epochs": recipe.flops_warmup_epochs, "train.eval_every": recipe.eval_every,
        "eval.batch_size": 32, "run.out_dir": str(out), "run.name": name, "run.seed": seed, "run.log_every": 0,
        "run.threads": threads,
    }
    data_dict = Config().to_dict()
    for key, value in overrides.items():
        section, option = key.split(".")
        data_dict[section][option] = value
    return Config.from_dict(data_dict, source="<demo recipe>")


def pretrain_config(recipe: DemoRecipe, data: Any, out: Path, seed: int, threads: int | None) -> Config:
    """Stage 1: the TSN trained from scratch whose backbone every method starts from (``out/pretrain_tsn``)."""
    return demo_config(recipe, MAIN_METHODS["TSN"], data, None, out, PRETRAIN_RUN, seed, threads,
                       epochs=recipe.pretrain_epochs, lr=recipe.pretrain_lr)


def _train(cfg: Config) -> bool:
    """Train ``cfg`` (a finished run of the same config is reused, an interrupted one resumed; a run whose
    config changed starts over). Returns True if the run was already finished."""
    import torch

    from adafuse.engine.trainer import run_dir_of, train

    run_dir = run_dir_of(cfg)
    saved = run_dir / "config.yaml"
    if saved.is_file() and yaml.safe_load(saved.read_text()) != cfg.to_dict():
        log.info("%s: the recipe changed, starting this run over", run_dir)
        shutil.rmtree(run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    if last.is_file() and torch.load(last, weights_only=True).get("epoch") == cfg.optim.epochs:
        log.info("%s: finished before, reused", run_dir)
        return True
    train(cfg)
    return False


def _train_and_eval(cfg: Config) -> dict[str, Any]:
    """Train (see :func:`_train`) and evaluate the best checkpoint on the validation list."""
    from adafuse.engine.trainer import evaluate_checkpoint, run_dir_of

    t0 = time.time()
    _train(cfg)
    t1 = time.time()
    metrics = evaluate_checkpoint(run_dir_of(cfg) / "checkpoints" / "best.pt")
    metrics["train_seconds"] = t1 - t0
    metrics["eval_seconds"] = time.time() - t1
    return metrics


def pair_statistics(predictions: list[dict[str, Any]], pairs: list[list[int]]) -> dict[str, float | None]:
    """Accuracy on the time-reversal classes: ``pair_top1`` (top-1 over videos of paired classes),
    ``pair_found`` (prediction in the right pair), ``direction`` (right member, among videos whose prediction
    is in the right pair; 50% = chance, what an order-blind model gets)."""
    partner = {}
    for a, b in pairs:
        partner[a], partner[b] = b, a
    paired = [p for p in predictions if p["label"] in partner]
    if not paired:
        return {"pair_top1": None, "pair_found": None, "direction": None}
    found = [p for p in paired if p["pred"] in (p["label"], partner[p["label"]])]
    return {
        "pair_top1": 100.0 * sum(p["pred"] == p["label"] for p in paired) / len(paired),
        "pair_found": 100.0 * len(found) / len(paired),
        "direction": 100.0 * sum(p["pred"] == p["label"] for p in found) / len(found) if found else None,
    }


def paired_val_list(data: Any, pairs: list[list[int]]) -> Path:
    """``val_paired.txt``: every validation video and its time reversal, labelled with the partner class
    (static classes keep their label). The reversed copies are folders of symbolic links (copies where links
    are unavailable) under ``frames_reversed/``. On this set an order-blind model's predictions of a clip and
    of its reversal are identical, so it is exactly at chance between the members of a pair."""
    root = Path(data.root)
    partner = {}
    for a, b in pairs:
        partner[a], partner[b] = b, a
    out = root / "val_paired.txt"
    lines = []
    for line in Path(data.val_frames).read_text().splitlines():
        if not line.strip():
            continue
        path, n, label = line.rsplit(" ", 2)
        n_frames, lab = int(n), int(label)
        rev = "frames_reversed/" + path.removeprefix("frames/")
        folder = root / rev
        if not folder.is_dir():  # built aside and renamed into place: never half-written
            tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for t in range(1, n_frames + 1):
                link, target = tmp / f"{t:05d}.jpg", root / path / f"{n_frames + 1 - t:05d}.jpg"
                try:
                    link.symlink_to(os.path.relpath(target, folder))  # relative: the data dir may move
                except OSError:
                    shutil.copyfile(target, link)
            try:
                tmp.rename(folder)
            except OSError:  # another process made it first
                shutil.rmtree(tmp, ignore_errors=True)
        lines += [line, f"{rev} {n_frames} {partner.get(lab, lab)}"]
    out.write_text("".join(f"{x}\n" for x in lines))
    return out


def _fmt(x: float | None, spec: str = "{:.1f}") -> str:
    return "-" if x is None else spec.format(x)


def results_markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The Table-6-style comparison as markdown."""
    lines = [
        f"# AdaFuse demo: synthetic time-reversal benchmark (seed {info['seed']}, recipe `{info['recipe']}`)",
        "",
        f"{info['num_classes']} classes ({info['num_pairs']} time-reversal pairs + {info['num_static']} static), "
        f"{info['num_train']} training videos; validation on {info['num_val']} videos and their time reversals "
        f"({2 * info['num_val']} clips, a reversed clip labelled with its partner class). {info['frames']} frames at "
        f"{info['input_size']}x{info['input_size']} px, ResNet-18 of width {info['width']}. Every method starts from "
        f"the same backbone, a TSN trained from scratch for {info['pretrain_epochs']} epochs on the training videos "
        f"(the stand-in for the paper's ImageNet initialisation), and is then trained for {info['epochs']} epochs "
        f"with the same recipe (new classifier and policy). GFLOPs per video in the paper's convention "
        f"(multiply-accumulates).",
        "",
        "| Method | Model | Params | GFLOPs/video | vs TSN | Top-1 (%) | Top-5 (%) | Direction in pairs (%) "
        "| Top-1 val split only (%) | Skip / Reuse / Keep (%) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    tsn = next((r for r in rows if r["method"] == "TSN"), None)
    for r in rows:
        rel = f"{100 * r['gflops_per_video'] / tsn['gflops_per_video']:.0f}%" if tsn else "-"
        mix = "-" if r["policy_ratios"] is None else " / ".join(f"{100 * x:.1f}" for x in r["policy_ratios"])
        gflops = fmt_gflops(r["gflops_per_video"])  # 3 significant digits, as in the report
        lines.append(f"| {r['method']} | `{r['arch']}` | {r['params'] / 1e6:.2f}M | {gflops} | "
                     f"{rel} | {r['top1']:.1f} | {r['top5']:.1f} | {_fmt(r['direction'])} | {_fmt(r['top1_split'])} | "
                     f"{mix} |")
    lines += ["", "Direction in pairs: among validation clips of paired classes whose prediction falls in the right "
              "pair, the share with the right member. An order-blind model (TSN) predicts a clip and its reversal "
              "alike, so it is at chance (50%) here, up to the few videos whose frame count makes the sampled "
              "frames of a clip and of its reversal differ. Top-1 val split only: the original validation videos "
              f"alone. Skip / Reuse / Keep: {POLICY_RATIO_DEFINITION} (as in metrics.json and `adafuse report`)."]
    if tsn is not None:
        ada = next((r for r in rows if r["method"] == "AdaFuse-TSN"), None)
        if ada is not None:
            lines += ["", f"AdaFuse - TSN: {ada['top1'] - tsn['top1']:+.1f} top-1 points at "
                      f"{100 * ada['gflops_per_video'] / tsn['gflops_per_video']:.0f}% of TSN's GFLOPs per video."]
    lines += ["", f"Wall time: {info['seconds']:.0f} s (data {info['data_seconds']:.0f} s, backbone pretraining "
              f"{info['pretrain_seconds']:.0f} s, then per method: "
              + ", ".join(f"{r['method']} {r['train_seconds'] + r['eval_seconds']:.0f} s" for r in rows) + ")."]
    return "\n".join(lines) + "\n"


def plot_results(rows: list[dict[str, Any]], out: Path) -> None:
    """``out/results.png`` (GFLOPs/video vs top-1, the report's figure) and, when a method has a policy,
    ``out/policy_mix.png`` (its skip/reuse/keep mix)."""
    from adafuse.analysis.plots import plot_flops_accuracy, plot_policy_mix

    plot_flops_accuracy([{"run": r["method"], "arch": r["arch"], "gflops": r["gflops_per_video"], "top1": r["top1"],
                          "params": r["params"], "adaptive": r["policy_ratios"] is not None} for r in rows],
                        out / "results.png")
    mixes = {r["method"]: mix_from_ratios(r["policy_ratios"]) for r in rows if r["policy_ratios"] is not None}
    if mixes:
        plot_policy_mix(mixes, out / "policy_mix.png")


def run_demo(
    out: str | Path = "runs/demo",
    seed: int = 0,
    ablation: bool = False,
    data_dir: str | Path | None = None,
    threads: int | None = None,
    recipe: str | DemoRecipe | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate the data, train and evaluate every method, write ``results.{md,json,png}`` into ``out``.

    ``recipe``: a key of :data:`RECIPES` (default ``full``); ``progress``: a progress
    bar while the data is generated. Returns the results dict (``rows``, ``info``, ``table_markdown``, ``out``).
    """
    from adafuse.data.synthetic import REVERSAL_PAIRS, STATIC_CLASSES, SYNTH_CLASSES, generate_synthetic

    t_start = time.time()
    if isinstance(recipe, DemoRecipe):
        name, rec = "custom", recipe
    else:
        name = recipe or "full"
        if name not in RECIPES:
            raise ValueError(f"unknown demo recipe {name!r}; recipes: {sorted(RECIPES)}")
        rec = RECIPES[name]
    if threads is None:  # compute threads + data workers = cores: an oversubscribed CPU slows torch down a lot
        threads = max(1, (os.cpu_count() or 1) - rec.num_workers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(None, is_main=True)  # progress on stderr from the first line (the trainer adds its run's log file)
    log.info("demo (recipe %s, seed %d): synthetic benchmark, %d videos of %d px into %s (reused if present)", name,
             seed, rec.videos_per_class * len(SYNTH_CLASSES), rec.video_size, data_dir or out / "data")
    data = generate_synthetic(data_dir or out / "data", videos_per_class=rec.videos_per_class, size=rec.video_size,
                              frames=rec.video_frames, seed=seed, val_per_class=rec.val_per_class, progress=progress,
                              videos=False)
    pairs = [list(p) for p in REVERSAL_PAIRS]
    val_list = paired_val_list(data, pairs)
    data_seconds = time.time() - t_start
    log.info("synthetic data: %s (%s, %.0f s)", data.root, "reused" if data.reused else "generated", data_seconds)

    # Stage 1, the stand-in for the paper's ImageNet initialisation (no pretrained weights here): a TSN trained
    # from scratch on the training split, without validation. Every method starts from its backbone.
    t_pre = time.time()
    backbone = None
    if rec.pretrain_epochs:
        pre_cfg = pretrain_config(rec, data, out, seed, threads)
        log.info("demo: pretraining the shared ResNet-18 backbone (TSN from scratch, %d epochs)", rec.pretrain_epochs)
        if not _train(pre_cfg):
            for label in (*MAIN_METHODS, *ABLATION_METHODS):  # fine-tuned from an older backbone: redo them
                shutil.rmtree(out / _slug(label), ignore_errors=True)
        backbone = str(out / PRETRAIN_RUN / "checkpoints" / "last.pt")
    pretrain_seconds = time.time() - t_pre

    # Stage 2: every method fine-tuned from that backbone with the same recipe (classifier and policy new).
    methods = dict(MAIN_METHODS)
    if ablation:
        methods.update(ABLATION_METHODS)
    rows: list[dict[str, Any]] = []
    for label, model_name in methods.items():
        kwargs: dict[str, Any] = {}
        if model_name.startswith("random_"):
            ada = next(r for r in rows if r["method"] == "AdaFuse-TSN")
            kwargs = {"ratios": [float(x) for x in ada["policy_ratios"]], "seed": seed}
        cfg = demo_config(rec, model_name, data, val_list, out, _slug(label), seed, threads, kwargs,
                          pretrained=backbone)
        log.info("demo: training %s (%s)", label, model_name)
        metrics = _train_and_eval(cfg)
        predictions = read_predictions(out / _slug(label) / "eval" / "predictions.jsonl")
        stats = pair_statistics(predictions, pairs)
        split = [p for p in predictions if not p["id"].startswith("frames_reversed/")]
        stats["top1_split"] = 100.0 * sum(p["correct"] for p in split) / max(len(split), 1)
        rows.append({"method": label, "arch": model_name, "run": str(out / _slug(label)), **stats,
                     **{k: metrics[k] for k in ("params", "gflops_per_video", "gflops_static_per_video", "top1",
                                                "top5", "policy_ratios", "num_videos", "train_seconds",
                                                "eval_seconds")}})

    info = {
        "seed": seed, "recipe": name, "recipe_settings": {k: list(v) if isinstance(v, tuple) else v
                                                          for k, v in asdict(rec).items()},
        "num_classes": data.num_classes, "num_pairs": len(REVERSAL_PAIRS), "num_static": len(STATIC_CLASSES),
        "num_train": data.num_train, "num_val": data.num_val, "frames": rec.num_frames,
        "input_size": rec.video_size, "width": rec.width, "epochs": rec.epochs, "data": data.root,
        "pretrain_epochs": rec.pretrain_epochs, "data_seconds": data_seconds, "pretrain_seconds": pretrain_seconds,
        "seconds": time.time() - t_start,
    }
    table = results_markdown(rows, info)
    result = {"rows": rows, "info": info, "table_markdown": table, "out": str(out)}
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"rows": rows, "info": info}, indent=1) + "\n")
    plot_results(rows, out)
    return result


def recipe_with(name: str, **changes: Any) -> DemoRecipe:
    """A copy of recipe ``name`` with some fields changed (for experiments)."""
    return replace(RECIPES[name], **changes)
