"""Engine building blocks: data order, LR schedule, parameter groups, checkpoint files and RNG state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from adafuse.config import OptimConfig
from adafuse.engine.checkpoint import rng_state, save_atomic, set_rng_state
from adafuse.engine.data import EpochSampler, sample_seed
from adafuse.engine.demo import pair_statistics
from adafuse.engine.metrics import RunningMeans, topk_correct
from adafuse.engine.optim import LRSchedule, build_optimizer, param_groups, ramp


def keys(sampler: EpochSampler) -> list[int]:
    return [i for _, i in sampler]


def test_epoch_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(50, True, seed=3), EpochSampler(50, True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert keys(a) == keys(b) and sorted(keys(a)) == list(range(50))
    b.set_epoch(3)
    assert keys(a) != keys(b)
    # resuming at element 20 of the epoch gives the rest of the same order
    b.set_epoch(2, start=20)
    assert keys(b) == keys(a)[20:] and len(b) == 30
    assert all(e == 2 for e, _ in b)


def test_shards_cover_the_set_once_and_pad_evenly():
    shards = []
    for rank in range(3):
        s = EpochSampler(10, False, rank=rank, world_size=3)
        shards.append(keys(s))
    assert [len(s) for s in shards] == [4, 4, 4]
    assert sorted(set(sum(shards, []))) == list(range(10))  # padding repeats, never drops
    # drop_last keeps whole global batches only
    s = EpochSampler(10, True, rank=0, world_size=2, batch_size=2, drop_last=True)
    assert len(keys(s)) == 4


def test_sample_seed_is_a_pure_function():
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    assert len({sample_seed(0, e, i) for e in range(3) for i in range(50)}) == 150


def test_step_schedule_with_warmup():
    model = nn.Linear(2, 2)
    cfg = OptimConfig(lr=0.1, lr_steps=[2, 3], lr_gamma=0.1, warmup_epochs=1.0, bias_lr_mult=2.0)
    opt = build_optimizer(model, cfg)
    sched = LRSchedule(opt, cfg, steps_per_epoch=4)
    assert sched.set(0, 0) == pytest.approx(0.1 * 0.25)  # first step of a 1-epoch warm-up
    assert sched.set(1, 0) == pytest.approx(0.1)
    assert sched.set(2, 0) == pytest.approx(0.01)
    assert sched.set(3, 1) == pytest.approx(0.001)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["biases"]["lr"] == pytest.approx(2 * by_name["weights"]["lr"])
    assert ramp(0.5, 2.0) == 0.25 and ramp(5.0, 2.0) == 1.0 and ramp(0.0, 0.0) == 1.0
    assert ramp(1.0, 2.0, start_epoch=2.0) == 0.0 and ramp(3.0, 2.0, start_epoch=2.0) == 0.5


def test_param_groups_no_decay_on_biases_and_bn_and_shared_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), shared, nn.Sequential(shared), nn.Linear(4, 2))
    groups = {g["name"]: g for g in param_groups(model, 5e-4, 2.0)}
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(model.parameters()))  # the shared Linear counted once
    assert groups["weights"]["weight_decay"] == 5e-4
    assert groups["biases"]["weight_decay"] == 0.0 and groups["biases"]["lr_mult"] == 2.0
    assert groups["norms"]["weight_decay"] == 0.0 and len(groups["norms"]["params"]) == 2
    assert all(p.dim() > 1 for p in groups["weights"]["params"])


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = rng_state()
    path = save_atomic({"rng": state}, tmp_path / "x.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = torch.load(path, weights_only=True)
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_topk_and_meter():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05]])
    assert topk_correct(logits, torch.tensor([1, 2]), (1, 5)) == [1, 2]  # k capped at the class count
    m = RunningMeans()
    m.add("ce", 2.0, 3)
    m.add("ce", 1.0, 1)
    assert RunningMeans(m.state_dict()).get("ce") == 7.0


def test_pair_statistics():
    preds = [{"label": 0, "pred": 0}, {"label": 0, "pred": 1}, {"label": 1, "pred": 1}, {"label": 1, "pred": 3},
             {"label": 4, "pred": 4}]
    s = pair_statistics(preds, [[0, 1], [2, 3]])
    assert s["pair_top1"] == 50.0 and s["pair_found"] == 75.0
    assert s["direction"] == pytest.approx(200 / 3)


def test_cosine_schedule_and_adamw():
    model = nn.Linear(2, 2)
    cfg = OptimConfig(name="adamw", lr=1e-3, schedule="cosine", epochs=10, weight_decay=0.01)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    sched = LRSchedule(opt, cfg, steps_per_epoch=2)
    assert sched.set(0, 0) == pytest.approx(1e-3)
    assert sched.set(5, 0) == pytest.approx(0.5e-3)
    assert sched.set(9, 1) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 9.5 / 10)))
