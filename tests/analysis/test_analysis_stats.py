"""Statistics of the report on hand-made predictions and masks with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adafuse.analysis.runs import RunFormatError, load_run, read_predictions
from adafuse.analysis.stats import (
    accuracy_stats,
    block_ratio_array,
    block_stats,
    budget_extremes,
    consistency_notes,
    policy_from_predictions,
    policy_mix,
    policy_stats_from_masks,
    polynomial_trend,
    run_stats,
    run_summary,
)
from adafuse.flops import BlockCost, StaticCost


def _pred(vid, label, pred, gflops=10.0, ratios=(), constant=(), frames=(), **extra):
    return {"id": vid, "label": label, "pred": pred, "gflops": gflops, "block_ratios": [list(r) for r in ratios],
            "block_constant": list(constant), "frame_gflops": list(frames), **extra}


# --------------------------------------------------------------------------------------------- policy


def test_policy_mix_and_quotient():
    # 2 videos x 2 blocks: mean over everything = (0.4, 0.3, 0.3)
    ratios = np.array([[[0.6, 0.2, 0.2], [0.4, 0.2, 0.4]], [[0.2, 0.4, 0.4], [0.4, 0.4, 0.2]]])
    mix = policy_mix(ratios)
    assert mix["ratios"] == pytest.approx([0.4, 0.3, 0.3])
    assert (mix["skip"], mix["reuse"], mix["keep"]) == pytest.approx((0.4, 0.3, 0.3))
    assert mix["reuse_keep_quotient"] == pytest.approx(1.0)
    assert policy_mix(np.array([[[1.0, 0.0, 0.0]]]))["reuse_keep_quotient"] is None  # nothing kept


def test_block_stats_means_instance_and_trend():
    ratios = np.array([[[0.6, 0.2, 0.2], [0.4, 0.2, 0.4]], [[0.2, 0.4, 0.4], [0.4, 0.4, 0.2]]])
    const_total = np.array([[0.5, 0.1], [0.3, 0.3]])
    s = block_stats(ratios, const_total, ["a", "b"])
    assert s["names"] == ["a", "b"]
    assert np.allclose(s["ratios"], [[0.4, 0.3, 0.3], [0.4, 0.3, 0.3]])
    assert s["instance"] is None and s["instance_total"] == pytest.approx([0.4, 0.2])
    # per-action constancy: totals are the sums
    const_actions = np.array([[[0.2, 0.0, 0.1], [0.0, 0.1, 0.0]], [[0.4, 0.0, 0.1], [0.2, 0.1, 0.0]]])
    s = block_stats(ratios, const_actions)
    assert s["names"] == ["block1", "block2"]
    assert np.allclose(s["instance"], [[0.3, 0.0, 0.1], [0.1, 0.1, 0.0]])
    assert s["instance_total"] == pytest.approx([0.4, 0.2])
    with pytest.raises(ValueError, match="block_constant has shape"):
        block_stats(ratios, np.zeros((2, 3)))


def test_polynomial_trend_recovers_a_cubic_and_lowers_degree():
    x = np.arange(1, 11, dtype=float)
    y = 0.001 * x**3 - 0.02 * x**2 + 0.05 * x + 0.3
    t = polynomial_trend(y)
    assert t["degree"] == 3
    assert t["coefficients"] == pytest.approx([0.001, -0.02, 0.05, 0.3], abs=1e-9)
    assert t["fitted"] == pytest.approx(y.tolist())
    assert t["x"][0] == 1.0 and t["x"][-1] == 10.0 and len(t["x"]) == len(t["y"])
    assert polynomial_trend([0.1, 0.2, 0.6])["degree"] == 1  # 3 blocks: a line, not an interpolation
    assert polynomial_trend([0.3])["fitted"] == pytest.approx([0.3])


def test_block_ratio_array_dense_and_mixed():
    assert block_ratio_array([_pred("a", 0, 0), _pred("b", 1, 1)]) is None
    assert policy_from_predictions([_pred("a", 0, 0)]) is None
    with pytest.raises(ValueError, match="'b' has 0"):
        block_ratio_array([_pred("a", 0, 0, ratios=[(1, 0, 0)]), _pred("b", 0, 0)])


def _hand_masks():
    """1 video, T=2. Block 0 (C=4): frame 0 actions (s, s, k, r), frame 1 (s, k, k, r). Block 1 (C=2): keep."""
    s, r, k = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]
    block0 = torch.tensor([[s, s, k, r], [s, k, k, r]])  # (N*T=2, C=4, 3)
    block1 = torch.tensor([[k, k], [k, k]])
    return [block0, block1]


def test_policy_stats_from_masks_known_answer():
    out = policy_stats_from_masks(_hand_masks(), num_frames=2)
    blocks = out["blocks"]
    # block 0: 8 channel-frames: skip 3, reuse 2, keep 3; constant channels: 0 (s), 2 (k), 3 (r) -> 3/4
    assert blocks["ratios"][0] == pytest.approx([3 / 8, 2 / 8, 3 / 8])
    assert blocks["ratios"][1] == pytest.approx([0, 0, 1])
    assert blocks["instance_total"] == pytest.approx([0.75, 1.0])
    # the mix counts every channel decision: block 0 has 8 (3 s, 2 r, 3 k), block 1 has 4 (all k) -> of 12
    assert out["mix"]["ratios"] == pytest.approx([3 / 12, 2 / 12, 7 / 12])
    assert out["mix"]["reuse_keep_quotient"] == pytest.approx(2 / 7)
    assert "gflops_per_video" not in out


def test_policy_stats_from_masks_with_cost_uses_the_flops_model():
    # F1 = F2 = 1 GFLOP per block, no fixed cost. Block 0: produce (k[t] or r[t+1]) = 2/4 at both frames,
    # consume = k[0] = 1/4 at t=0 and 1 - s[1] = 3/4 at t=1 -> 2.0 G; block 1 (all keep) -> 4.0 G.
    cost = StaticCost(total=4e9, blocks=[BlockCost("b0", 4, 1e9, 1e9), BlockCost("b1", 2, 1e9, 1e9)], floor=0.0,
                      num_frames=2, size=224, params=0)
    out = policy_stats_from_masks(_hand_masks(), num_frames=2, cost=cost)
    assert out["gflops_per_video"] == pytest.approx(6.0)
    assert out["blocks"]["names"] == ["b0", "b1"]


def test_policy_stats_from_masks_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"mask 0 has shape \(2, 4\)"):
        policy_stats_from_masks([torch.zeros(2, 4)], num_frames=2)
    with pytest.raises(ValueError, match="no masks"):
        policy_stats_from_masks([], num_frames=2)


def test_policy_stats_from_masks_splits_videos_by_num_frames():
    # 2 videos x T=3 frames: video 0 skips everything, video 1 alternates keep/reuse/keep on every channel
    m = torch.zeros(6, 5, 3)
    m[0:3, :, 0] = 1
    m[3, :, 2] = m[4, :, 1] = m[5, :, 2] = 1
    out = policy_stats_from_masks([m], num_frames=3)
    assert out["mix"]["ratios"] == pytest.approx([0.5, 1 / 6, 1 / 3])
    assert out["blocks"]["instance_total"] == pytest.approx([0.5])  # video 0: all constant, video 1: none
    with pytest.raises(ValueError, match="6"):
        policy_stats_from_masks([m], num_frames=4)


# ------------------------------------------------------------------------------------------- accuracy


def test_accuracy_stats_confusion_and_per_class():
    preds = [
        _pred("a", 0, 0, gflops=10, top5=[0, 1, 2, 3, 4]),
        _pred("b", 0, 1, gflops=20, top5=[1, 0, 2, 3, 4]),
        _pred("c", 1, 1, gflops=30, top5=[1, 2, 0, 3, 4]),
        _pred("d", 2, 0, gflops=40, top5=[0, 1, 3, 4, 5]),  # label 2 not in top-5
        _pred("e", 2, 0, gflops=50, top5=[0, 2, 1, 3, 4]),
    ]
    acc = accuracy_stats(preds, ["zero", "one", "two", "three"])
    assert acc["num_classes"] == 4
    assert acc["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]]
    assert acc["top1"] == pytest.approx(40.0)
    assert acc["top5"] == pytest.approx(80.0)
    per = {c["name"]: c for c in acc["per_class"]}
    assert per["zero"]["accuracy"] == pytest.approx(50.0) and per["zero"]["mean_gflops"] == pytest.approx(15.0)
    assert per["one"]["accuracy"] == pytest.approx(100.0)
    assert per["two"]["accuracy"] == pytest.approx(0.0) and per["two"]["count"] == 2
    assert per["three"]["count"] == 0 and per["three"]["accuracy"] is None and per["three"]["mean_gflops"] is None
    assert acc["mean_class_accuracy"] == pytest.approx(50.0)  # classes with videos only
    assert acc["most_confused"][0] == {"true": 2, "pred": 0, "count": 2, "true_name": "two", "pred_name": "zero"}
    assert len(acc["most_confused"]) == 2  # only non-zero off-diagonal cells


def test_accuracy_stats_names_missing_classes_and_top5_absent():
    acc = accuracy_stats([_pred("a", 0, 2)])
    assert acc["class_names"] == ["class 0", "class 1", "class 2"]
    assert acc["top5"] is None


# --------------------------------------------------------------------------------------------- budget


def test_budget_extremes_only_correct_no_overlap_and_relative():
    preds = [
        _pred("wrong_cheap", 0, 1, gflops=1.0, frames=[0.5, 0.5]),
        _pred("c1", 0, 0, gflops=3.0, frames=[2.0, 1.0], source="x.mp4", frame_indices=[0, 5]),
        _pred("c2", 1, 1, gflops=4.0, frames=[2.0, 2.0]),
        _pred("c3", 1, 1, gflops=6.0, frames=[3.0, 3.0]),
    ]
    b = budget_extremes(preds, dense_gflops_per_video=8.0, class_names=["A", "B"], count=2)
    assert b["num_correct"] == 3
    assert [v["id"] for v in b["cheapest"]] == ["c1", "c2"]
    assert [v["id"] for v in b["most_expensive"]] == ["c3"]  # what is left, never the same video twice
    c1 = b["cheapest"][0]
    assert c1["relative"] == pytest.approx(3 / 8)
    assert c1["frame_relative"] == pytest.approx([0.5, 0.25])  # dense per frame = 8 / 2
    assert c1["label_name"] == "A" and c1["source"] == "x.mp4" and c1["frame_indices"] == [0, 5]
    no_dense = budget_extremes(preds, None, count=1)
    assert no_dense["cheapest"][0]["relative"] is None and no_dense["cheapest"][0]["frame_relative"] is None


def test_run_summary_and_consistency_notes():
    preds = [_pred("a", 0, 0, gflops=10.0, ratios=[(0.5, 0.25, 0.25)]), _pred("b", 1, 0, gflops=20.0,
                                                                             ratios=[(0.5, 0.25, 0.25)])]
    metrics = {"arch": "adafuse_tsn_r18", "top1": 50.0, "gflops_static_per_video": 30.0, "params": 15_000_000,
               "num_videos": 2, "gflops_per_video": 15.0, "class_names": ["a", "b"]}
    s = run_summary(metrics, preds)
    assert s["top1"] == pytest.approx(50.0) and s["gflops_per_video"] == pytest.approx(15.0)
    assert s["saving"] == pytest.approx(0.5)
    assert s["policy_ratios"] == pytest.approx([0.5, 0.25, 0.25]) and s["reuse_keep_quotient"] == pytest.approx(1.0)
    assert consistency_notes(metrics, s) == []
    notes = consistency_notes({**metrics, "top1": 60.0, "num_videos": 3}, s)
    assert any("top1 = 60.00%" in n for n in notes) and any("num_videos = 3" in n for n in notes)
    full = run_stats(metrics, preds)
    assert set(full) == {"summary", "policy", "accuracy", "compute", "budget", "notes"}
    assert full["compute"]["mean"] == pytest.approx(15.0) and sum(full["compute"]["hist_counts"]) == 2
    json.dumps(full, allow_nan=False)  # plain JSON


# --------------------------------------------------------------------------------------------- loading


def _write(tmp_path, lines, metrics=None):
    (tmp_path / "eval").mkdir(exist_ok=True)
    (tmp_path / "eval" / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics or {"arch": "x", "class_names": ["a", "b"]}))
    return tmp_path


def test_loader_errors_name_file_line_and_key(tmp_path):
    ok = json.dumps(_pred("a", 0, 0))
    _write(tmp_path, [ok, json.dumps({"id": "b", "label": 0, "pred": 0})])
    with pytest.raises(RunFormatError, match=r"predictions.jsonl:2: missing key 'gflops'"):
        load_run(tmp_path)
    _write(tmp_path, [ok, json.dumps(_pred("b", "0", 0))])
    with pytest.raises(RunFormatError, match=r":2: key 'label' must be int, got str"):
        load_run(tmp_path)
    _write(tmp_path, [ok, json.dumps(_pred("b", 0, 1, correct=True))])
    with pytest.raises(RunFormatError, match=r":2: 'correct' is True but pred 1 vs label 0"):
        load_run(tmp_path)
    _write(tmp_path, [json.dumps(_pred("a", 0, 0, ratios=[(1, 0, 0)])), ok])
    with pytest.raises(RunFormatError, match=r":2: 0 gated blocks in block_ratios, but line 1 has 1"):
        load_run(tmp_path)
    _write(tmp_path, [json.dumps(_pred("a", 0, 5))])
    with pytest.raises(RunFormatError, match="class index 5 but .*metrics.json lists only 2 class_names"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="predictions file not found"):
        read_predictions(tmp_path / "nope.jsonl")


def test_loader_reads_a_synthetic_run(tmp_path, synthetic_run, media):
    run = load_run(synthetic_run(tmp_path / "r", [str(media["folder"])], num_videos=6, num_blocks=4))
    assert run.name == "r" and run.arch == "adafuse_tsn_r50" and run.has_policy
    assert len(run.predictions) == 6 and run.config["model"]["arch"] == "adafuse_tsn_r50"
    assert all(isinstance(p["correct"], bool) for p in run.predictions)


def test_policy_stats_from_a_real_model():
    from adafuse.flops import static_cost
    from adafuse.models import build_model, collect_masks, fusion_modules

    torch.manual_seed(0)
    model = build_model("adafuse_tsn_r18", num_classes=3, num_frames=2).eval()
    with torch.no_grad():
        model(torch.randn(2, 2, 3, 32, 32))
    cost = static_cost(model, size=32)
    out = policy_stats_from_masks(collect_masks(model), num_frames=2, cost=cost)
    assert len(out["blocks"]["names"]) == len(fusion_modules(model)) == 8
    assert sum(out["mix"]["ratios"]) == pytest.approx(1.0)
    assert cost.floor / 1e9 * 2 <= out["gflops_per_video"] <= cost.gflops_per_video + 1e-9
