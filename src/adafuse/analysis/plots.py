"""Figures of the report (drawing only: every number comes from :mod:`adafuse.analysis.stats`).

Each ``plot_*`` function takes statistics dicts, writes one PNG and returns its path. Every figure is drawn on
its own Agg canvas: no pyplot state, no global backend change, no display needed.

Colours are fixed across all figures, the HTML page and the demo's plots (this module is their one place):
skip = red, reuse = orange, keep = blue (light shades for ratios, dark shades for the "instance" shares); one
colour per method family (:func:`method_color`: AdaFuse purple, TSN grey, ...); per-class and per-video
quantities purple. Numbers are written with :func:`fmt_gflops` (3 significant digits) and :func:`fmt_percent`.
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

from adafuse.analysis.formats import fmt_gflops, fmt_percent
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
# method family (the model name's prefix) -> colour; kept apart from the action colours
METHOD_COLORS = {
    "adafuse": ACCENT_COLOR,
    "tsn": DENSE_COLOR,
    "tsm": "#2a7f7a",
    "adaskip": "#8c5a3c",
    "adareuse": "#b0488f",
    "random": "#7d7d2e",
}
METHOD_LABELS = {"adafuse": "AdaFuse", "tsn": "TSN", "tsm": "TSM", "adaskip": "Ada.Skip", "adareuse": "Ada.Reuse",
                 "random": "Random policy"}


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


def method_family(arch: str, adaptive: bool = False) -> str:
    """The key of :data:`METHOD_COLORS` for a model name (``adafuse_tsn_r18`` -> ``adafuse``); unknown names fall
    back to ``adafuse`` (adaptive) or ``tsn`` (dense)."""
    head = str(arch).lower().split("_")[0]
    return head if head in METHOD_COLORS else ("adafuse" if adaptive else "tsn")


def method_color(arch: str, adaptive: bool = False) -> str:
    """The colour of a method in every figure (report and demo): :data:`METHOD_COLORS` of its family."""
    return METHOD_COLORS[method_family(arch, adaptive)]


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


def _label_box(cx: float, cy: float, w: float, h: float, cand: tuple[float, float, str, str]
               ) -> tuple[float, float, float, float]:
    """Pixel box ``(x0, y0, x1, y1)`` of a ``w`` x ``h`` label at offset ``cand = (dx, dy, ha, va)`` from (cx, cy)."""
    dx, dy, ha, va = cand
    x0 = cx + dx - (w if ha == "right" else 0)
    y0 = cy + dy - (h if va == "top" else 0)
    return x0, y0, x0 + w, y0 + h


def _box_free(box: tuple[float, float, float, float], placed: Sequence[tuple[float, float, float, float]],
              circles: Sequence[tuple[float, float, float]], own: tuple[float, float]) -> bool:
    """True when ``box`` overlaps no ``placed`` box and no circle ``(x, y, r)`` (pixels) except the one at ``own``."""
    if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
        return False
    for ox, oy, orad in circles:
        if abs(ox - own[0]) < 0.5 and abs(oy - own[1]) < 0.5:
            continue
        nx, ny = min(max(ox, box[0]), box[2]), min(max(oy, box[1]), box[3])
        if (nx - ox) ** 2 + (ny - oy) ** 2 < orad ** 2:
            return False
    return True


def _place_labels(
    fig: Figure, ax: Any, points: Sequence[tuple[float, float, str, float]], fontsize: float = 8.0,
    obstacles: Sequence[tuple[float, float, float]] = (),
) -> None:
    """Annotate data points without overlapping labels: for each ``(x, y, text, radius_pt)`` try offsets
    right/left, above/below the marker (``radius_pt``: marker radius in points), then farther above/below with a
    thin leader line, and take the first whose estimated box overlaps no earlier label and no marker of
    ``obstacles`` (``(x, y, radius_pt)`` in data coordinates / points) other than its own; else the first one."""
    fig.draw_without_rendering()  # final layout, so transData maps to the real pixel positions
    px = fig.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    circles = [(*ax.transData.transform((ox, oy)), orad * px) for ox, oy, orad in obstacles]
    for x, y, text, radius in points:
        lines = text.split("\n")
        w = 0.58 * fontsize * max(len(line) for line in lines) * px
        h = 1.25 * fontsize * len(lines) * px
        cx, cy = ax.transData.transform((x, y))
        r = (0.7 * radius + 3) * px
        candidates = [(r, r * 0.6, "left", "bottom"), (-r, r * 0.6, "right", "bottom"),
                      (r, -r * 0.6, "left", "top"), (-r, -r * 0.6, "right", "top")]
        for k in (2.2, 3.6, 5.0):
            candidates += [(0.3 * r, k * r, "left", "bottom"), (-0.3 * r, k * r, "right", "bottom"),
                           (0.3 * r, -k * r, "left", "top"), (-0.3 * r, -k * r, "right", "top")]

        boxes = [_label_box(cx, cy, w, h, c) for c in candidates]
        free = next((b for b in boxes if _box_free(b, placed, circles, (cx, cy))), boxes[0])
        choice = candidates[boxes.index(free)]
        placed.append(free)
        dx, dy, ha, va = choice
        leader = {"arrowprops": {"arrowstyle": "-", "color": "#777777", "linewidth": 0.6, "shrinkA": 1,
                                 "shrinkB": 0.7 * radius}} if abs(dy) > 1.5 * r else {}
        ax.annotate(text, (x, y), xytext=(dx / px, dy / px), textcoords="offset points", ha=ha, va=va,
                    fontsize=fontsize, zorder=5, **leader)


def _overlapping(labels: Sequence[Any], renderer: Any, pad: float = 2.0) -> bool:
    """True when any two of the (visible) tick ``labels`` overlap (with ``pad`` pixels between them)."""
    boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
    return any(a.x1 + pad > b.x0 and b.x1 + pad > a.x0 and a.y1 > b.y0 and b.y1 > a.y0
               for i, a in enumerate(boxes) for b in boxes[i + 1:])


def fit_xticklabels(fig: Figure, ax: Any, positions: Sequence[float], labels: Sequence[str]) -> int:
    """Put ``labels`` at ``positions`` on the x axis so that none overlaps another: horizontal if they fit, else
    rotated by 45 then 90 degrees, else only every k-th label (the first and the last always). Returns k (1 = all
    labels shown)."""
    for rotation, ha in ((0, "center"), (45, "right"), (90, "center")):
        ax.set_xticks(list(positions), list(labels), rotation=rotation, ha=ha,
                      rotation_mode="anchor" if rotation == 45 else "default")
        fig.draw_without_rendering()
        ticks = ax.get_xticklabels()
        if rotation == 45:  # slanted text lines do not touch when the ticks are over 1.75 line heights apart
            px = np.sort(ax.transData.transform(np.column_stack([positions, np.zeros(len(positions))]))[:, 0])
            line = 1.75 * (ticks[0].get_fontsize() if ticks else 9.0) * fig.dpi / 72.0
            if len(px) < 2 or float(np.diff(px).min()) >= line:
                return 1
        elif not _overlapping(ticks, fig.canvas.get_renderer()):
            return 1
    last = len(labels) - 1
    for step in range(2, len(labels) + 1):
        keep = set(range(0, len(labels), step))
        if last not in keep:
            if max(keep) != 0:
                keep.discard(max(keep))  # show the last label rather than the one just before it
            keep.add(last)
        ax.set_xticks(list(positions), [lab if i in keep else "" for i, lab in enumerate(labels)], rotation=90,
                      ha="center")
        fig.draw_without_rendering()
        if not _overlapping(ax.get_xticklabels(), fig.canvas.get_renderer()):
            return step
    return len(labels)


# ---------------------------------------------------------------------------------------------- policy


def plot_policy_mix(mixes: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Paper Fig. 3: one pie of the dataset-level skip/reuse/keep mix per run, with the reuse/keep quotient.

    ``mixes``: run name -> :func:`stats.policy_mix` dict (at least one). The title states what the shares are
    shares of (the mixes' ``definition``).
    """
    if not mixes:
        raise ValueError("plot_policy_mix needs at least one run with a policy")
    n = len(mixes)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    definitions = {m.get("definition") for m in mixes.values()}
    common = definitions.pop() if len(definitions) == 1 else None
    with matplotlib.rc_context(STYLE):
        fig = _figure(max(3.6, 2.9 * cols + 0.2), 3.1 * rows + 1.0)
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
            definition = mix.get("definition")
            if definition and definition != common:
                q_text += "\n" + _wrap(f"({definition})", 40)
            ax.set_title(_wrap(name, 28), fontsize=11)
            ax.set_xlabel(q_text, fontsize=10)  # a label, so the layout keeps it clear of the next row
            ax.set_aspect("equal")
        handles = [Patch(facecolor=ACTION_COLORS[a], label=a) for a in ACTIONS]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=10)
        head = "Policy mix" + (f": {common}" if common else " (definitions differ, see each pie)")
        fig.suptitle(_wrap(head, max(34, int(13 * (2.9 * cols + 0.2)))), fontsize=11)
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
    width = max(6.5, min(14.0, 3.0 + 0.45 * num))
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
        ax_inst.set_xlabel("gated block (forward order)")
        fit_xticklabels(fig, ax_inst, x, [_short(n, 18) for n in names])
    return _save(fig, path)


# ----------------------------------------------------------------------------------------- comparison


def plot_flops_accuracy(points: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Paper Fig. 2: GFLOPs per video (x) vs top-1 (y), one marker per run, area proportional to params, coloured
    by method family (:func:`method_color`)."""
    with matplotlib.rc_context(STYLE):
        fig = _figure(9.0, 4.8)
        ax = fig.subplots()
        params = [p["params"] for p in points if p.get("params")]
        pmax = max(params) if params else None
        max_area = 1600.0

        def area(p: Mapping[str, Any]) -> float:
            return max_area * p["params"] / pmax if pmax and p.get("params") else 120.0

        gs = [p["gflops"] for p in points]
        accs = [p["top1"] for p in points]
        labels: list[tuple[float, float, str, float]] = []
        families: dict[str, str] = {}
        for p in points:
            family = method_family(p.get("arch", ""), p["adaptive"])
            families.setdefault(family, METHOD_COLORS[family])
            color = METHOD_COLORS[family]
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
        handles = [Line2D([], [], marker="o", linestyle="", markersize=9, color=c, alpha=0.6,
                          label=METHOD_LABELS[f] + (" (adaptive)" if f not in ("tsn", "tsm") else " (dense)"))
                   for f, c in families.items()]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never on a point
        _place_labels(fig, ax, labels, fontsize=8.5, obstacles=[(x, y, r) for x, y, _, r in labels])
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
            total = f"{fmt_gflops(v['gflops'])} GFLOPs" + (f" = {fmt_percent(rel)} of dense" if rel is not None else "")
            color = GOOD_COLOR if kind == "cheapest" else BAD_COLOR
            sub.suptitle(f"{kind}: {_short(v['label_name'], 48)} (video {_short(v['id'], 44)}) — {total}",
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
                    label = fmt_percent(frame_rel[t])
                    # a bar under the frame: this frame's cost relative to the same frame run densely
                    ax.add_patch(Rectangle((0, -0.13), 1.0, 0.08, transform=ax.transAxes, color="#e4e6ea",
                                           clip_on=False))
                    ax.add_patch(Rectangle((0, -0.13), min(1.0, frame_rel[t]), 0.08, transform=ax.transAxes,
                                           color=color, clip_on=False))
                elif t < len(v["frame_gflops"]):
                    label = f"{fmt_gflops(v['frame_gflops'][t])} G"
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
        fig = _figure(7.0, 3.3)
        ax = fig.subplots()
        ax.bar(edges[:-1], counts, np.diff(edges), align="edge", color=NEUTRAL_COLOR, edgecolor="white")
        dense = compute.get("dense")
        note = f"mean {fmt_gflops(compute['mean'])} GFLOPs"
        if dense:
            note += f" = {fmt_percent(compute['mean'] / dense)} of dense ({fmt_gflops(dense)})"
        ax.axvline(compute["mean"], color=ACCENT_COLOR, linestyle="--", linewidth=1.5, label=note)
        ax.set_ylim(0, max(1, int(counts.max())) * 1.22)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.legend(loc="outside lower center", fontsize=9)  # under the axes: never on a bar or the line
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


KEY_MAX_CLASSES = 40  # up to this many classes the per-class scatter names every dot (index + a key)


def _cluster_points(fig: Figure, ax: Any, xs: np.ndarray, ys: np.ndarray, radius_px: float) -> list[list[int]]:
    """Indices of points grouped by display position: points within ``radius_px`` pixels of a group's first point
    join it (in input order), so coincident dots share one label."""
    fig.draw_without_rendering()
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    groups: list[list[int]] = []
    for i, (px, py) in enumerate(pts):
        for g in groups:
            gx, gy = pts[g[0]]
            if abs(px - gx) <= radius_px and abs(py - gy) <= radius_px:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def plot_class_accuracy_vs_gflops(
    accuracy: Mapping[str, Any], path: str | os.PathLike, title: str = "", label_count: int = 6
) -> Path:
    """Per class: mean GFLOPs per video (x) vs top-1 accuracy (y), marker area ∝ number of videos.

    Up to :data:`KEY_MAX_CLASSES` classes every dot carries its class index (dots at the same place share one
    label, "2, 5") and a key on the right names every index; with more classes only the ``label_count // 2``
    cheapest and most expensive are named (the page's class table has them all)."""
    classes = [c for c in accuracy["per_class"] if c["count"] > 0]
    xs = np.asarray([c["mean_gflops"] for c in classes])
    ys = np.asarray([c["accuracy"] for c in classes])
    ns = np.asarray([c["count"] for c in classes], dtype=np.float64)
    keyed = len(classes) <= KEY_MAX_CLASSES
    with matplotlib.rc_context(STYLE):
        fig = _figure(10.5 if keyed else 7.5, max(4.6, 0.75 + 0.19 * len(classes)) if keyed else 4.6)
        if keyed:
            ax, ax_key = fig.subplots(1, 2, width_ratios=[3.0, 1.25])
        else:
            ax, ax_key = fig.subplots(), None
        sizes = 15 + min(280.0, 5000.0 / len(classes)) * ns / ns.max()
        ax.scatter(xs, ys, s=sizes, color=ACCENT_COLOR, alpha=0.45, edgecolors=ACCENT_COLOR, linewidths=1)
        span = float(xs.max() - xs.min()) or max(1e-9, 0.05 * float(abs(xs.max())))
        ax.set_xlim(float(xs.min()) - 0.08 * span, float(xs.max()) + 0.35 * span)
        ax.set_ylim(-12, 112)
        ax.set_yticks([0, 20, 40, 60, 80, 100])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.grid(True)
        ax.set_axisbelow(True)
        ax.set_xlabel("mean GFLOPs per video of the class")
        ax.set_ylabel("top-1 accuracy of the class (%)")
        if keyed:
            radii = np.sqrt(sizes / np.pi)  # marker radii in points
            groups = _cluster_points(fig, ax, xs, ys, radius_px=float(radii.max()) * fig.dpi / 72.0)
            points = [(float(xs[g[0]]), float(ys[g[0]]), ", ".join(str(classes[i]["index"]) for i in g),
                       float(radii[g].max())) for g in groups]
            obstacles = [(float(xs[g[0]]), float(ys[g[0]]), float(radii[g].max())) for g in groups]
            _place_labels(fig, ax, points, fontsize=8.5, obstacles=obstacles)
            ax_key.set_axis_off()
            key = [f"{c['index']:>3}  {_short(c['name'], 30)}" for c in sorted(classes, key=lambda c: c["index"])]
            ax_key.text(0.0, 1.0, "class index  name\n" + "\n".join(key), transform=ax_key.transAxes, va="top",
                        ha="left", fontsize=8.5, family="DejaVu Sans Mono", linespacing=1.35)
            head = "Accuracy vs computation per class (marker area ∝ videos; labels: class index)"
        else:
            order = np.argsort(xs, kind="stable")
            half = max(1, label_count // 2)
            named = list(dict.fromkeys([*order[:half], *order[::-1][:half]]))
            labels = [f"{_short(classes[i]['name'], 40)} ({classes[i]['index']})" for i in named]
            _place_labels(fig, ax, [(float(xs[i]), float(ys[i]), text, float(np.sqrt(sizes[i] / np.pi)))
                                    for i, text in zip(named, labels, strict=True)])
            head = (f"Accuracy vs computation per class (marker area ∝ videos; named: the {half} cheapest and {half} "
                    f"most expensive of {len(classes)} classes)")
        fig.suptitle(_wrap(title or head, 100), fontsize=11.5, fontweight="bold")
    return _save(fig, path)
