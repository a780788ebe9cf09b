"""Rate control: a 500-frame stream of many videos (synthetic clips and noise, whose natural costs differ) stays
within the stated tolerance of its GFLOPs-per-frame target, where a fixed shift does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_helpers import decisive_policies, randomize_bn

from adafuse.data.synthetic import SYNTH_CLASSES, render_clip
from adafuse.inference import StreamingRecognizer
from adafuse.inference.budget import BudgetError, set_budget_shift
from adafuse.inference.rate_control import RateController, rate_curve
from adafuse.models import build_model

SIZE, FRAMES, WINDOW = 48, 500, 32


def normalize(frames: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(frames).float().permute(0, 3, 1, 2) / 255 - 0.45) / 0.225


@pytest.fixture(scope="module")
def setup():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model("adafuse_tsn_r18", num_classes=5, num_frames=4, width=8).eval()
    randomize_bn(model, gen)
    decisive_policies(model, gen, scale=1.0)
    calib = torch.stack([normalize(render_clip(SYNTH_CLASSES[i], 100 + i, size=SIZE, num_frames=4)) for i in range(12)])
    curve = rate_curve(model, calib)
    videos, k = [], 0
    while sum(len(v) for v in videos) < FRAMES:  # videos of 20-40 frames; every 4th is noise (costs differ)
        n = 20 + (k * 7) % 21
        if k % 4 == 3:
            noise = np.random.default_rng(k).normal(128, 60, (n, SIZE, SIZE, 3))
            videos.append(normalize(np.clip(noise, 0, 255).astype(np.uint8)))
        else:
            videos.append(normalize(render_clip(SYNTH_CLASSES[k % len(SYNTH_CLASSES)], k, size=SIZE, num_frames=n)))
        k += 1
    frames = torch.cat(videos)[:FRAMES]
    starts = set(np.cumsum([0] + [len(v) for v in videos]).tolist())
    return model, curve, frames, starts


def stream(step, frames, starts, new_video):
    for i, frame in enumerate(frames):
        if i in starts:
            new_video()
        step(frame)


def test_curve_is_monotone_and_spans_floor_to_all_keep(setup):
    _, curve, _, _ = setup
    shifts, costs = zip(*curve, strict=True)
    assert list(shifts) == sorted(shifts)
    assert all(a >= b for a, b in zip(costs, costs[1:], strict=False)) and costs[0] > 1.5 * costs[-1]


@pytest.mark.parametrize("fraction", [0.85, 0.65])
def test_a_500_frame_stream_stays_within_tolerance(setup, fraction):
    model, curve, frames, starts = setup
    target = fraction * curve[0][1]
    rec = StreamingRecognizer(model)
    rc = RateController(rec, target, curve, window=WINDOW, tolerance=0.05)
    stream(rc.step, frames, starts, rc.new_video)
    stats = rc.stats()
    assert stats.frames == FRAMES
    assert stats.within and stats.window_mean_max <= target * 1.05
    assert abs(stats.mean - target) <= 0.02 * target
    assert stats.shift_min < stats.shift_max  # it did adjust the shift
    set_budget_shift(model, 0.0)


def test_a_fixed_shift_drifts_out_of_tolerance_on_the_same_stream(setup):
    """The stream is hard: the shift the cost model picks for the target, held fixed, overshoots some window."""
    model, curve, frames, starts = setup
    target = 0.65 * curve[0][1]
    rec = StreamingRecognizer(model)
    rc = RateController(rec, target, curve, window=WINDOW)
    set_budget_shift(model, rc.shift_for(target))
    costs = []

    def step(frame):
        rec.step(frame)
        costs.append(rec.last_report.flops / 1e9)

    stream(step, frames, starts, rec.reset)
    set_budget_shift(model, 0.0)
    means = np.convolve(costs, np.ones(WINDOW) / WINDOW, mode="valid")
    assert means.max() > target * 1.05


def test_unreachable_targets_are_errors(setup):
    model, curve, _, _ = setup
    with pytest.raises(BudgetError, match="outside what the model can spend"):
        RateController(StreamingRecognizer(model), 2 * curve[0][1], curve)
    with pytest.raises(BudgetError, match="outside what the model can spend"):
        RateController(StreamingRecognizer(model), 0.5 * curve[-1][1], curve)
