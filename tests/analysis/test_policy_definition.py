"""One skip/reuse/keep definition: metrics.json (engine), the demo table, the budget curve's clip cost and
report.json give the same numbers for the same masks, and the definition is stated where the numbers are shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from adafuse.analysis import build_report
from adafuse.analysis.formats import fmt_gflops
from adafuse.engine.demo import results_markdown
from adafuse.engine.evaluate import summarize, write_eval
from adafuse.flops import POLICY_RATIO_DEFINITION, BlockCost, StaticCost, policy_ratios, video_accounting

CLASSES = ["a", "b", "c"]
T = 4


def _masks(num_videos: int, seed: int = 0) -> list[torch.Tensor]:
    """Two gated blocks that behave very differently: a narrow one (8 channels) that mostly skips and a wide
    one (64 channels) that mostly keeps, so weighting by channels and weighting blocks equally disagree."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for channels, probs in ((8, [0.8, 0.15, 0.05]), (64, [0.05, 0.25, 0.7])):
        actions = torch.multinomial(torch.tensor(probs), num_videos * T * channels, replacement=True, generator=g)
        out.append(torch.nn.functional.one_hot(actions, 3).float().reshape(num_videos * T, channels, 3))
    return out


def _engine_run(run_dir: Path, num_videos: int = 9) -> dict:
    """An evaluated run written by the engine's own functions (video_accounting, summarize, write_eval)."""
    cost = StaticCost(total=3e6, blocks=[BlockCost("layer1.0", 8, 2e5, 2e5), BlockCost("layer4.0", 64, 8e5, 8e5)],
                      floor=1e6, num_frames=T, size=32, params=1000)
    records = video_accounting(cost, _masks(num_videos), T)
    for i, r in enumerate(records):
        label = i % len(CLASSES)
        pred = label if i % 3 else (label + 1) % len(CLASSES)
        r.update(id=f"v{i}", label=label, pred=pred, top5=[pred], scores=[1.0], correct=pred == label,
                 source="", frame_indices=list(range(T)), index=i, ce=1.0, finite=True)
    metrics = summarize(records, cost, "adafuse_tsn_r18", run_dir.name, CLASSES, T, 32)
    write_eval(run_dir / "eval", records, metrics)
    return metrics


def _demo_row(metrics: dict, method: str) -> dict:
    return {"method": method, "arch": metrics["arch"], "run": "", "direction": None, "top1_split": None,
            "train_seconds": 0.0, "eval_seconds": 0.0,
            **{k: metrics[k] for k in ("params", "gflops_per_video", "gflops_static_per_video", "top1", "top5",
                                       "policy_ratios", "num_videos")}}


def test_metrics_json_demo_table_and_report_agree_on_the_policy_mix(tmp_path):
    metrics = _engine_run(tmp_path / "ada")
    engine = metrics["policy_ratios"]
    assert metrics["block_channels"] == [8, 64] and metrics["policy_ratios_definition"] == POLICY_RATIO_DEFINITION
    # the two weightings really differ on these masks (else this test could not tell them apart)
    equal = policy_ratios(metrics["block_ratios"], None)
    assert max(abs(a - b) for a, b in zip(engine, equal, strict=True)) > 0.1

    files = build_report([tmp_path / "ada"], tmp_path / "report")
    report = json.loads(files.json.read_text())["runs"]["ada"]
    assert report["summary"]["policy_ratios"] == pytest.approx(engine, abs=1e-9)
    assert report["policy"]["mix"]["ratios"] == pytest.approx(engine, abs=1e-9)
    assert report["policy"]["mix"]["definition"] == POLICY_RATIO_DEFINITION
    assert report["notes"] == [] and report["warnings"] == []

    info = {"seed": 0, "recipe": "test", "num_classes": 3, "num_pairs": 0, "num_static": 3, "num_train": 0,
            "num_val": 9, "frames": T, "input_size": 32, "width": 8, "pretrain_epochs": 1, "epochs": 1,
            "seconds": 0.0, "data_seconds": 0.0, "pretrain_seconds": 0.0}
    table = results_markdown([_demo_row(metrics, "AdaFuse-TSN")], info)
    row = next(line for line in table.splitlines() if line.startswith("| AdaFuse-TSN |"))
    cell = re.search(r"(\d+\.\d) / (\d+\.\d) / (\d+\.\d)", row)
    assert cell is not None, row
    shown = [float(x) for x in cell.groups()]
    assert shown == [round(100 * x, 1) for x in report["policy"]["mix"]["ratios"]]
    assert POLICY_RATIO_DEFINITION in table  # the demo table states the definition
    assert f"| {fmt_gflops(metrics['gflops_per_video'])} |" in row  # 3 significant digits, as on the report's page

    page = files.html.read_text(encoding="utf-8")
    assert " / ".join(f"{100 * x:.1f}" for x in engine) in page  # the run table shows the same numbers
    assert page.count(POLICY_RATIO_DEFINITION) >= 2  # under the run table and on the policy mix


def test_budget_clip_cost_uses_the_same_definition():
    from adafuse.flops import static_cost
    from adafuse.inference.budget import clip_cost
    from adafuse.models import build_model, collect_masks, policy_state

    torch.manual_seed(0)
    model = build_model("adafuse_tsn_r18", num_classes=3, num_frames=T, width=8, policy_hidden=8)
    clips = torch.randn(2, T, 3, 32, 32)
    result = clip_cost(model, clips, 0.0)
    cost = static_cost(model, 32)
    model.eval()
    with torch.no_grad(), policy_state(model, decision="argmax"):
        model(clips)
        masks = collect_masks(model)
    per_block = [m.float().mean(dim=(0, 1)).tolist() for m in masks]
    assert result.policy_ratios == pytest.approx(policy_ratios(per_block, [b.channels for b in cost.blocks]))


def test_older_metrics_without_channel_counts_fall_back_visibly(tmp_path, synthetic_run):
    run = synthetic_run(tmp_path / "old", ["x.mp4"], num_videos=8, num_blocks=4, block_channels=False)
    files = build_report([run], tmp_path / "report")
    report = json.loads(files.json.read_text())["runs"]["old"]
    assert report["policy"]["mix"]["definition"] != POLICY_RATIO_DEFINITION
    assert "weighted equally" in report["policy"]["mix"]["definition"]
    assert any("block_channels" in w for w in report["warnings"])
    page = files.html.read_text(encoding="utf-8")
    assert "<sup>†</sup>" in page and "every gated block is weighted equally" in page
