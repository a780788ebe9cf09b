"""The report end to end: `adafuse report` on an AdaFuse-like and a dense synthetic run, plots and HTML."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adafuse.analysis import plots
from adafuse.analysis.frames import read_thumbnails
from adafuse.analysis.stats import block_stats
from adafuse.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC, path
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.size[0] > 200 and img.size[1] > 150, (path, img.size)


@pytest.fixture(scope="module")
def report(tmp_path_factory, media, synthetic_run):
    root = tmp_path_factory.mktemp("runs")
    sources = [str(media["folder"]), str(media["mp4"]), "moved_away/video.mp4"]
    ada = synthetic_run(root / "adafuse_r50", sources, num_videos=18, num_blocks=16)
    dense = synthetic_run(root / "tsn_r50", sources, adaptive=False, num_videos=12, arch="tsn_r50",
                          params=23_600_000)
    out = root / "report"
    rc = main(["report", str(ada), str(dense), "--out", str(out), "--videos", "3"])
    assert rc == 0
    return out


def test_every_figure_is_a_png_and_listed(report):
    meta = json.loads((report / "report.json").read_text())
    names = [meta["figures"]["flops_accuracy"], meta["figures"]["policy_mix"]]
    for figs in meta["figures"]["runs"].values():
        names += figs.values()
    assert set(meta["figures"]["runs"]["adafuse_r50"]) == {
        "blocks", "budget", "gflops_hist", "class_gflops", "confusion", "class_accuracy"}
    assert set(meta["figures"]["runs"]["tsn_r50"]) == {"confusion", "class_accuracy"}  # no policy plots
    assert sorted(names) == sorted(p.name for p in report.glob("*.png"))
    for name in names:
        _assert_png(report / name)


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text(encoding="utf-8")
    lowered = page.lower()
    for bad in ("http://", "https://", 'src="//', "src='//", "url(", "@import", "<script", "<link"):
        assert bad not in lowered, bad
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == len(list(report.glob("*.png"))) == 10
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC


def test_html_content_summary_notes_and_classes(report):
    page = (report / "report.html").read_text(encoding="utf-8")
    assert "<h1>AdaFuse report</h1>" in page
    assert "Dense model (no adaptive fusion" in page  # the dense run's note
    assert "Pushing something from left to right" in page  # class names reach the page
    assert "moved_away/video.mp4: not found" in page  # unreadable frames are reported, not fatal
    assert page.count("<figcaption>") == 10


def test_report_json_numbers(report):
    meta = json.loads((report / "report.json").read_text())
    ada, dense = meta["runs"]["adafuse_r50"], meta["runs"]["tsn_r50"]
    assert dense["policy"] is None and dense["budget"] is None
    assert dense["summary"]["saving"] == pytest.approx(0.0)
    mix = ada["policy"]["mix"]["ratios"]
    assert sum(mix) == pytest.approx(1.0) and ada["policy"]["mix"]["reuse_keep_quotient"] == pytest.approx(
        mix[1] / mix[2])
    assert len(ada["policy"]["blocks"]["ratios"]) == 16 and ada["policy"]["blocks"]["names"][0] == "layer1.0"
    correct = [p for p in ada["budget"]["cheapest"] + ada["budget"]["most_expensive"]]
    assert len(correct) == 6 and all(v["correct"] for v in correct)
    assert ada["budget"]["cheapest"][0]["gflops"] <= ada["budget"]["most_expensive"][0]["gflops"]
    unreadable = ada["budget"]["frames_unavailable"]
    shown_missing = {v["id"] for v in correct if v["source"] == "moved_away/video.mp4"}
    assert set(unreadable) == shown_missing
    assert [p["run"] for p in meta["comparison"]] == ["adafuse_r50", "tsn_r50"]
    assert meta["comparison"][1]["adaptive"] is False


def test_cli_reports_a_broken_run_dir(tmp_path, capsys):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text("{}")
    rc = main(["report", str(tmp_path), "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "predictions.jsonl: predictions file not found" in capsys.readouterr().err


def test_read_thumbnails_folder_mp4_and_missing(media):
    frames, reason = read_thumbnails(str(media["folder"]), [0, 5, 11], height=48)
    assert reason is None and frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
    assert not np.array_equal(frames[0], frames[2])  # the square moved
    frames, reason = read_thumbnails("clip_b.mp4", [0, 3], height=24, roots=[media["root"]])
    assert reason is None and frames.shape == (2, 24, 32, 3)
    frames, reason = read_thumbnails(str(media["folder"]), [40])
    assert frames is None and "00041.jpg" in reason
    assert read_thumbnails(None, [0]) == (None, "no source recorded for this video")


def test_block_plot_with_per_action_instance(tmp_path):
    rng = np.random.default_rng(0)
    ratios = rng.dirichlet(np.ones(3), size=(4, 5))
    const = ratios * 0.5
    path = plots.plot_block_policy(block_stats(ratios, const), tmp_path / "blocks.png", title="per action")
    _assert_png(path)
