"""The report tells the truth and is readable: number formats, computed sentences, labels that do not overlap,
every class named in the per-class scatter, one colour per method in the report and the demo."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from matplotlib.colors import to_hex

from adafuse.analysis import build_report, plots
from adafuse.analysis.formats import fmt_gflops, fmt_percent
from adafuse.analysis.stats import accuracy_stats


def test_fmt_gflops_keeps_three_significant_digits():
    cases = {0.0412345: "0.0412", 0.0437: "0.0437", 0.006851584: "0.00685", 4.1123: "4.11", 41.12: "41.1",
             411.2: "411", 9.996: "10.0", 0.0: "0"}
    for value, text in cases.items():
        assert fmt_gflops(value) == text, value
    for value in (0.0412345, 0.006851584, 4.1123, 41.12, 411.2, 3.14159e-4):
        text = fmt_gflops(value)
        assert "e" not in text and float(text) == pytest.approx(value, rel=5e-3)
        assert len(text.replace(".", "").lstrip("0")) == 3, text  # exactly 3 significant digits
    assert fmt_gflops(None) == fmt_gflops(float("nan")) == "–"
    assert fmt_percent(-1e-16) == "0%" and fmt_percent(0.234) == "23%" and fmt_percent(0.2345, 1) == "23.4%"


def _rewrite(run, fn) -> None:
    """Apply ``fn`` to every prediction record of ``run`` (and keep metrics.json's GFLOPs in step)."""
    path = run / "eval" / "predictions.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    for r in recs:
        fn(r)
        r["gflops"] = float(sum(r["frame_gflops"]))
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    metrics["gflops_per_video"] = float(np.mean([r["gflops"] for r in recs]))
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))


def _first_cheapest(r: dict) -> None:
    r["frame_gflops"][0] = 0.5 * min(r["frame_gflops"][1:])


def _first_dearest(r: dict) -> None:
    r["frame_gflops"][0] = 2.0 * max(r["frame_gflops"][1:])


@pytest.mark.parametrize("shape", [_first_cheapest, _first_dearest])
def test_first_frame_sentence_is_computed_from_the_run(tmp_path, synthetic_run, shape):
    run = synthetic_run(tmp_path / "ada", ["x.mp4"], num_videos=10, num_blocks=4, dense_per_frame=0.005)
    _rewrite(run, shape)
    files = build_report([run], tmp_path / "report", videos_per_extreme=1)
    page = files.html.read_text(encoding="utf-8")
    first = json.loads(files.json.read_text())["runs"]["ada"]["compute"]["first_frame"]
    dearest = shape is _first_dearest
    assert first["num_videos"] == 10 and first["most_expensive"] == (10 if dearest else 0)
    assert first["cheapest"] == (0 if dearest else 10)
    assert (f"first sampled frame costs more than every later frame in {first['most_expensive']} of 10 videos"
            in page)
    assert "usually costs most" not in page and "tend to show" not in page
    # GFLOPs of a small model keep 3 significant digits on the page (not "0.04" / "0.01" for every run)
    summary = json.loads(files.json.read_text())["runs"]["ada"]["summary"]
    assert f"<td>{fmt_gflops(summary['gflops_per_video'])}</td>" in page
    assert not re.search(r"<td>0\.0\d</td>", page)


def test_claims_follow_the_data(tmp_path, synthetic_run):
    a = synthetic_run(tmp_path / "a", ["x.mp4"], num_videos=12, num_blocks=4)
    b = synthetic_run(tmp_path / "b", ["x.mp4"], num_videos=12, num_blocks=4, seed=1)

    def all_correct(r: dict) -> None:
        r["pred"] = r["label"]
        r["correct"] = True

    _rewrite(b, all_correct)
    page = build_report([a, b], tmp_path / "same").html.read_text(encoding="utf-8")
    assert "All 2 runs were evaluated on the same number of videos (12)" in page
    assert page.count("No video was misclassified.") == 1  # run b only
    assert "The most frequent confusion:" in page  # run a has confusions
    c = synthetic_run(tmp_path / "c", ["x.mp4"], num_videos=6, num_blocks=4)
    page = build_report([a, c], tmp_path / "differ").html.read_text(encoding="utf-8")
    assert "The runs differ in videos" in page and "same number of videos" not in page


def _capture(monkeypatch) -> list:
    figures = []
    real_save = plots._save

    def save(fig, path):
        figures.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    return figures


def _tick_boxes_overlap(fig, ax) -> bool:
    return plots._overlapping(ax.get_xticklabels(), fig.canvas.get_renderer())


@pytest.mark.parametrize("num", [4, 8, 16, 60])
def test_block_labels_do_not_overlap(tmp_path, monkeypatch, num):
    figures = _capture(monkeypatch)
    rng = np.random.default_rng(num)
    blocks = {"names": [f"base_model.layer{1 + b // 4}.{b % 4}" for b in range(num)],
              "ratios": rng.dirichlet(np.ones(3), size=num).tolist(),
              "trend": {a: {"x": [1.0, float(num)], "y": [0.3, 0.3], "degree": 1} for a in ("skip", "reuse", "keep")},
              "instance": None, "instance_total": None}
    plots.plot_block_policy(blocks, tmp_path / "blocks.png")
    fig = figures[-1]
    ax = fig.axes[1]
    fig.draw_without_rendering()
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) >= min(num, 8)
    if labels[0].get_rotation() == 45:  # slanted: the ticks are far enough apart for the text lines
        xs = sorted(t.get_position()[0] for t in labels)
        px = ax.transData.transform([[x, 0] for x in xs])[:, 0]
        assert np.diff(px).min() >= 1.7 * labels[0].get_fontsize() * fig.dpi / 72
    else:
        assert not _tick_boxes_overlap(fig, ax)


def test_fit_xticklabels_keeps_short_labels_flat(tmp_path):
    fig = plots._figure(6.0, 3.0)
    ax = fig.subplots()
    ax.set_xlim(0, 5)
    assert plots.fit_xticklabels(fig, ax, [1, 2, 3, 4], ["1", "2", "3", "4"]) == 1
    assert ax.get_xticklabels()[0].get_rotation() == 0


@pytest.mark.parametrize("num_classes", [6, 15, 30])
def test_class_scatter_names_every_class(tmp_path, monkeypatch, num_classes):
    figures = _capture(monkeypatch)
    rng = np.random.default_rng(0)
    names = [f"class name {i}" for i in range(num_classes)]
    labels = np.arange(4 * num_classes) % num_classes
    preds = np.where(rng.random(len(labels)) < 0.5, labels, (labels + 1) % num_classes)
    gflops = 0.0055 + 1e-6 * rng.integers(0, 3, len(labels))  # many classes at (almost) the same place
    acc = accuracy_stats([{"label": int(a), "pred": int(b), "gflops": float(g)}
                          for a, b, g in zip(labels, preds, gflops, strict=True)], names)
    plots.plot_class_accuracy_vs_gflops(acc, tmp_path / "scatter.png")
    fig = figures[-1]
    ax = fig.axes[0]
    dot_labels = {int(i) for t in ax.texts for i in t.get_text().split(", ")}
    assert dot_labels == set(range(num_classes))  # every dot carries its index
    key = "\n".join(t.get_text() for a in fig.axes[1:] for t in a.texts)
    for i, name in enumerate(names):
        assert re.search(rf"^\s*{i}\s+{name}$", key, re.M), name


def test_demo_and_report_draw_a_method_in_the_same_colour(tmp_path, monkeypatch, synthetic_run):
    from adafuse.engine.demo import plot_results

    figures = _capture(monkeypatch)
    rows = [{"method": "TSN", "arch": "tsn_r18", "gflops_per_video": 0.0069, "top1": 20.0, "params": 180_000,
             "policy_ratios": None},
            {"method": "AdaFuse-TSN", "arch": "adafuse_tsn_r18", "gflops_per_video": 0.0055, "top1": 50.0,
             "params": 200_000, "policy_ratios": [0.4, 0.35, 0.25]}]
    plot_results(rows, tmp_path)
    demo_colors = {to_hex(c.get_facecolor()[0], keep_alpha=False) for c in figures[0].axes[0].collections}
    a = synthetic_run(tmp_path / "ada", ["x.mp4"], num_videos=6, num_blocks=4, arch="adafuse_tsn_r18")
    d = synthetic_run(tmp_path / "tsn", ["x.mp4"], adaptive=False, num_videos=6, arch="tsn_r18")
    figures.clear()
    build_report([a, d], tmp_path / "report", videos_per_extreme=0)
    report_colors = {to_hex(c.get_facecolor()[0], keep_alpha=False) for c in figures[0].axes[0].collections}
    expected = {plots.method_color("adafuse_tsn_r18"), plots.method_color("tsn_r18")}
    assert demo_colors == report_colors == expected and len(expected) == 2
