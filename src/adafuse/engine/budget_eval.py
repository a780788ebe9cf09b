"""Evaluation at compute budgets: calibration clips from a run's lists, ``adafuse eval --budget/--budgets``,
``adafuse calibrate`` (calibrations stored with the checkpoint).

A budget ``F`` is a fraction of the GFLOPs per video of the same model with every channel kept; the shift that
reaches it is looked up in the checkpoint (``adafuse calibrate`` stores it) or calibrated at run time on
``num_clips`` clips of a list (default: an evenly spread sample of the training list, centre crop, evaluation
sampling). ``eval/budget_curve.json``::

    {"gflops_all_keep": G, "checkpoint": str, "calibration": {...}, "own_policy": {...}, "points": [
        {"budget", "shift", "gflops_per_video", "fraction", "calibrated_fraction", "top1", "top5",
         "policy_ratios", ["sparse_ms_per_clip", "sparse_gflops_per_clip"]}, ...]}

``fraction`` is what the evaluated videos spent (it differs from the calibration clips' ``calibrated_fraction``
by how much the two sets differ).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adafuse.config import Config

log = logging.getLogger("adafuse")

DEFAULT_CALIB_CLIPS = 32


def calibration_clips(cfg: Config, num_classes: int, class_names: list[str] | None, input_spec: Any,
                      list_file: str | Path | None = None,
                      num_clips: int = DEFAULT_CALIB_CLIPS) -> tuple[torch.Tensor, str]:
    """``num_clips`` clips ``(N, T, 3, S, S)`` of ``list_file`` (default ``data.train_list``), evenly spread over
    the list, with the evaluation transform (one centre view) and deterministic sampling. Returns
    ``(clips, description)``."""
    from adafuse.engine.data import build_dataset

    source = str(list_file or cfg.data.train_list or "")
    if not source:
        raise ValueError("no calibration clips: the checkpoint's config has no data.train_list; "
                         "give a list file of calibration clips")
    d = cfg.to_dict()
    d["data"]["val_list"] = source
    d["eval"]["num_clips"] = 1
    d["eval"]["three_crop"] = False
    dataset = build_dataset(Config.from_dict(d, source="<calibration>"), "val", num_classes, class_names, input_spec)
    n = len(dataset)
    if num_clips < 1:
        raise ValueError(f"the number of calibration clips must be >= 1, got {num_clips}")
    picks = np.unique(np.linspace(0, n - 1, min(num_clips, n)).round().astype(int))
    videos = []
    for i in picks:
        sample = dataset[int(i)]
        if sample is not None:
            v = sample["video"]
            videos.append(v[0] if v.dim() == 5 else v)
    if not videos:
        raise ValueError(f"{source}: no calibration clip could be read")
    return torch.stack(videos), f"{source} ({len(videos)} of {n} clips)"


def resolve_shift(model: torch.nn.Module, payload: dict[str, Any], cfg: Config | None, budget: float | None,
                  shift: float | None, calib_list: str | None = None, calib_clips: int = DEFAULT_CALIB_CLIPS,
                  size: int | None = None) -> tuple[float, dict[str, Any] | None]:
    """The shift for a requested ``budget`` or the given ``shift``; ``(0.0, None)`` when neither is given.

    A budget uses the calibration stored in ``payload`` for crop ``size`` (default ``data.input_size``) unless
    ``calib_list`` is given; otherwise it is calibrated now on clips of ``calib_list`` (default the training
    list). Returns ``(shift, calibration dict or None)``."""
    from adafuse.inference.budget import calibrate, find_stored

    if budget is not None and shift is not None:
        raise ValueError("give a budget or a shift, not both")
    if budget is None:
        return float(shift or 0.0), None
    if size is None:
        size = int(cfg.data.input_size) if cfg is not None else int(model.input_spec.size)
    if calib_list is None:
        stored = find_stored(payload, budget, size)
        if stored is not None:
            from adafuse.models.budget_conditioning import set_budget_target

            set_budget_target(model, budget)  # a budget-conditioned model also gets the budget as its target
            log.info("budget %g: stored calibration, shift %g", budget, stored["shift"])
            return float(stored["shift"]), {**stored, "stored": True}
    if cfg is None:
        raise ValueError(f"no stored calibration for budget {budget:g} and no config to find calibration clips: "
                         "give a list of calibration clips")
    clips, source = calibration_clips(cfg, model.num_classes, payload.get("class_names"), model.input_spec,
                                      calib_list, calib_clips)
    cal = calibrate(model, clips, budget, source=source)
    log.info("budget %g: shift %g calibrated on %s (%.4f achieved, %d passes)", budget, cal.shift, source,
             cal.achieved, cal.evaluations)
    return cal.shift, {**cal.to_dict(), "stored": False}


def _sparse_timing(model: torch.nn.Module, clips: torch.Tensor, repeats: int = 1) -> tuple[float, float]:
    """Median ms per clip and mean GFLOPs per clip of the sparse executor on ``clips`` ``(N, T, 3, S, S)``."""
    from adafuse.inference import StreamingRecognizer

    rec = StreamingRecognizer(model, sparse=True)
    if not rec.streamable:
        raise ValueError(f"{getattr(model, 'arch', 'model')} cannot run on the sparse executor: {rec.obstacle}")
    times, flops = [], []
    with torch.inference_mode():
        rec.recognize_clip(clips[:1])  # warm-up
        for _ in range(repeats):
            for i in range(clips.shape[0]):
                t0 = time.perf_counter()
                rec.recognize_clip(clips[i:i + 1])
                times.append(1e3 * (time.perf_counter() - t0))
                flops.append(rec.total_flops / 1e9)
    return statistics.median(times), float(np.mean(flops))


def evaluate_budgets(
    checkpoint_path: str | Path,
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    out_dir: str | Path | None = None,
    budgets: Sequence[float] | None = None,
    budget: float | None = None,
    shift: float | None = None,
    calib_list: str | None = None,
    calib_clips: int = DEFAULT_CALIB_CLIPS,
    sparse_clips: int = 0,
) -> dict[str, Any]:
    """Evaluate a checkpoint at one budget/shift (writes ``predictions.jsonl`` + ``metrics.json`` with the budget
    fields) or at several ``budgets`` (writes ``budget_curve.json``, and the usual ``predictions.jsonl`` +
    ``metrics.json`` of the model's own policy). ``sparse_clips > 0`` also times the
    sparse executor on that many validation clips at each point. Returns the metrics (one point) or the curve."""
    from adafuse.engine.data import EpochSampler, build_dataset, build_loader, check_inputs, resolve_classes
    from adafuse.engine.distributed import barrier, broadcast_object
    from adafuse.engine.evaluate import evaluate, summarize, write_eval
    from adafuse.engine.trainer import amp_dtype_for, default_eval_dir, load_for_eval
    from adafuse.flops import static_cost
    from adafuse.inference.budget import calibrate, check_budget, set_budget_shift

    checkpoint_path = Path(checkpoint_path)
    cfg, dist_info, model, payload = load_for_eval(checkpoint_path, config_path, overrides)
    check_inputs(cfg, required=("val",), optional=(), pretrained=False)
    class_names = payload.get("class_names") or resolve_classes(cfg)
    size = cfg.data.input_size
    eval_cost = static_cost(model, size)
    views = _views(cfg)
    dataset = build_dataset(cfg, "val", model.num_classes, class_names, model.input_spec)
    sampler = EpochSampler(len(dataset), False, 0, dist_info.rank, dist_info.world_size)
    loader = build_loader(dataset, sampler, cfg.eval.batch_size, cfg.data.num_workers, cfg.run.seed)
    amp = amp_dtype_for(cfg.train.amp, dist_info.device)
    out = Path(out_dir) if out_dir is not None else default_eval_dir(checkpoint_path)
    run_name = cfg.run.name or checkpoint_path.stem

    def run_point(s: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        set_budget_shift(model, s)
        model.to(dist_info.device)
        records, skipped = evaluate(model, loader, eval_cost, cfg.model.num_frames, dist_info, amp, "argmax",
                                    cfg.eval.seed, cfg.run.progress)
        metrics = summarize(records, eval_cost, payload["arch"], run_name, class_names, cfg.model.num_frames, size,
                            views)
        metrics.update(num_skipped=skipped, checkpoint=str(checkpoint_path), decision="argmax",
                       epoch=payload.get("epoch"), budget_shift=s)
        return records, metrics

    sparse_set = None
    if sparse_clips > 0:
        picks = range(min(sparse_clips, len(dataset)))
        vids = [v for v in (dataset[i] for i in picks) if isinstance(v, dict)]  # skipped samples dropped
        sparse_set = torch.stack([v["video"][0] if v["video"].dim() == 5 else v["video"] for v in vids])

    if not budgets:
        s, cal = resolve_shift(model, payload, cfg, budget, shift, calib_list, calib_clips)
        records, metrics = run_point(s)
        metrics["budget"] = budget
        metrics["calibration"] = cal
        if sparse_set is not None:
            metrics["sparse_ms_per_clip"], metrics["sparse_gflops_per_clip"] = _sparse_timing(model, sparse_set)
        if dist_info.is_main:
            write_eval(out, records, metrics)
            (out / "config.yaml").write_text(cfg.to_yaml())
        metrics = broadcast_object(metrics)
        barrier()
        return metrics

    if shift is not None or budget is not None:
        raise ValueError("--budgets cannot be combined with --budget or --shift")
    floor = eval_cost.floor / eval_cost.total
    for b in budgets:
        check_budget(b, floor)
    clips, source = calibration_clips(cfg, model.num_classes, class_names, model.input_spec, calib_list, calib_clips)
    records, own = run_point(0.0)  # the model's own policy: the run's usual eval files, and the curve's reference
    if dist_info.is_main:
        write_eval(out, records, own)
        (out / "config.yaml").write_text(cfg.to_yaml())
    points = []
    for b in budgets:
        cal = calibrate(model, clips, b, source=source)
        _, metrics = run_point(cal.shift)
        all_keep = metrics["gflops_static_per_video"]
        point = {"budget": b, "shift": cal.shift, "gflops_per_video": metrics["gflops_per_video"],
                 "fraction": metrics["gflops_per_video"] / all_keep, "calibrated_fraction": cal.achieved,
                 "top1": metrics["top1"], "top5": metrics["top5"], "policy_ratios": metrics["policy_ratios"],
                 "num_videos": metrics["num_videos"]}
        if sparse_set is not None:
            point["sparse_ms_per_clip"], point["sparse_gflops_per_clip"] = _sparse_timing(model, sparse_set)
        log.info("budget %.3f: shift %g, %.4f GFLOPs/video (%.3f of all-keep), top1 %.2f%%", b, cal.shift,
                 point["gflops_per_video"], point["fraction"], point["top1"])
        points.append(point)
    set_budget_shift(model, 0.0)
    curve = {
        "gflops_all_keep": eval_cost.total * cfg.model.num_frames * views / 1e9,
        "arch": payload["arch"], "run": run_name, "checkpoint": str(checkpoint_path),
        "floor": floor, "frames": cfg.model.num_frames, "input_size": size, "views": views,
        "calibration": {"source": source, "num_clips": int(clips.shape[0])},
        "threads": torch.get_num_threads(),
        "own_policy": {"shift": 0.0, "gflops_per_video": own["gflops_per_video"],
                       "fraction": own["gflops_per_video"] / own["gflops_static_per_video"], "top1": own["top1"],
                       "top5": own["top5"], "policy_ratios": own["policy_ratios"]},
        "points": points,
    }
    if dist_info.is_main:
        import json

        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".budget_curve.json.tmp"
        tmp.write_text(json.dumps(curve, indent=1) + "\n")
        tmp.replace(out / "budget_curve.json")
    curve = broadcast_object(curve)
    barrier()
    return curve


def _views(cfg: Config) -> int:
    return cfg.eval.num_clips * (3 if cfg.eval.three_crop else 1)


def calibrate_checkpoint(checkpoint_path: str | Path, budgets: Sequence[float], out_path: str | Path | None = None,
                         calib_list: str | None = None, calib_clips: int = DEFAULT_CALIB_CLIPS,
                         config_path: str | Path | None = None, overrides: list[str] | None = None) -> list[Any]:
    """Calibrate ``budgets`` and store them in the checkpoint (``out_path``, default: in place, atomically)."""
    from adafuse.engine.checkpoint import save_atomic
    from adafuse.engine.trainer import checkpoint_config
    from adafuse.inference.budget import calibrate, with_calibrations
    from adafuse.models.serialization import load_checkpoint_file, model_from_checkpoint

    checkpoint_path = Path(checkpoint_path)
    payload = load_checkpoint_file(checkpoint_path)
    cfg = checkpoint_config(payload, config_path, overrides)
    model, _ = model_from_checkpoint(payload)
    clips, source = calibration_clips(cfg, model.num_classes, payload.get("class_names"), model.input_spec,
                                      calib_list, calib_clips)
    size = int(clips.shape[-1])
    cals = [calibrate(model, clips, b, source=source) for b in budgets]
    save_atomic(with_calibrations(payload, cals, size), out_path or checkpoint_path)
    return cals
