"""Budget curves in the report: several checkpoints' accuracy-vs-GFLOPs curves next to runs trained separately."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from adafuse.analysis.budget_curves import load_budget_curve
from adafuse.analysis.runs import RunFormatError
from adafuse.cli import main


def write_curve(run_dir: Path, points: list[tuple[float, float, float]]) -> Path:
    """``eval/budget_curve.json`` with (budget, gflops_per_video, top1) points."""
    curve = {"gflops_all_keep": 32.9, "points": [
        {"budget": b, "gflops_per_video": g, "top1": t, "top5": t + 20, "policy_ratios": [0.3, 0.3, 0.4],
         "shift": 1.0 - b} for b, g, t in points]}
    (run_dir / "eval" / "budget_curve.json").write_text(json.dumps(curve))
    return run_dir


def test_report_draws_every_curve_and_the_separate_runs(tmp_path, media, synthetic_run):
    sources = [str(media["folder"])]
    a = write_curve(synthetic_run(tmp_path / "ckpt_a", sources, num_videos=12, seed=1),
                    [(1.0, 32.9, 61.0), (0.8, 26.3, 60.2), (0.6, 19.7, 55.0)])
    b = write_curve(synthetic_run(tmp_path / "ckpt_b", sources, num_videos=12, seed=2),
                    [(0.6, 19.7, 57.0), (1.0, 32.9, 60.0)])
    fixed = synthetic_run(tmp_path / "lambda_run", sources, num_videos=12, seed=3)
    out = tmp_path / "report"
    assert main(["report", str(a), str(b), str(fixed), "--out", str(out), "--videos", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["figures"]["budget_curves"] == "budget_curves.png"
    assert set(report["budget_curves"]) == {"ckpt_a", "ckpt_b"}
    # points sorted by GFLOPs
    assert [p["budget"] for p in report["budget_curves"]["ckpt_b"]["points"]] == [0.6, 1.0]
    with Image.open(out / "budget_curves.png") as img:
        assert img.size[0] > 400
    assert "compute budgets" in (out / "report.html").read_text()


def test_report_without_curves_has_no_budget_figure(tmp_path, media, synthetic_run):
    run = synthetic_run(tmp_path / "plain", [str(media["folder"])], num_videos=6)
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out), "--videos", "0"]) == 0
    assert "budget_curves" not in json.loads((out / "report.json").read_text())["figures"]
    assert not (out / "budget_curves.png").exists()


@pytest.mark.parametrize("content,message", [("{", "not valid JSON"), ('{"points": []}', "non-empty list"),
                                             ('{"points": [{"budget": 0.5, "top1": 3}]}', "gflops_per_video")])
def test_broken_curve_files_name_the_file(tmp_path, content, message):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "budget_curve.json").write_text(content)
    with pytest.raises(RunFormatError, match=message) as err:
        load_budget_curve(tmp_path)
    assert "budget_curve.json" in str(err.value)
