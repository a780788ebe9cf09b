"""Policy, accuracy and compute statistics of evaluated runs: numbers only (drawing is in ``plots.py``).

Everything here takes loaded predictions / metrics (see :mod:`adafuse.analysis.runs`) and returns plain
dicts of Python numbers and lists (JSON-ready), so the same numbers feed the plots, the HTML page and
``report.json``. This module is the single source of dataset-level numbers of the report.

Conventions
-----------
- Actions in the fixed order ``(skip, reuse, keep)`` (``adafuse.models.fusion``), ratios as fractions 0..1.
- Dataset-level policy mix: :func:`adafuse.flops.policy_ratios`, the one definition of the project (also in
  ``metrics.json``, the training log, the demo table and the budget curve): the share of all channel decisions
  (one per video, frame, gated block and channel), i.e. per-block ratios weighted by the blocks' channel counts
  (``block_channels`` of ``metrics.json``). Files without the counts (older evaluations) fall back to weighting
  the blocks equally, and the mix says so (``definition``).
- "Instance" (paper Fig. 4, dark bars): share of a block's channels whose action is the same at every
  frame of a video, averaged over videos. Given per action (``[skip, reuse, keep]``, summing to the total
  share) when the predictions carry it, else as a total only.
- GFLOPs follow the paper's convention (MACs, see ``adafuse.flops``); "relative" budgets are fractions of
  the dense (static, nothing gated) cost of the same model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adafuse.flops import POLICY_RATIO_DEFINITION, policy_ratios
from adafuse.models.fusion import ACTIONS

EQUAL_BLOCKS_DEFINITION = ("share of channel decisions with every gated block weighted equally (metrics.json has no "
                           "block_channels)")
TREND_DEGREE = 3  # the paper's Fig. 4 fits 3rd-order polynomials
TREND_POINTS = 64

Prediction = Mapping[str, Any]


def _f(x: Any) -> float | None:
    """A JSON-safe float (``None`` for NaN/inf/None)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


# ---------------------------------------------------------------------------------------------- policy


def block_ratio_array(predictions: Sequence[Prediction]) -> np.ndarray | None:
    """Per-video per-block ratios ``(V, B, 3)`` (skip, reuse, keep); ``None`` for a dense model (no blocks).

    Raises ``ValueError`` naming the video when some videos have policy data and others do not, or when
    the number of blocks differs.
    """
    if not predictions:
        raise ValueError("no predictions")
    counts = {len(p.get("block_ratios") or []) for p in predictions}
    if counts == {0}:
        return None
    if len(counts) != 1:
        first = predictions[0]
        odd = next(p for p in predictions if len(p.get("block_ratios") or []) != len(first.get("block_ratios") or []))
        raise ValueError(
            f"videos disagree on the number of gated blocks: {first.get('id')!r} has "
            f"{len(first.get('block_ratios') or [])}, {odd.get('id')!r} has {len(odd.get('block_ratios') or [])}"
        )
    arr = np.asarray([p["block_ratios"] for p in predictions], dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"block_ratios must be (blocks, 3) per video; got array of shape {arr.shape[1:]}")
    return arr


def block_constant_array(predictions: Sequence[Prediction]) -> np.ndarray | None:
    """Per-video per-block constant-action shares: ``(V, B)`` (total) or ``(V, B, 3)`` (per action).

    ``None`` when the predictions carry no ``block_constant``.
    """
    values = [p.get("block_constant") or [] for p in predictions]
    if not any(values):
        return None
    if not all(values):
        missing = next(p.get("id") for p, v in zip(predictions, values, strict=True) if not v)
        raise ValueError(f"video {missing!r} has no block_constant while other videos do")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3):
        return arr
    raise ValueError(f"block_constant must be a float or [skip, reuse, keep] per block; got shape {arr.shape[1:]}")


def mix_from_ratios(ratios: Sequence[float], definition: str = POLICY_RATIO_DEFINITION) -> dict[str, Any]:
    """A mix dict from dataset-level ``[skip, reuse, keep]`` fractions (e.g. ``policy_ratios`` of ``metrics.json``):
    ``{"skip", "reuse", "keep"}``, ``"ratios"``, ``"reuse_keep_quotient"`` (reuse / keep, the paper's "mixture ratio
    for feature fusion"; ``None`` when nothing is kept) and ``"definition"`` (what the fractions are shares of)."""
    mix = [float(v) for v in ratios]
    if len(mix) != 3:
        raise ValueError(f"expected [skip, reuse, keep], got {list(ratios)}")
    out: dict[str, Any] = dict(zip(ACTIONS, mix, strict=True))
    out["ratios"] = mix
    out["reuse_keep_quotient"] = mix[1] / mix[2] if mix[2] > 0 else None
    out["definition"] = definition
    return out


def policy_mix(block_ratios: np.ndarray, channels: Sequence[int] | None = None) -> dict[str, Any]:
    """Dataset-level mix (paper Fig. 3) from per-video per-block ratios ``(V, B, 3)`` and the blocks' channel
    counts (``B``): :func:`adafuse.flops.policy_ratios` as a :func:`mix_from_ratios` dict. Without ``channels``
    the blocks are weighted equally and ``definition`` says so."""
    ratios = np.asarray(block_ratios, dtype=np.float64)
    if ratios.ndim != 3 or ratios.shape[2] != 3:
        raise ValueError(f"block_ratios must have shape (V, B, 3); got {ratios.shape}")
    # with one block (or the channel counts known) both weightings agree: the project's definition
    definition = POLICY_RATIO_DEFINITION if channels is not None or ratios.shape[1] == 1 else EQUAL_BLOCKS_DEFINITION
    return mix_from_ratios(policy_ratios(ratios, channels), definition)


def polynomial_trend(values: Sequence[float], degree: int = TREND_DEGREE) -> dict[str, Any]:
    """Least-squares polynomial of ``values`` against block number ``1..B``.

    The degree is lowered to ``B - 2`` (at least 0) for few blocks, so the curve stays a trend rather
    than interpolating every block (3 blocks -> a line, 1-2 blocks -> their mean).

    Returns ``degree``, ``coefficients`` (highest power first, as ``numpy.polyval``), ``fitted`` at the
    blocks, and a smooth curve ``x``/``y`` of ``TREND_POINTS`` points over ``[1, B]``.
    """
    y = np.asarray(values, dtype=np.float64)
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("polynomial_trend needs at least one value")
    deg = int(max(0, min(degree, len(y) - 2)))
    coef = np.polyfit(x, y, deg) if deg > 0 else np.array([y.mean()])
    xs = np.linspace(1.0, float(len(y)), TREND_POINTS)
    return {
        "degree": deg,
        "coefficients": [float(c) for c in coef],
        "fitted": [float(v) for v in np.polyval(coef, x)],
        "x": [float(v) for v in xs],
        "y": [float(v) for v in np.polyval(coef, xs)],
    }


def block_stats(
    block_ratios: np.ndarray,
    block_constant: np.ndarray | None = None,
    block_names: Sequence[str] | None = None,
    trend_degree: int = TREND_DEGREE,
) -> dict[str, Any]:
    """Per-block policy statistics (paper Fig. 4).

    Args:
        block_ratios: ``(V, B, 3)`` per-video per-block skip/reuse/keep fractions.
        block_constant: ``(V, B)`` or ``(V, B, 3)`` constant-action shares per video (or ``None``).
        block_names: ``B`` names (default ``block1..blockB``).

    Returns a dict with ``names`` (B), ``ratios`` (B x 3 mean fractions), ``trend`` (per action a
    :func:`polynomial_trend`), ``instance`` (B x 3 per-action constant shares, or ``None``),
    ``instance_total`` (B, or ``None``) and ``num_videos``.
    """
    ratios = np.asarray(block_ratios, dtype=np.float64)
    if ratios.ndim != 3 or ratios.shape[2] != 3:
        raise ValueError(f"block_ratios must have shape (V, B, 3); got {ratios.shape}")
    num_blocks = ratios.shape[1]
    names = list(block_names) if block_names else []
    if len(names) != num_blocks:
        names = [f"block{i + 1}" for i in range(num_blocks)]
    mean = ratios.mean(axis=0)
    out: dict[str, Any] = {
        "names": names,
        "num_videos": int(ratios.shape[0]),
        "ratios": mean.tolist(),
        "trend": {a: polynomial_trend(mean[:, i], trend_degree) for i, a in enumerate(ACTIONS)},
        "instance": None,
        "instance_total": None,
    }
    if block_constant is not None:
        const = np.asarray(block_constant, dtype=np.float64)
        if const.shape[:2] != ratios.shape[:2]:
            raise ValueError(f"block_constant has shape {const.shape}, expected ({ratios.shape[0]}, {num_blocks}[, 3])")
        cmean = const.mean(axis=0)
        if cmean.ndim == 2:
            out["instance"] = cmean.tolist()
            out["instance_total"] = cmean.sum(axis=1).tolist()
        else:
            out["instance_total"] = cmean.tolist()
    return out


def block_channels_of(metrics: Mapping[str, Any], num_blocks: int) -> list[int] | None:
    """``metrics.json``'s ``block_channels`` when it has one positive count per gated block, else ``None``."""
    channels = metrics.get("block_channels")
    if (isinstance(channels, list) and len(channels) == num_blocks and num_blocks
            and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)):
        return list(channels)
    return None


def policy_from_predictions(
    predictions: Sequence[Prediction], block_names: Sequence[str] | None = None,
    block_channels: Sequence[int] | None = None,
) -> dict[str, Any] | None:
    """``{"mix": policy_mix(...), "blocks": block_stats(...)}`` of a run; ``None`` for a dense model.
    ``block_channels``: the gated blocks' channel counts (the mix's weights; ``None``: blocks weighted equally)."""
    ratios = block_ratio_array(predictions)
    if ratios is None:
        return None
    return {"mix": policy_mix(ratios, block_channels),
            "blocks": block_stats(ratios, block_constant_array(predictions), block_names)}


def policy_stats_from_masks(
    masks: Sequence[Any],
    num_frames: int,
    cost: Any | None = None,
    block_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Dataset-level and per-block statistics straight from masks (for users with a model in hand).

    Args:
        masks: one ``(N*T, C, 3)`` one-hot mask (torch tensor) per gated block, frames of a video contiguous
            (index ``n*T + t``), actions ``(skip, reuse, keep)``; e.g. ``adafuse.models.collect_masks(model)``
            after a forward, or masks of several batches concatenated along dim 0.
        num_frames: T.
        cost: the model's ``adafuse.flops.StaticCost`` (``static_cost(model)``); adds ``"gflops_per_video"``
            (mean dynamic GFLOPs per video) and gives the block names. Without it only the policy is
            summarised.
        block_names: overrides the block names.

    The per-video numbers come from :func:`adafuse.flops.video_accounting` (the same function the engine
    uses for ``predictions.jsonl``), then go through the same aggregation as the report. Returns
    ``{"mix": policy_mix, "blocks": block_stats}`` (+ ``"gflops_per_video"`` with a cost).
    """
    import torch

    from adafuse.flops import BlockCost, StaticCost, video_accounting

    masks = [m if isinstance(m, torch.Tensor) else torch.as_tensor(np.asarray(m)) for m in masks]
    if not masks:
        raise ValueError("no masks given (a dense model has no policy statistics)")
    for b, m in enumerate(masks):
        if m.dim() != 3 or m.shape[2] != 3:
            raise ValueError(f"mask {b} has shape {tuple(m.shape)}, expected (N*T, C, 3)")
    accounting_cost = cost
    if accounting_cost is None:  # policy statistics only: a zero-cost model with these blocks
        blocks = [BlockCost(f"block{i + 1}", int(m.shape[1]), 0.0, 0.0) for i, m in enumerate(masks)]
        accounting_cost = StaticCost(total=0.0, blocks=blocks, floor=0.0, num_frames=num_frames, size=0, params=0)
    records = video_accounting(accounting_cost, list(masks), num_frames)
    names = list(block_names) if block_names else [b.name for b in accounting_cost.blocks]
    result = policy_from_predictions(records, names, [int(m.shape[1]) for m in masks])
    assert result is not None  # masks are non-empty
    if cost is not None:
        result["gflops_per_video"] = float(np.mean([r["gflops"] for r in records]))
    return result


# -------------------------------------------------------------------------------------------- accuracy


def accuracy_stats(
    predictions: Sequence[Prediction], class_names: Sequence[str] | None = None, most_confused: int = 10
) -> dict[str, Any]:
    """Top-1/top-5 (%), confusion matrix and per-class accuracy / GFLOPs.

    Returns ``top1``, ``top5`` (``None`` when no record has ``top5``), ``mean_class_accuracy`` (%, over
    classes with videos), ``num_classes`` K, ``class_names`` (K), ``confusion`` (K x K counts, rows = true
    label, columns = prediction), ``per_class`` (K dicts: ``index, name, count, correct, accuracy`` %,
    ``mean_gflops`` per video; ``None`` for classes without videos), ``most_confused`` (largest
    off-diagonal cells: ``true, pred, count``) and ``gflops_accuracy_correlation`` (Pearson r between the classes'
    accuracy and mean GFLOPs; ``None`` with fewer than 3 classes or no variation).
    """
    labels = np.asarray([p["label"] for p in predictions], dtype=np.int64)
    preds = np.asarray([p["pred"] for p in predictions], dtype=np.int64)
    gflops = np.asarray([p["gflops"] for p in predictions], dtype=np.float64)
    if labels.min() < 0 or preds.min() < 0:
        raise ValueError("negative class index in predictions")
    k = max(len(class_names or []), int(labels.max()) + 1, int(preds.max()) + 1)
    names = list(class_names or [])
    names += [f"class {i}" for i in range(len(names), k)]
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    counts = confusion.sum(axis=1)
    correct = np.diag(confusion)
    per_class = []
    for c in range(k):
        has = counts[c] > 0
        per_class.append({
            "index": c,
            "name": names[c],
            "count": int(counts[c]),
            "correct": int(correct[c]),
            "accuracy": float(100.0 * correct[c] / counts[c]) if has else None,
            "mean_gflops": float(gflops[labels == c].mean()) if has else None,
        })
    top5_hits = [p["label"] in (p.get("top5") or [])[:5] for p in predictions if p.get("top5")]
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:most_confused]
    confused = [
        {"true": int(i), "pred": int(j), "count": int(off[i, j]), "true_name": names[i], "pred_name": names[j]}
        for i, j in zip(*np.unravel_index(order, off.shape), strict=True)
        if off[i, j] > 0
    ]
    present = counts > 0
    class_acc = correct[present] / counts[present]
    class_g = np.asarray([per_class[c]["mean_gflops"] for c in range(k) if present[c]], dtype=np.float64)
    corr = None
    if len(class_acc) >= 3 and class_acc.std() > 0 and class_g.std() > 1e-12 * max(1.0, abs(class_g.mean())):
        corr = float(np.corrcoef(class_acc, class_g)[0, 1])
    return {
        "num_videos": len(predictions),
        "top1": float(100.0 * (labels == preds).mean()),
        "top5": float(100.0 * np.mean(top5_hits)) if len(top5_hits) == len(predictions) else None,
        "mean_class_accuracy": float(100.0 * (correct[present] / counts[present]).mean()),
        "num_classes": k,
        "class_names": names,
        "confusion": confusion.tolist(),
        "per_class": per_class,
        "most_confused": confused,
        "gflops_accuracy_correlation": corr,
    }


# ---------------------------------------------------------------------------------------------- budget


def compute_stats(predictions: Sequence[Prediction], dense_gflops_per_video: float | None, bins: int = 20) -> dict:
    """Distribution of per-video GFLOPs: ``mean, min, median, max`` (GFLOPs per video), ``relative_mean``
    (mean / dense, ``None`` without a dense cost), a histogram ``hist_edges`` (bins + 1) / ``hist_counts``, and
    ``first_frame`` (``None`` unless every video has >= 2 ``frame_gflops``): ``num_videos``, ``most_expensive`` /
    ``cheapest`` (videos whose first sampled frame costs strictly more / less than each later one), ``mean_first``
    and ``mean_rest`` (GFLOPs of the first frame and of a later frame, averaged over videos).
    """
    g = np.asarray([p["gflops"] for p in predictions], dtype=np.float64)
    lo, hi = float(g.min()), float(g.max())
    if hi - lo < 1e-9 * max(1.0, abs(hi)):
        lo, hi = lo - 0.5e-3 * max(1.0, abs(lo)), hi + 0.5e-3 * max(1.0, abs(hi))
    counts, edges = np.histogram(g, bins=bins, range=(lo, hi))
    dense = _f(dense_gflops_per_video)
    frames = [p.get("frame_gflops") or [] for p in predictions]
    first = None
    if all(len(f) >= 2 for f in frames):
        arr = [np.asarray(f, dtype=np.float64) for f in frames]
        first = {
            "num_videos": len(arr),
            # strictly above every later frame (ties are not "most")
            "most_expensive": int(sum(bool(f[0] > f[1:].max()) for f in arr)),
            "cheapest": int(sum(bool(f[0] < f[1:].min()) for f in arr)),
            "mean_first": float(np.mean([f[0] for f in arr])),
            "mean_rest": float(np.mean([f[1:].mean() for f in arr])),
        }
    return {
        "mean": float(g.mean()),
        "min": float(g.min()),
        "median": float(np.median(g)),
        "max": float(g.max()),
        "dense": dense,
        "relative_mean": float(g.mean() / dense) if dense else None,
        "hist_edges": edges.tolist(),
        "hist_counts": counts.astype(int).tolist(),
        "first_frame": first,
    }


def video_budget(
    prediction: Prediction, dense_gflops_per_video: float | None, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Compute budget of one video (supplement Fig. 2).

    Returns ``id, label, label_name, pred, pred_name, correct, gflops`` (this video), ``relative``
    (gflops / dense per video), ``frame_gflops`` (T), ``frame_relative`` (each frame / dense per frame,
    dense per frame = dense per video / T), ``source`` and ``frame_indices`` (0-based).
    """
    names = class_names or []
    frames = [float(v) for v in (prediction.get("frame_gflops") or [])]
    dense = _f(dense_gflops_per_video)
    dense_frame = dense / len(frames) if dense and frames else None
    label, pred = int(prediction["label"]), int(prediction["pred"])
    return {
        "id": str(prediction["id"]),
        "label": label,
        "label_name": names[label] if label < len(names) else f"class {label}",
        "pred": pred,
        "pred_name": names[pred] if pred < len(names) else f"class {pred}",
        "correct": label == pred,
        "gflops": float(prediction["gflops"]),
        "relative": float(prediction["gflops"]) / dense if dense else None,
        "frame_gflops": frames,
        "frame_relative": [f / dense_frame for f in frames] if dense_frame else None,
        "source": prediction.get("source"),
        "frame_indices": [int(i) for i in (prediction.get("frame_indices") or [])],
    }


def budget_extremes(
    predictions: Sequence[Prediction],
    dense_gflops_per_video: float | None,
    class_names: Sequence[str] | None = None,
    count: int = 2,
) -> dict[str, Any]:
    """The ``count`` cheapest and ``count`` most expensive *correctly classified* videos.

    Returns ``{"cheapest": [video_budget...] (ascending GFLOPs), "most_expensive": [...] (descending),
    "num_correct": int}``; the two lists never share a video (with fewer than ``2 * count`` correct
    videos the expensive list gets what is left). Ties are broken by video id.
    """
    correct = sorted((p for p in predictions if p["pred"] == p["label"]), key=lambda p: (p["gflops"], str(p["id"])))
    cheap = correct[:count]
    rest = correct[len(cheap):]
    expensive = sorted(rest, key=lambda p: (-p["gflops"], str(p["id"])))[:count]
    return {
        "num_correct": len(correct),
        "cheapest": [video_budget(p, dense_gflops_per_video, class_names) for p in cheap],
        "most_expensive": [video_budget(p, dense_gflops_per_video, class_names) for p in expensive],
    }


# ------------------------------------------------------------------------------------------------ runs


def run_summary(metrics: Mapping[str, Any], predictions: Sequence[Prediction]) -> dict[str, Any]:
    """One row of the run table: numbers from the predictions, model facts from ``metrics.json``.

    Keys: ``arch, num_videos, top1, top5`` (%), ``gflops_per_video`` (mean over videos),
    ``gflops_static_per_video`` (dense cost), ``saving`` (1 - dynamic/dense), ``params`` (count),
    ``frames``, ``input_size``, ``policy_ratios`` ([s, r, k] or ``None``, see :func:`policy_mix`),
    ``policy_ratios_definition`` and ``reuse_keep_quotient``.
    """
    acc = accuracy_stats(predictions, metrics.get("class_names"))
    g = float(np.mean([p["gflops"] for p in predictions]))
    dense = _f(metrics.get("gflops_static_per_video"))
    ratios = block_ratio_array(predictions)
    mix = policy_mix(ratios, block_channels_of(metrics, ratios.shape[1])) if ratios is not None else None
    params = metrics.get("params")
    return {
        "arch": str(metrics.get("arch") or "?"),
        "num_videos": len(predictions),
        "top1": acc["top1"],
        "top5": acc["top5"],
        "gflops_per_video": g,
        "gflops_static_per_video": dense,
        "saving": 1.0 - g / dense if dense else None,
        "params": int(params) if isinstance(params, (int, float)) else None,
        "frames": metrics.get("frames"),
        "input_size": metrics.get("input_size"),
        "policy_ratios": mix["ratios"] if mix else None,
        "policy_ratios_definition": mix["definition"] if mix else None,
        "reuse_keep_quotient": mix["reuse_keep_quotient"] if mix else None,
    }


def consistency_notes(metrics: Mapping[str, Any], summary: Mapping[str, Any], tol: float = 0.05) -> list[str]:
    """Differences between ``metrics.json`` and the numbers recomputed from the predictions (beyond ``tol``
    in % points / relative GFLOPs), as human-readable notes. The report shows the recomputed numbers."""
    notes = []
    for key, unit in (("top1", "%"), ("top5", "%")):
        a, b = _f(metrics.get(key)), _f(summary.get(key))
        if a is not None and b is not None and abs(a - b) > tol:
            notes.append(f"metrics.json {key} = {a:.2f}{unit} but the predictions give {b:.2f}{unit}")
    a, b = _f(metrics.get("gflops_per_video")), _f(summary.get("gflops_per_video"))
    if a is not None and b is not None and abs(a - b) > tol / 100 * max(abs(a), 1e-9):
        notes.append(f"metrics.json gflops_per_video = {a:.3f} but the predictions average {b:.3f}")
    a_mix, b_mix = metrics.get("policy_ratios"), summary.get("policy_ratios")
    if (isinstance(a_mix, list) and len(a_mix) == 3 and b_mix is not None
            and summary.get("policy_ratios_definition") == POLICY_RATIO_DEFINITION
            and max(abs(float(x) - y) for x, y in zip(a_mix, b_mix, strict=True)) > tol / 100):
        notes.append("metrics.json policy_ratios = " + " / ".join(f"{100 * float(x):.1f}" for x in a_mix)
                     + " % but the predictions give " + " / ".join(f"{100 * y:.1f}" for y in b_mix) + " %")
    n = metrics.get("num_videos")
    if isinstance(n, int) and n != summary.get("num_videos"):
        notes.append(f"metrics.json num_videos = {n} but predictions.jsonl has {summary.get('num_videos')}")
    return notes


def run_stats(
    metrics: Mapping[str, Any], predictions: Sequence[Prediction], videos_per_extreme: int = 2
) -> dict[str, Any]:
    """All statistics of one run: ``summary``, ``policy`` (``None`` for dense), ``accuracy``, ``compute``,
    ``budget`` (``None`` for dense) and ``notes`` (consistency notes)."""
    class_names = metrics.get("class_names")
    summary = run_summary(metrics, predictions)
    block_names = metrics.get("block_names")
    num_blocks = len(predictions[0].get("block_ratios") or []) if predictions else 0
    policy = policy_from_predictions(predictions, block_names, block_channels_of(metrics, num_blocks))
    dense = metrics.get("gflops_static_per_video")
    return {
        "summary": summary,
        "policy": policy,
        "accuracy": accuracy_stats(predictions, class_names),
        "compute": compute_stats(predictions, dense),
        "budget": budget_extremes(predictions, dense, class_names, videos_per_extreme) if policy else None,
        "notes": consistency_notes(metrics, summary),
    }


def comparison_points(summaries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Points of the GFLOPs-vs-accuracy scatter (paper Fig. 2): one per run, in the given order.

    ``summaries``: run name -> :func:`run_summary`. Each point: ``run, arch, gflops, top1, params,
    adaptive`` (has a policy).
    """
    return [
        {
            "run": name,
            "arch": s["arch"],
            "gflops": s["gflops_per_video"],
            "top1": s["top1"],
            "params": s["params"],
            "adaptive": s["policy_ratios"] is not None,
        }
        for name, s in summaries.items()
    ]
