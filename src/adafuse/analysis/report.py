"""The report: statistics (``stats``) + figures (``plots``) of one or more runs -> PNGs, JSON and one HTML page.

``build_report(["runs/a", "runs/b"], "report/")`` writes::

    report/report.html      self-contained page (PNG figures embedded as data URIs, inline CSS, no scripts)
    report/report.json      every number shown on the page
    report/*.png            the figures

The page works offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adafuse.analysis import plots
from adafuse.analysis.budget_curves import load_budget_curve, plot_budget_curves
from adafuse.analysis.formats import fmt_gflops, fmt_percent
from adafuse.analysis.frames import read_thumbnails, run_preprocessing
from adafuse.analysis.runs import RunData, load_run
from adafuse.analysis.stats import ACTIONS, comparison_points, run_stats
from adafuse.data.decode import DEFAULT_TEMPLATE
from adafuse.flops import POLICY_RATIO_DEFINITION


@dataclass
class ReportFiles:
    """What :func:`build_report` wrote: ``html``, ``json`` and the ``figures`` (PNG paths, in page order)."""

    html: Path
    json: Path
    figures: list[Path] = field(default_factory=list)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "run"


def _unique_names(runs: Sequence[RunData]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for run in runs:
        base = run.name
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base} ({seen[base]})")
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def build_report(
    run_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    title: str = "AdaFuse report",
    videos_per_extreme: int = 2,
    frame_template: str = DEFAULT_TEMPLATE,
    frame_start: int = 1,
    data_roots: Sequence[str | os.PathLike] = (),
) -> ReportFiles:
    """Write the report of ``run_dirs`` into ``out_dir`` (created).

    Args:
        run_dirs: run directories (``eval/predictions.jsonl`` + ``eval/metrics.json`` each).
        videos_per_extreme: how many cheapest and most expensive correct videos get a frame strip.
        frame_template, frame_start: file names of frame folders (``{:05d}.jpg`` from 1 by default).
        data_roots: folders against which relative ``source`` paths of the predictions are resolved
            (after the working directory).
    """
    if not run_dirs:
        raise ValueError("no run directories given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(d) for d in run_dirs]
    names = _unique_names(runs)
    all_stats = {name: run_stats(run.metrics, run.predictions, videos_per_extreme) for name, run in
                 zip(names, runs, strict=True)}
    points = comparison_points({name: s["summary"] for name, s in all_stats.items()})

    figures: dict[str, Any] = {"runs": {}}
    written: list[Path] = []
    figures["flops_accuracy"] = plots.plot_flops_accuracy(points, out / "flops_accuracy.png")
    written.append(figures["flops_accuracy"])
    curves = {name: c for name, run in zip(names, runs, strict=True) if (c := load_budget_curve(run.path))}
    if curves:
        others = [p for p in points if p["run"] not in curves]
        figures["budget_curves"] = plot_budget_curves(curves, others, out / "budget_curves.png")
        written.append(figures["budget_curves"])
    mixes = {name: s["policy"]["mix"] for name, s in all_stats.items() if s["policy"]}
    if mixes:
        figures["policy_mix"] = plots.plot_policy_mix(mixes, out / "policy_mix.png")
        written.append(figures["policy_mix"])

    used_slugs: set[str] = set()
    for name, run in zip(names, runs, strict=True):
        s = all_stats[name]
        slug = _slug(name)
        while slug in used_slugs:
            slug += "_"
        used_slugs.add(slug)
        f: dict[str, Path] = {}
        if s["policy"]:
            f["blocks"] = plots.plot_block_policy(s["policy"]["blocks"], out / f"{slug}_blocks.png",
                                                  title=f"{name}: policy per gated block")
            budget = s["budget"]
            shown = budget["cheapest"] + budget["most_expensive"]
            if any(v["frame_indices"] or v["frame_gflops"] for v in shown):
                thumbs = {}
                pre = run_preprocessing(run)
                for v in shown:
                    thumbs[v["id"]] = read_thumbnails(
                        v["source"], v["frame_indices"], template=frame_template, start_index=frame_start,
                        roots=[*data_roots, run.path], preprocessing=pre,
                    )
                budget["frames_unavailable"] = {vid: reason for vid, (_, reason) in thumbs.items() if reason}
                f["budget"] = plots.plot_video_budgets(budget, thumbs, out / f"{slug}_budget.png")
            f["gflops_hist"] = plots.plot_gflops_histogram(s["compute"], out / f"{slug}_gflops_hist.png",
                                                           title=f"{name}: GFLOPs per video")
            f["class_gflops"] = plots.plot_class_accuracy_vs_gflops(s["accuracy"], out / f"{slug}_class_gflops.png")
        f["confusion"] = plots.plot_confusion(s["accuracy"], out / f"{slug}_confusion.png",
                                              title=f"{name}: confusion matrix")
        f["class_accuracy"] = plots.plot_class_accuracy(s["accuracy"], out / f"{slug}_class_accuracy.png",
                                                        title=f"{name}: per-class accuracy")
        figures["runs"][name] = f
        written.extend(f.values())

    generated = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    report = {
        "title": title,
        "generated": generated,
        "runs": {
            name: {"path": str(run.path), "arch": run.arch, "warnings": run.warnings, **all_stats[name]}
            for name, run in zip(names, runs, strict=True)
        },
        "comparison": points,
        "budget_curves": curves,
        "figures": {
            "flops_accuracy": figures["flops_accuracy"].name,
            **({"budget_curves": figures["budget_curves"].name} if "budget_curves" in figures else {}),
            **({"policy_mix": figures["policy_mix"].name} if "policy_mix" in figures else {}),
            "runs": {name: {k: p.name for k, p in f.items()} for name, f in figures["runs"].items()},
        },
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(_jsonable(report), indent=1, allow_nan=False), encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(render_html(report, figures, runs, names), encoding="utf-8")
    return ReportFiles(html=html_path, json=json_path, figures=written)


# ------------------------------------------------------------------------------------------------ HTML

_COLORS = (f"--skip: {plots.ACTION_COLORS['skip']}; --reuse: {plots.ACTION_COLORS['reuse']}; "
           f"--keep: {plots.ACTION_COLORS['keep']}; --accent: {plots.ACCENT_COLOR};")
CSS = ":root { " + _COLORS + " --ink: #222; --muted: #5f6670; --line: #e3e5e8; }\n" + """* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: var(--ink);
       font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 48px; background: #fff;
       box-shadow: 0 0 0 1px var(--line); min-height: 100vh; }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 22px; margin: 40px 0 8px; padding-top: 12px; border-top: 2px solid var(--line); }
h3 { font-size: 17px; margin: 28px 0 6px; }
.sub { color: var(--muted); margin: 0 0 16px; }
nav { background: #f1f3f6; border-radius: 6px; padding: 10px 14px; margin: 16px 0; font-size: 14px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; margin: 8px 0 4px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f1f3f6; font-weight: 600; position: sticky; top: 0; white-space: normal; vertical-align: bottom; }
td.l, th.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
.wide { overflow-x: auto; }
figure { margin: 14px 0 22px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; border: 1px solid var(--line);
             border-radius: 4px; }
figcaption { color: var(--muted); font-size: 14px; margin-top: 8px; max-width: 900px; }
figcaption b { color: var(--ink); }
.chip { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin: 0 3px 0 6px;
        vertical-align: -1px; }
.note { background: #fff8e6; border-left: 4px solid #f0b429; padding: 8px 12px; margin: 10px 0;
        font-size: 14px; }
.dense { background: #eef2f7; border-left-color: #8a8f98; }
.mix { display: inline-block; height: 10px; width: 64px; vertical-align: middle; border-radius: 2px;
       overflow: hidden; background: #eee; }
.mix span { display: inline-block; height: 100%; }
details { margin: 8px 0 16px; }
summary { cursor: pointer; color: var(--accent); font-size: 14px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
code { background: #f1f3f6; padding: 1px 4px; border-radius: 3px; font-size: 13px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _figure_html(path: Path, alt: str, caption: str) -> str:
    return f"<figure>{_img(path, alt)}<figcaption>{caption}</figcaption></figure>"


def _num(x: Any, fmt: str = "{:.2f}", none: str = "–") -> str:
    return none if x is None else fmt.format(x)


def _chips() -> str:
    return "".join(f'<span class="chip" style="background:var(--{a})"></span>{a}' for a in ACTIONS)


def _mix_bar(ratios: Sequence[float]) -> str:
    parts = "".join(f'<span style="width:{100 * r:.2f}%;background:var(--{a})"></span>'
                    for a, r in zip(ACTIONS, ratios, strict=True))
    return f'<span class="mix" title="skip / reuse / keep">{parts}</span>'


def _summary_table(report: dict[str, Any], names: Sequence[str]) -> str:
    head = ("<tr><th class=l>run</th><th class=l>arch</th><th>videos</th><th>top‑1 %</th><th>top‑5 %</th>"
            "<th>GFLOPs / video</th><th>dense GFLOPs</th><th>saving</th><th>params</th>"
            "<th>skip / reuse / keep %<sup>*</sup></th><th>reuse / keep</th></tr>")
    rows = []
    for name in names:
        s = report["runs"][name]["summary"]
        r = s["policy_ratios"]
        mix = (f"{_mix_bar(r)} {100 * r[0]:.1f} / {100 * r[1]:.1f} / {100 * r[2]:.1f}" if r else "dense (no policy)")
        if r and s.get("policy_ratios_definition") != POLICY_RATIO_DEFINITION:
            mix += "<sup>†</sup>"
        rows.append(
            f'<tr><td class=l><a href="#{_e(_slug(name))}">{_e(name)}</a></td><td class=l>{_e(s["arch"])}</td>'
            f"<td>{s['num_videos']}</td><td>{_num(s['top1'])}</td><td>{_num(s['top5'])}</td>"
            f"<td>{fmt_gflops(s['gflops_per_video'])}</td><td>{fmt_gflops(s['gflops_static_per_video'])}</td>"
            f"<td>{fmt_percent(s['saving'])}</td><td>{_num(s['params'] and s['params'] / 1e6, '{:.2f} M')}</td>"
            f"<td class=l>{mix}</td><td>{_num(s['reuse_keep_quotient'], '{:.3f}')}</td></tr>"
        )
    return f'<div class="wide"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'


def _class_table(acc: dict[str, Any]) -> str:
    rows = []
    for c in sorted(acc["per_class"], key=lambda c: c["index"]):
        rows.append(f"<tr><td>{c['index']}</td><td class=l>{_e(c['name'])}</td><td>{c['count']}</td>"
                    f"<td>{c['correct']}</td><td>{_num(c['accuracy'], '{:.1f}')}</td>"
                    f"<td>{fmt_gflops(c['mean_gflops'])}</td></tr>")
    head = ("<tr><th>#</th><th class=l>class</th><th>videos</th><th>correct</th><th>top-1 %</th>"
            "<th>GFLOPs / video</th></tr>")
    return (f"<details><summary>All {acc['num_classes']} classes (table)</summary><div class=wide><table>"
            f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div></details>")


def _confused_table(acc: dict[str, Any]) -> str:
    if not acc["most_confused"]:
        return ""
    rows = "".join(f"<tr><td class=l>{_e(m['true_name'])}</td><td class=l>{_e(m['pred_name'])}</td>"
                   f"<td>{m['count']}</td></tr>" for m in acc["most_confused"])
    return ("<details><summary>Most frequent confusions</summary><div class=wide><table><thead><tr>"
            "<th class=l>true class</th><th class=l>predicted as</th><th>videos</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div></details>")


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def _block_sentences(mix: dict[str, Any], blocks: dict[str, Any]) -> str:
    """What the per-block figure shows for this run, in numbers (every sentence computed from ``blocks``)."""
    names, ratios = blocks["names"], blocks["ratios"]
    out = [f"Whole model ({_e(mix['definition'])}): skip {_pct(mix['skip'])}, reuse {_pct(mix['reuse'])}, keep "
           f"{_pct(mix['keep'])}."]
    if len(names) >= 2:
        parts = []
        for i, a in enumerate(ACTIONS):
            hi = max(range(len(names)), key=lambda b: ratios[b][i])
            lo = min(range(len(names)), key=lambda b: ratios[b][i])
            parts.append(f"{a} from {_pct(ratios[lo][i])} ({_e(names[lo])}) to {_pct(ratios[hi][i])} "
                         f"({_e(names[hi])})")
        out.append("Across blocks: " + "; ".join(parts) + ".")
    total = blocks.get("instance_total")
    if total:
        lo, hi = min(total), max(total)
        out.append(f"Channels with one action at every frame of a video: {_pct(lo)} to {_pct(hi)} of a block's "
                   "channels.")
    return " ".join(out)


def _first_frame_sentence(compute: dict[str, Any]) -> str:
    """How often the first sampled frame is the most expensive one (computed; empty without per-frame costs)."""
    first = compute.get("first_frame")
    if not first:
        return ""
    n, most, cheap = first["num_videos"], first["most_expensive"], first["cheapest"]
    return (f"In this run the first sampled frame costs more than every later frame in {most} of {n} videos and "
            f"less than every later frame in {cheap}; on average it costs {fmt_gflops(first['mean_first'])} GFLOPs, "
            f"a later frame {fmt_gflops(first['mean_rest'])}.")


def _spread_sentence(compute: dict[str, Any]) -> str:
    lo, hi, med = compute["min"], compute["max"], compute["median"]
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):
        return f"Every video costs {fmt_gflops(hi)} GFLOPs."
    more = f" (the most expensive video costs {fmt_percent(hi / lo - 1)} more than the cheapest)" if lo > 0 else ""
    return f"GFLOPs per video range from {fmt_gflops(lo)} to {fmt_gflops(hi)}, median {fmt_gflops(med)}{more}."


def _class_compute_sentence(acc: dict[str, Any]) -> str:
    classes = [c for c in acc["per_class"] if c["count"] > 0]
    if len(classes) < 2:
        return ""
    cheap = min(classes, key=lambda c: (c["mean_gflops"], c["index"]))
    dear = max(classes, key=lambda c: (c["mean_gflops"], -c["index"]))
    out = (f"Cheapest class: {_e(cheap['name'])} ({fmt_gflops(cheap['mean_gflops'])} GFLOPs per video, top-1 "
           f"{cheap['accuracy']:.0f}%); most expensive: {_e(dear['name'])} ({fmt_gflops(dear['mean_gflops'])}, top-1 "
           f"{dear['accuracy']:.0f}%).")
    r = acc.get("gflops_accuracy_correlation")
    if r is not None:
        out += f" Correlation between a class's accuracy and its GFLOPs over the {len(classes)} classes: r = {r:.2f}."
    return out


def _confusion_sentence(acc: dict[str, Any]) -> str:
    top = acc["most_confused"]
    if not top:
        return "No video was misclassified."
    m = top[0]
    return (f"The most frequent confusion: {_e(m['true_name'])} predicted as {_e(m['pred_name'])} "
            f"({m['count']} video{'s' if m['count'] != 1 else ''}; the largest ones are listed below).")


def _run_section(name: str, run_report: dict[str, Any], figs: dict[str, Path], run: RunData) -> str:
    s = run_report["summary"]
    acc = run_report["accuracy"]
    parts = [f'<h2 id="{_e(_slug(name))}">{_e(name)} <span class="sub">— {_e(s["arch"])}</span></h2>']
    facts = [f"{s['num_videos']} videos", f"top-1 {_num(s['top1'])}%"]
    if s["top5"] is not None:
        facts.append(f"top-5 {_num(s['top5'])}%")
    facts.append(f"mean class accuracy {_num(acc['mean_class_accuracy'])}%")
    facts.append(f"{fmt_gflops(s['gflops_per_video'])} GFLOPs per video")
    if s["frames"]:
        facts.append(f"{s['frames']} frames")
    if s["input_size"]:
        facts.append(f"{s['input_size']}×{s['input_size']} px")
    parts.append(f'<p class="sub">{" · ".join(_e(f) for f in facts)}<br>run directory <code>{_e(run.path)}</code>'
                 "</p>")
    for note in run_report["notes"] + run_report["warnings"]:
        parts.append(f'<div class="note">{_e(note)}</div>')
    policy = run_report["policy"]
    if policy is None:
        parts.append('<div class="note dense">Dense model (no adaptive fusion: empty <code>block_ratios</code>): '
                     f"every video costs {fmt_gflops(s['gflops_per_video'])} GFLOPs, so the policy figures (blocks, "
                     "compute budget, accuracy vs GFLOPs per class) are skipped for this run. It appears in the "
                     "comparison and the accuracy figures.</div>")
    else:
        mix = policy["mix"]
        blocks = policy["blocks"]
        inst = ("per action (dark red / orange / blue)" if blocks["instance"] is not None
                else "for any action (dark grey; the predictions carry one number per block)")
        parts.append("<h3>Policy per gated block</h3>")
        parts.append(_figure_html(
            figs["blocks"], f"{name} policy per block",
            f"<b>What it shows:</b> for each gated block (forward order, {len(blocks['names'])} blocks), the share of "
            f"its channel-frames the policy skips, reuses from the previous frame, or keeps ({_chips()}), averaged "
            f"over {blocks['num_videos']} videos. Dashed curves are degree-{blocks['trend']['skip']['degree']} "
            "polynomial trends of the two segment boundaries (skip, and skip + reuse = 1 − keep), as in the "
            "paper's Fig. 4. <b>Bottom:</b> the “instance” share — channels whose action is the same at every "
            f"frame of a video, {inst}. <b>In numbers:</b> {_block_sentences(mix, blocks)}"))
        budget = run_report["budget"]
        if "budget" in figs:
            parts.append("<h3>Per-video compute budget</h3>")
            missing = budget.get("frames_unavailable") or {}
            miss = ""
            if missing:
                items = "".join(f"<li><code>{_e(k)}</code>: {_e(v)}</li>" for k, v in missing.items())
                miss = f'<div class="note">Frames could not be read for some videos:<ul>{items}</ul></div>'
            parts.append(miss + _figure_html(
                figs["budget"], f"{name} compute budget strips",
                f"<b>What it shows:</b> the sampled frames of the {len(budget['cheapest'])} cheapest (green) and "
                f"{len(budget['most_expensive'])} most expensive (red) correctly classified videos "
                f"(of {budget['num_correct']} correct). Above each frame: its 0-based index in the video and its "
                "computation relative to the same frame run densely (also drawn as the bar under the frame); "
                "each row's title gives the class and the whole video's GFLOPs and share of the dense cost. "
                + _first_frame_sentence(run_report["compute"])))
        parts.append(_figure_html(
            figs["gflops_hist"], f"{name} GFLOPs histogram",
            "<b>What it shows:</b> how many videos (y) needed how many GFLOPs (x); the dashed line is the mean. "
            + _spread_sentence(run_report["compute"])))
        parts.append("<h3>Accuracy vs computation per class</h3>")
        named = ("every class is labelled with its index (dots at the same place share a label), the key on the "
                 "right names them" if len([c for c in acc["per_class"] if c["count"]]) <= plots.KEY_MAX_CLASSES
                 else "the cheapest and most expensive classes are named; the class table below lists all of them")
        parts.append(_figure_html(
            figs["class_gflops"], f"{name} accuracy vs GFLOPs per class",
            "<b>What it shows:</b> one marker per class: the mean GFLOPs the model spent on its videos (x) and its "
            f"top-1 accuracy (y); marker area ∝ number of videos; {named}. " + _class_compute_sentence(acc)))
    parts.append("<h3>Accuracy</h3>")
    counts = "; numbers = video counts" if acc["num_classes"] <= 15 else ""
    parts.append(_figure_html(
        figs["confusion"], f"{name} confusion matrix",
        "<b>What it shows:</b> rows are true classes, columns predictions; colour = share of the row's videos "
        f"(so the diagonal is each class's accuracy){counts}. {_confusion_sentence(acc)}"))
    parts.append(_confused_table(acc))
    shown = len([c for c in acc["per_class"] if c["count"]])
    subset = (f" Only the 20 weakest and 20 strongest of the {shown} classes are drawn; the full table is below."
              if shown > 40 else "")
    parts.append(_figure_html(
        figs["class_accuracy"], f"{name} per-class accuracy",
        "<b>What it shows:</b> top-1 accuracy of each class, sorted, with its number of videos (n); the dashed "
        f"line is the mean class accuracy ({_num(acc['mean_class_accuracy'], '{:.1f}')}%).{subset}"))
    parts.append(_class_table(acc))
    return "\n".join(parts)


def _comparison_sentence(report: dict[str, Any], names: Sequence[str]) -> str:
    """Whether the runs were evaluated alike (same number of videos, frames, input size), computed."""
    if len(names) < 2:
        return ""
    keys = (("num_videos", "videos"), ("frames", "frames"), ("input_size", "px input"))
    seen = {k: {report["runs"][n]["summary"].get(k) for n in names} for k, _ in keys}
    differ = [label for k, label in keys if len(seen[k]) > 1]
    if differ:
        return (f'<div class="note">The runs differ in {", ".join(differ)}: their points compare different '
                "evaluations.</div>")
    s = report["runs"][names[0]]["summary"]
    return (f"All {len(names)} runs were evaluated on the same number of videos ({s['num_videos']}), "
            f"{s['frames']} frames, {s['input_size']} px.")


def _mix_sentence(report: dict[str, Any], names: Sequence[str]) -> str:
    out = []
    for n in names:
        s = report["runs"][n]["summary"]
        q = s.get("reuse_keep_quotient")
        if s["policy_ratios"] is not None and q is not None:
            out.append(f"{_e(n)} reuses {q:.2f}× as many channels as it keeps")
        elif s["policy_ratios"] is not None:
            out.append(f"{_e(n)} keeps no channel")
    return ("; ".join(out) + ".") if out else ""


def _fallback_runs(report: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Adaptive runs whose mix weights the blocks equally (metrics.json without block_channels)."""
    return [n for n in names if report["runs"][n]["summary"]["policy_ratios"] is not None
            and report["runs"][n]["summary"].get("policy_ratios_definition") != POLICY_RATIO_DEFINITION]


def _fallback_clause(report: dict[str, Any], names: Sequence[str]) -> str:
    fallback = _fallback_runs(report, names)
    return f"; {_e(', '.join(fallback))}: every gated block weighted equally, see the run table" if fallback else ""


def _definition_note(report: dict[str, Any], names: Sequence[str]) -> str:
    """The skip/reuse/keep definition under the run table (and the fallback runs, marked †)."""
    fallback = _fallback_runs(report, names)
    text = f"<sup>*</sup> skip/reuse/keep = {_e(POLICY_RATIO_DEFINITION)}, the definition of metrics.json."
    if fallback:
        text += (f" <sup>†</sup> {_e(', '.join(fallback))}: metrics.json has no block_channels (an older "
                 "evaluation), so every gated block is weighted equally.")
    return text


def render_html(
    report: dict[str, Any], figures: dict[str, Any], runs: Sequence[RunData], names: Sequence[str]
) -> str:
    """The self-contained HTML page (figures as ``data:image/png;base64`` URIs, inline CSS, no scripts).

    Every sentence about the runs is computed from them (no generic claim that could be false for a run)."""
    nav = ['<a href="#runs">Runs</a>', '<a href="#compare">Accuracy vs compute</a>']
    if "policy_mix" in figures:
        nav.append('<a href="#mix">Policy mix</a>')
    nav += [f'<a href="#{_e(_slug(n))}">{_e(n)}</a>' for n in names]
    body = [
        f"<h1>{_e(report['title'])}</h1>",
        f'<p class="sub">{len(names)} run{"s" if len(names) != 1 else ""} · generated {_e(report["generated"])} · '
        f"colours everywhere: {_chips()}</p>",
        f"<nav>{''.join(nav)}</nav>",
        '<h2 id="runs">Runs</h2>',
        _summary_table(report, names),
        '<p class="sub">All numbers are recomputed from each run\'s <code>eval/predictions.jsonl</code>: top-1/top-5 '
        "over the evaluated videos; GFLOPs per video in the paper's convention (multiply-accumulates, all frames of "
        "the clip), 3 significant digits; <i>dense</i> = the same model with every channel computed; <i>saving</i> = "
        f"1 − GFLOPs / dense. {_definition_note(report, names)}</p>",
        '<h2 id="compare">Accuracy vs compute</h2>',
        _figure_html(
            figures["flops_accuracy"], "GFLOPs vs top-1 accuracy",
            "<b>What it shows:</b> each run at its mean GFLOPs per video (x) and top-1 accuracy (y); marker area is "
            "proportional to the parameter count; colour = method (legend), like the paper's Fig. 2. "
            + _comparison_sentence(report, names)),
    ]
    if "budget_curves" in figures:
        body.append(_figure_html(
            figures["budget_curves"], "GFLOPs vs top-1 at compute budgets",
            "<b>What it shows:</b> each line is one checkpoint evaluated at several compute budgets "
            "(<code>adafuse eval --budgets</code>; labels: the budget, a fraction of the GFLOPs with every channel "
            "kept; star: the checkpoint's own policy), squares are the other runs."))
    if "policy_mix" in figures:
        body += [
            '<h2 id="mix">Policy mix</h2>',
            _figure_html(
                figures["policy_mix"], "skip/reuse/keep pies",
                "<b>What it shows:</b> for each adaptive run, the shares of skip, reuse and keep over all of its "
                f"channel decisions ({_e(POLICY_RATIO_DEFINITION)}{_fallback_clause(report, names)}), like the "
                "paper's Fig. 3; the same numbers as the run table. The <b>reuse / keep quotient</b> is the mixing "
                "ratio of the temporal fusion: "
                + _mix_sentence(report, names)),
        ]
    dense_runs = [n for n, r in zip(names, runs, strict=True) if report["runs"][n]["policy"] is None]
    if dense_runs and "policy_mix" in figures:
        body.append(f'<div class="note dense">Dense runs without a policy are not in the policy mix: '
                    f'{_e(", ".join(dense_runs))}.</div>')
    for name, run in zip(names, runs, strict=True):
        body.append(_run_section(name, report["runs"][name], figures["runs"][name], run))
    body.append('<footer>Generated by <code>adafuse report</code>. The numbers on this page are in '
                "<code>report.json</code> next to it; the figures are also saved as PNG files there.</footer>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(report['title'])}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )
