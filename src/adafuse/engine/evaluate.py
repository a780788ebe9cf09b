"""Evaluation: per-video predictions, costs and policy statistics, independent of the number of processes.

Every process evaluates its shard of the validation list; the per-video records are gathered with
``all_gather_object``, de-duplicated by list index (the shards are padded to equal length) and summarised
on the whole set, so the numbers do not depend on how many processes ran (no mean of per-rank means).
Files (docs/ARCHITECTURE.md): ``eval/predictions.jsonl`` (one object per video) and ``eval/metrics.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adafuse.engine.distributed import DistInfo, all_gather_objects
from adafuse.engine.metrics import progress
from adafuse.flops import POLICY_RATIO_DEFINITION, StaticCost, policy_ratios, video_accounting
from adafuse.models import collect_masks, fusion_modules, policy_state, unwrap

log = logging.getLogger("adafuse")


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    cost: StaticCost,
    num_frames: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Run ``model`` (eval mode) over collated batches; returns (one record per video, skipped positions).

    A batch's ``video`` is ``(N, T, 3, H, W)`` or ``(N, V, T, 3, H, W)`` (``V`` views: logits averaged,
    GFLOPs summed over views, per-frame GFLOPs and policy ratios averaged over views). Records carry the
    ``predictions.jsonl`` fields plus ``index`` (list position), ``ce`` (cross-entropy of the video) and
    ``finite`` (False when the video's logits hold NaN/inf). The second value is the list positions of the
    skipped (unreadable) videos.
    """
    model.eval()
    core = unwrap(model)
    gated = bool(fusion_modules(core))
    records: list[dict[str, Any]] = []
    skipped: list[int] = []
    for batch in batches:
        skipped.extend(int(i) for i in batch.get("skipped", []))
        if batch["video"] is None:
            continue
        video = batch["video"]
        n = video.shape[0]
        views = video.shape[1] if video.dim() == 6 else 1
        clips = video.reshape(n * views, *video.shape[-4:]).to(device, non_blocking=True)
        with autocast_context(device, amp_dtype):
            logits = model(clips)
        logits = logits.float().view(n, views, -1).mean(dim=1)
        finite = torch.isfinite(logits).all(dim=1)
        labels = batch["label"].to(device)
        ce = F.cross_entropy(logits, labels, reduction="none")
        masks = collect_masks(core) if gated else []
        acct = video_accounting(cost, masks, num_frames, batch_size=None if gated else n * views)
        probs = logits.softmax(dim=1)
        k = min(5, logits.shape[1])
        top_p, top_i = probs.topk(k, dim=1)
        frame_idx = batch["frame_indices"]
        for i in range(n):
            per_view = acct[i * views : (i + 1) * views]
            label = int(labels[i])
            pred = int(top_i[i, 0])
            record = {
                "id": str(batch["id"][i]),
                "label": label,
                "pred": pred,
                "top5": [int(x) for x in top_i[i]],
                "scores": [float(x) for x in top_p[i]],
                "correct": pred == label,
                "gflops": float(sum(a["gflops"] for a in per_view)),
                **{k: _sum_or_none([a[k] for a in per_view]) for k in ("gflops_released_real", "gflops_released_upb")},
                "frame_gflops": _mean_lists([a["frame_gflops"] for a in per_view]),
                "block_ratios": [_mean_lists(r) for r in zip(*[a["block_ratios"] for a in per_view], strict=True)],
                "block_constant": _mean_lists([a["block_constant"] for a in per_view]),
                "source": str(batch["source"][i]),
                "frame_indices": [int(x) for x in (frame_idx[i] if frame_idx[i].dim() == 1 else frame_idx[i][0])],
                "index": int(batch["index"][i]),
                "ce": float(ce[i]),
                "finite": bool(finite[i]),
            }
            if views > 1:
                record["views"] = views
                record["view_frame_indices"] = frame_idx[i].tolist()
            records.append(record)
    return records, skipped


def _sum_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(values))


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def _mean_lists(lists: list[list[float]]) -> list[float]:
    if not lists or not lists[0]:
        return []
    return [float(sum(col) / len(col)) for col in zip(*lists, strict=True)]


def gather_records(records: list[dict[str, Any]], skipped: list[int]) -> tuple[list[dict[str, Any]], int]:
    """All ranks' records, de-duplicated by ``index`` and sorted by it; the number of distinct skipped
    videos (a padding duplicate skipped by two ranks counts once)."""
    parts = all_gather_objects((records, skipped))
    seen: dict[int, dict[str, Any]] = {}
    for recs, _ in parts:
        for r in recs:
            seen.setdefault(r["index"], r)
    return [seen[i] for i in sorted(seen)], len({i for _, s in parts for i in s})


def summarize(
    records: list[dict[str, Any]],
    cost: StaticCost,
    arch: str,
    run: str,
    class_names: list[str] | None,
    num_frames: int,
    input_size: int,
    views: int = 1,
) -> dict[str, Any]:
    """``metrics.json`` of docs/ARCHITECTURE.md from per-video records (every average is over videos).
    ``num_nonfinite`` counts videos whose logits hold NaN/inf (such an evaluation is refused by
    :func:`adafuse.engine.trainer.evaluate_checkpoint` and never "best" in training).

    ``policy_ratios``: :func:`adafuse.flops.policy_ratios` (the share of all channel decisions, blocks weighted by
    their channel count ``block_channels``).
    """
    n = len(records)
    if n == 0:
        raise ValueError("no video was evaluated (empty list, or every video skipped)")
    top1 = 100.0 * sum(r["correct"] for r in records) / n
    top5 = 100.0 * sum(r["label"] in r["top5"] for r in records) / n
    num_blocks = len(cost.blocks)
    block_ratios = [[sum(r["block_ratios"][b][a] for r in records) / n for a in range(3)] for b in range(num_blocks)]
    channels = [b.channels for b in cost.blocks]
    policy = policy_ratios(block_ratios, channels) if num_blocks else None
    return {
        "arch": arch,
        "run": run,
        "num_videos": n,
        "top1": top1,
        "top5": top5,
        "gflops_per_video": sum(r["gflops"] for r in records) / n,
        "flops_convention": "exact",  # of gflops_per_video / gflops_static_per_video; the released ones follow
        **{f"gflops_per_video_{c}": _mean_or_none([r.get(f"gflops_{c}") for r in records])
           for c in ("released_real", "released_upb")},
        "gflops_static_per_video": cost.total * num_frames * views / 1e9,
        "gflops_static_per_video_released": cost.released * num_frames * views / 1e9,
        "params": cost.params,
        "policy_ratios": policy,
        "policy_ratios_definition": POLICY_RATIO_DEFINITION if num_blocks else None,
        "block_ratios": block_ratios,
        "block_names": [b.name for b in cost.blocks],
        "block_channels": channels,
        "class_names": list(class_names) if class_names is not None else [],
        "frames": num_frames,
        "input_size": input_size,
        "views": views,
        "ce": sum(r["ce"] for r in records) / n,
        "num_nonfinite": sum(1 for r in records if not r.get("finite", True)),
    }


def evaluate(
    model: nn.Module,
    loader: Any,
    cost: StaticCost,
    num_frames: int,
    dist_info: DistInfo,
    amp_dtype: torch.dtype | None = None,
    decision: str = "argmax",
    seed: int = 0,
    show_progress: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Evaluate on every rank's shard of ``loader`` and gather: (records of all videos, skipped count).

    ``decision``: ``argmax`` (deterministic) or ``sample`` (seeded Gumbel sampling per fusion module;
    results then depend on the batch split, as in the released code).
    """
    batches = progress(loader, len(loader), "eval", show_progress and dist_info.is_main)
    with policy_state(unwrap(model), decision=decision, seed=seed if decision == "sample" else None):
        records, skipped = predict_batches(model, batches, cost, num_frames, dist_info.device, amp_dtype)
    return gather_records(records, skipped)


def write_eval(out_dir: str | Path, records: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    """``out_dir/predictions.jsonl`` (one object per video) and ``out_dir/metrics.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".predictions.jsonl.tmp"
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    tmp.replace(out / "predictions.jsonl")
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps({**metrics, "written": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
    tmp.replace(out / "metrics.json")
