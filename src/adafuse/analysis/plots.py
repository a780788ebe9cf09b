"""Figures of the report (drawing only: every number comes from :mod:`adafuse.analysis.stats`).

Each ``plot_*`` function takes statistics dicts, writes one PNG and returns its path. Every figure is drawn on
its own Agg canvas: no pyplot state, no global backend change, no display needed.

Colours are fixed across all figures: skip = red, reuse = orange, keep = blue (light shades for ratios, dark
shades for the "instance" shares); adaptive runs, per-class and per-video quantities purple; dense runs grey.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from adafuse.analysis.stats import ACTIONS

ACTION_COLORS = {"skip": "#ef8a7f", "reuse": "#f6bd60", "keep": "#7fb0e0"}
ACTION_DARK = {"skip": "#b3261e", "reuse": "#c06a00", "keep": "#1d5ca3"}
ACCENT_COLOR = "#5b4a9e"  # purple: kept apart from the action colours
DENSE_COLOR = "#8a8f98"
NEUTRAL_COLOR = "#9aa8ba"
GOOD_COLOR = "#2e7d32"
BAD_COLOR = "#b3261e"
TEXT_COLOR = "#222222"
DPI = 110

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.edgecolor": "#555555",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.8,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "text.color": TEXT_COLOR,
    "axes.labelcolor": TEXT_COLOR,
}


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global backend switch, no display needed."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(STYLE):
        fig.savefig(path, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return path


def _short(text: str, width: int = 38) -> str:
    """``text`` cut to ``width`` characters with an ellipsis in the middle (class names often differ only
    at their end: "Pushing something from left to right" / "... right to left")."""
    if len(text) <= width:
        return text
    head = (width - 1) * 3 // 5
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _wrap(text: str, width: int) -> str:
    """Greedy wrap at spaces and after ``_``/``-``/``/`` (run names like ``adafuse_tsm_r50_sthv1``)."""
    tokens = [t for t in re.split(r"(?<=[ _/-])", text) if t]
    lines: list[str] = []
    line = ""
    for token in tokens:
        if line and len((line + token).rstrip()) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
    lines.append(line.rstrip())
    return "\n".join(lines)


def _place_labels(
    fig: Figure, ax: Any, points: Sequence[tuple[float, float, str, float]], fontsize: float = 8.0
) -> None:
    """Annotate data points without overlapping labels: for each ``(x, y, text, radius_pt)`` try offsets
    right/left, above/below the marker (``radius_pt``: marker radius in points) and take the first whose
    estimated box overlaps no earlier label; else the first one."""
    fig.draw_without_rendering()  # final layout, so transData maps to the real pixel positions
    px = fig.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    for x, y, text, radius in points:
        lines = text.split("\n")
        w = 0.58 * fontsize * max(len(line) for line in lines) * px
        h = 1.25 * fontsize * len(lines) * px
        cx, cy = ax.transData.transform((x, y))
        r = (0.7 * radius + 3) * px
        candidates = [(r, r * 0.6, "left", "bottom"), (r, -r * 0.6, "left", "top"),
                      (-r, r * 0.6, "right", "bottom"), (-r, -r * 0.6, "right", "top")]
        choice = candidates[0]
        for cand in candidates:
            dx, dy, ha, va = cand
            x0 = cx + dx - (w if ha == "right" else 0)
            y0 = cy + dy - (h if va == "top" else 0)
            box = (x0, y0, x0 + w, y0 + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                choice = cand
                break
        dx, dy, ha, va = choice
        x0 = cx + dx - (w if ha == "right" else 0)
        y0 = cy + dy - (h if va == "top" else 0)
        placed.append((x0, y0, x0 + w, y0 + h))
        ax.annotate(text, (x, y), xytext=(dx / px, dy / px), textcoords="offset points", ha=ha, va=va,
                    fontsize=fontsize, zorder=5)


# ---------------------------------------------------------------------------------------------- policy


def plot_policy_mix(mixes: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Paper Fig. 3: one pie of the dataset-level skip/reuse/keep mix per run, with the reuse/keep quotient.

    ``mixes``: run name -> :func:`stats.policy_mix` dict (at least one).
    """
    if not mixes:
        raise ValueError("plot_policy_mix needs at least one run with a policy")
    n = len(mixes)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    with matplotlib.rc_context(STYLE):
        fig = _figure(2.9 * cols + 0.2, 3.1 * rows + 0.5)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat[n:]:
            ax.set_axis_off()
        for ax, (name, mix) in zip(axes.flat, mixes.items(), strict=False):
            values = [mix[a] for a in ACTIONS]
            wedges, _texts = ax.pie(
                values,
                colors=[ACTION_COLORS[a] for a in ACTIONS],
                startangle=90,
                counterclock=False,
                wedgeprops={"edgecolor": "white", "linewidth": 1.5},
            )
            for wedge, value in zip(wedges, values, strict=True):
                if value <= 0:
                    continue
                angle = np.deg2rad((wedge.theta1 + wedge.theta2) / 2)
                inside = value >= 0.08  # small wedges get their label outside the pie
                r = 0.66 if inside else 1.2
                ax.text(r * np.cos(angle), r * np.sin(angle), f"{100 * value:.1f}%", ha="center", va="center",
                        fontsize=10, fontweight="bold" if inside else "normal", color=TEXT_COLOR)
            q = mix.get("reuse_keep_quotient")
            q_text = f"reuse / keep = {q:.3f}" if q is not None else "reuse / keep = n/a (nothing kept)"
            ax.set_title(_wrap(name, 28), fontsize=11)
            ax.text(0.5, -0.04, q_text, transform=ax.transAxes, ha="center", va="top", fontsize=10)
            ax.set_aspect("equal")
        handles = [Patch(facecolor=ACTION_COLORS[a], label=a) for a in ACTIONS]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=10)
        fig.suptitle("Policy mix over all videos, frames, channels and gated blocks", fontsize=12)
    return _save(fig, path)


def plot_block_policy(blocks: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Paper Fig. 4: per-block stacked skip/reuse/keep bars with polynomial trends, and the "instance" bars.

    ``blocks``: :func:`stats.block_stats` dict. Top panel: stacked fractions per block (light colours),
    dashed curves = polynomial trends of the boundaries (skip, and skip + reuse = 1 - keep). Bottom panel:
    share of channels whose action is the same at every frame of a video (per action in dark colours when
    available, else the total in dark grey).
    """
    names = list(blocks["names"])
    ratios = np.asarray(blocks["ratios"], dtype=np.float64)
    num = len(names)
    x = np.arange(1, num + 1)
    width = max(6.5, min(11.0, 2.5 + 0.42 * num))
    with matplotlib.rc_context(STYLE):
        fig = _figure(width, 6.2)
        ax, ax_inst = fig.subplots(2, 1, sharex=True, height_ratios=[1.6, 1.0])
        bottom = np.zeros(num)
        for i, a in enumerate(ACTIONS):
            ax.bar(x, ratios[:, i], 0.78, bottom=bottom, color=ACTION_COLORS[a], edgecolor="white",
                   linewidth=0.6, label=a)
            bottom += ratios[:, i]
        trend = blocks["trend"]
        tx = np.asarray(trend["skip"]["x"])
        skip_curve = np.asarray(trend["skip"]["y"])
        reuse_curve = np.asarray(trend["reuse"]["y"])
        degree = trend["skip"]["degree"]
        ax.plot(tx, skip_curve, "--", color="black", linewidth=1.4)
        ax.plot(tx, skip_curve + reuse_curve, "--", color="black", linewidth=1.4)
        ax.set_ylim(0, 1)
        ax.set_xlim(0.4, num + 0.6)
        ax.set_ylabel("fraction of channel-frames")
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"])
        fig.suptitle(_wrap(title or "Policy per gated block", 90), fontsize=11.5, fontweight="bold")
        handles = [Patch(facecolor=ACTION_COLORS[a], label=a) for a in reversed(ACTIONS)]  # stacking order
        handles.append(Line2D([], [], color="black", linestyle="--", label=f"trend (degree-{degree} polynomial)"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0))

        instance = blocks.get("instance")
        total = blocks.get("instance_total")
        if instance is not None:
            inst = np.asarray(instance, dtype=np.float64)
            w = 0.26
            for i, a in enumerate(ACTIONS):
                ax_inst.bar(x + (i - 1) * w, inst[:, i], w, color=ACTION_DARK[a], label=f"{a} (instance)")
            ax_inst.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        elif total is not None:
            ax_inst.bar(x, np.asarray(total, dtype=np.float64), 0.6, color="#444b55",
                        label="any action\n(instance)")
            ax_inst.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            ax_inst.text(0.5, 0.5, "no per-video constancy data (block_constant) in the predictions",
                         transform=ax_inst.transAxes, ha="center", va="center", color="#666666")
        ax_inst.set_ylim(0, 1)
        ax_inst.set_yticks([0, 0.5, 1.0], ["0%", "50%", "100%"])
        ax_inst.yaxis.grid(True)
        ax_inst.set_axisbelow(True)
        ax_inst.set_ylabel("channels constant\nover the video")
        labels = [_short(n, 14) for n in names]
        ax_inst.set_xticks(x, labels, rotation=45 if num > 8 else 0, ha="right" if num > 8 else "center")
        ax_inst.set_xlabel("gated block (forward order)")
    return _save(fig, path)


# ----------------------------------------------------------------------------------------- comparison


def plot_flops_accuracy(points: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Paper Fig. 2: GFLOPs per video (x) vs top-1 (y), one marker per run, area proportional to params."""
    with matplotlib.rc_context(STYLE):
        fig = _figure(7.5, 4.8)
        ax = fig.subplots()
        params = [p["params"] for p in points if p.get("params")]
        pmax = max(params) if params else None
        max_area = 1600.0

        def area(p: Mapping[str, Any]) -> float:
            return max_area * p["params"] / pmax if pmax and p.get("params") else 120.0

        gs = [p["gflops"] for p in points]
        accs = [p["top1"] for p in points]
        labels: list[tuple[float, float, str, float]] = []
        for p in points:
            color = ACCENT_COLOR if p["adaptive"] else DENSE_COLOR
            ax.scatter(p["gflops"], p["top1"], s=area(p), color=color, alpha=0.55, edgecolors=color, linewidths=1.5,
                       zorder=3)
            ax.scatter(p["gflops"], p["top1"], s=8, color=color, zorder=4)
            params_text = f", {p['params'] / 1e6:.1f}M" if p.get("params") else ""
            labels.append((p["gflops"], p["top1"], f"{p['run']}\n{p['arch']}{params_text}",
                           float(np.sqrt(area(p) / np.pi))))
        gspan = max(gs) - min(gs) or max(1.0, abs(gs[0]) * 0.5)
        aspan = max(accs) - min(accs) or 10.0
        ax.set_xlim(max(0.0, min(gs) - 0.25 * gspan), max(gs) + 0.45 * gspan)
        ax.set_ylim(max(0.0, min(accs) - 0.3 * aspan), min(100.0, max(accs) + 0.35 * aspan) + 1e-6)
        ax.grid(True)
        ax.set_axisbelow(True)
        ax.set_xlabel("GFLOPs per video (mean over evaluated videos)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title("Accuracy vs computation (marker area ∝ parameters)")
        handles = [
            Line2D([], [], marker="o", linestyle="", markersize=9, color=ACCENT_COLOR, alpha=0.6,
                   label="adaptive (policy)"),
            Line2D([], [], marker="o", linestyle="", markersize=9, color=DENSE_COLOR, alpha=0.6, label="dense"),
        ]
        ax.legend(handles=handles, loc="lower right")
        _place_labels(fig, ax, labels, fontsize=8.5)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- budget


def plot_video_budgets(
    budget: Mapping[str, Any],
    thumbnails: Mapping[str, tuple[np.ndarray | None, str | None]],
    path: str | os.PathLike,
) -> Path:
    """Supplement Fig. 2: strips of the sampled frames of the cheapest / most expensive correct videos.

    ``budget``: :func:`stats.budget_extremes` dict; ``thumbnails``: video id -> ``(frames (T, h, w, 3) or
    None, reason or None)`` from :func:`adafuse.analysis.frames.read_thumbnails`. Above each frame: its
    index and GFLOPs relative to a dense frame; each row's title: class, total GFLOPs and % of dense.
    """
    rows = [("cheapest", v) for v in budget["cheapest"]] + [("most expensive", v) for v in budget["most_expensive"]]
    if not rows:
        raise ValueError("no correctly classified videos to show")
    cols = max(max(len(v["frame_indices"]), len(v["frame_gflops"]), 1) for _, v in rows)
    aspect = 4 / 3
    for frames, _ in thumbnails.values():
        if frames is not None:
            aspect = frames.shape[2] / frames.shape[1]
            break
    tile_w = min(1.35, 10.2 / cols)
    tile_h = tile_w / aspect
    with matplotlib.rc_context(STYLE):
        fig = _figure(tile_w * cols + 0.3, (tile_h + 0.75) * len(rows))
        subfigs = np.atleast_1d(fig.subfigures(len(rows), 1))
        for sub, (kind, v) in zip(subfigs, rows, strict=True):
            frames, reason = thumbnails.get(v["id"], (None, "frames not loaded"))
            rel = v.get("relative")
            total = f"{v['gflops']:.2f} GFLOPs" + (f" = {100 * rel:.0f}% of dense" if rel is not None else "")
            color = GOOD_COLOR if kind == "cheapest" else BAD_COLOR
            sub.suptitle(f"{kind}: {_short(v['label_name'], 48)} (video {_short(v['id'], 24)}) — {total}",
                         fontsize=10, color=color, fontweight="bold", x=0.01, ha="left")
            axes = np.atleast_1d(sub.subplots(1, cols))
            frame_rel = v.get("frame_relative")
            for t, ax in enumerate(axes):
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color("#bbbbbb")
                if frames is not None and t < len(frames):
                    ax.imshow(frames[t])
                else:
                    ax.set_facecolor("#eeeeee")
                    ax.set_xlim(0, aspect)
                    ax.set_ylim(0, 1)
                    ax.set_aspect("equal")
                    if t == 0 and reason:
                        ax.text(0.06, 0.5, "frames\nunavailable", fontsize=7.5, color="#666666", va="center")
                idx = v["frame_indices"][t] if t < len(v["frame_indices"]) else None
                if frame_rel is not None and t < len(frame_rel):
                    label = f"{100 * frame_rel[t]:.0f}%"
                    # a bar under the frame: this frame's cost relative to the same frame run densely
                    ax.add_patch(Rectangle((0, -0.13), 1.0, 0.08, transform=ax.transAxes, color="#e4e6ea",
                                           clip_on=False))
                    ax.add_patch(Rectangle((0, -0.13), min(1.0, frame_rel[t]), 0.08, transform=ax.transAxes,
                                           color=color, clip_on=False))
                elif t < len(v["frame_gflops"]):
                    label = f"{v['frame_gflops'][t]:.2f} G"
                else:
                    label = ""
                head = f"#{idx}  " if idx is not None else ""
                ax.set_title(f"{head}{label}", fontsize=8.5, fontweight="normal", pad=2)
    return _save(fig, path)


def plot_gflops_histogram(compute: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Distribution of per-video GFLOPs (histogram from :func:`stats.compute_stats`) with the mean marked."""
    edges = np.asarray(compute["hist_edges"])
    counts = np.asarray(compute["hist_counts"])
    with matplotlib.rc_context(STYLE):
        fig = _figure(7.0, 3.0)
        ax = fig.subplots()
        ax.bar(edges[:-1], counts, np.diff(edges), align="edge", color=NEUTRAL_COLOR, edgecolor="white")
        dense = compute.get("dense")
        note = f"mean {compute['mean']:.2f} GFLOPs"
        if dense:
            note += f" = {100 * compute['mean'] / dense:.0f}% of dense ({dense:.2f})"
        ax.axvline(compute["mean"], color=ACCENT_COLOR, linestyle="--", linewidth=1.5, label=note)
        ax.set_ylim(0, max(1, int(counts.max())) * 1.22)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper right", fontsize=9)
        ax.set_xlabel("GFLOPs per video")
        ax.set_ylabel("videos")
        ax.set_title(_wrap(title or "Per-video computation", 80))
        ax.yaxis.grid(True)
        ax.set_axisbelow(True)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------- accuracy


def plot_confusion(accuracy: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Confusion matrix, rows = true class normalised to 1 (recall), counts printed for up to 15 classes;
    class names on the axes for up to 40 classes."""
    cm = np.asarray(accuracy["confusion"], dtype=np.float64)
    k = cm.shape[0]
    names = accuracy["class_names"]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = 4.4 if k <= 6 else min(9.0, 4.0 + 0.14 * k)
    labelled = k <= 40
    with matplotlib.rc_context(STYLE):
        fig = _figure(size + (4.4 if labelled else 1.6), size)
        ax = fig.subplots()
        im = ax.imshow(norm, cmap="Purples", vmin=0, vmax=1, interpolation="nearest")
        if labelled:  # names on the rows, indices on the columns (names would not fit under the columns)
            fs = 9 if k <= 15 else 7
            ax.set_yticks(range(k), [f"{_short(n, 42)}  {i}" for i, n in enumerate(names)], fontsize=fs)
            ax.set_xticks(range(k), [str(i) for i in range(k)], fontsize=fs)
        else:  # too many names: index ticks to find a class in the table of the page
            step = 10 if k <= 100 else 20 if k <= 300 else 50
            ax.set_xticks(range(0, k, step))
            ax.set_yticks(range(0, k, step))
        if k <= 15:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8.5,
                                color="white" if norm[i, j] > 0.55 else TEXT_COLOR)
        ax.set_xlabel("predicted class" + (" (index)" if labelled else ""))
        ax.set_ylabel("true class")
        ax.set_title(_wrap(title or "Confusion matrix", 70))
        for spine in ax.spines.values():
            spine.set_visible(False)
        cbar = fig.colorbar(im, ax=ax, shrink=0.8)
        cbar.set_label("share of the true class's videos")
    return _save(fig, path)


def plot_class_accuracy(
    accuracy: Mapping[str, Any], path: str | os.PathLike, title: str = "", max_classes: int = 40
) -> Path:
    """Per-class top-1 accuracy as horizontal bars sorted by accuracy (video counts on the right);
    with more than ``max_classes`` classes only the lowest and highest ``max_classes // 2`` are drawn."""
    classes = [c for c in accuracy["per_class"] if c["count"] > 0]
    classes.sort(key=lambda c: (c["accuracy"], c["name"]))
    total = len(classes)
    subset = total > max_classes
    if subset:
        half = max_classes // 2
        classes = classes[:half] + [None] + classes[-half:]
    n = len(classes)
    with matplotlib.rc_context(STYLE):
        fig = _figure(8.0, 1.1 + 0.24 * n)
        ax = fig.subplots()
        y = np.arange(n)
        accs = [c["accuracy"] if c else 0.0 for c in classes]
        colors = [ACCENT_COLOR if c else "white" for c in classes]
        ax.barh(y, accs, 0.72, color=colors, alpha=0.8)
        labels = [f"{_short(c['name'], 44)}  {c['index']}" if c else "⋯" for c in classes]
        ax.set_yticks(y, labels, fontsize=8.5 if n > 20 else 9.5)
        for yi, c in zip(y, classes, strict=True):
            if c:
                ax.text(min(c["accuracy"], 100) + 1, yi, f"{c['accuracy']:.0f}%  (n={c['count']})", va="center",
                        fontsize=8, zorder=4, bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6})
        mean = accuracy["mean_class_accuracy"]
        ax.axvline(mean, color="#444444", linestyle="--", linewidth=1.1, zorder=3)
        ax.text(mean, n - 0.3, f" mean {mean:.1f}%", color="#444444", fontsize=8.5, va="bottom")
        ax.set_xlim(0, 118)
        ax.set_ylim(-0.6, n + 0.2)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.xaxis.grid(True)
        ax.set_axisbelow(True)
        ax.set_xlabel("top-1 accuracy (%)")
        suffix = f"\n({max_classes // 2} lowest and {max_classes // 2} highest of {total} classes)" if subset else ""
        fig.suptitle(_wrap(title or "Per-class accuracy", 70) + suffix, fontsize=11.5, fontweight="bold")
    return _save(fig, path)


def plot_class_accuracy_vs_gflops(
    accuracy: Mapping[str, Any], path: str | os.PathLike, title: str = "", label_count: int = 6
) -> Path:
    """Per class: mean GFLOPs per video (x) vs top-1 accuracy (y), marker area ∝ number of videos. Up to 12
    classes are all named, else the ``label_count // 2`` cheapest and most expensive ones."""
    classes = [c for c in accuracy["per_class"] if c["count"] > 0]
    xs = np.asarray([c["mean_gflops"] for c in classes])
    ys = np.asarray([c["accuracy"] for c in classes])
    ns = np.asarray([c["count"] for c in classes], dtype=np.float64)
    with matplotlib.rc_context(STYLE):
        fig = _figure(7.5, 4.6)
        ax = fig.subplots()
        sizes = 15 + min(280.0, 5000.0 / len(classes)) * ns / ns.max()
        ax.scatter(xs, ys, s=sizes, color=ACCENT_COLOR, alpha=0.45, edgecolors=ACCENT_COLOR, linewidths=1)
        order = np.argsort(xs, kind="stable")
        half = max(1, label_count // 2)
        named = range(len(classes)) if len(classes) <= 12 else dict.fromkeys([*order[:half], *order[::-1][:half]])
        span = float(xs.max() - xs.min()) or max(1e-3, 0.05 * float(abs(xs.max())))
        ax.set_xlim(float(xs.min()) - 0.08 * span, float(xs.max()) + 0.35 * span)
        ax.set_ylim(-5, 108)
        ax.grid(True)
        ax.set_axisbelow(True)
        ax.set_xlabel("mean GFLOPs per video of the class")
        ax.set_ylabel("top-1 accuracy of the class (%)")
        ax.set_title(_wrap(title or "Accuracy vs computation per class (marker area ∝ videos)", 80))
        labels = [f"{_short(classes[i]['name'], 40)} ({classes[i]['index']})" for i in named]
        _place_labels(fig, ax, [(float(xs[i]), float(ys[i]), text, float(np.sqrt(sizes[i] / np.pi)))
                                for i, text in zip(named, labels, strict=True)])
    return _save(fig, path)
