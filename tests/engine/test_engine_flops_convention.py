"""The FLOPs convention of the config reaches the loss, and evaluation reports the exact and released values."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from adafuse.config import Config
from adafuse.engine import trainer as trainer_mod
from adafuse.flops import CONVENTIONS


def test_config_choices_are_the_engine_conventions():
    cfg = Config()
    assert cfg.train.flops_convention == "exact"
    from dataclasses import fields

    meta = {f.name: f.metadata for f in fields(cfg.train)}
    assert meta["flops_convention"]["choices"] == CONVENTIONS


def test_training_loss_uses_the_configured_convention(engine_synth, tmp_path, monkeypatch, capsys):
    seen = []
    original = trainer_mod.loss_gflops

    def recording(cost, masks, num_frames, batch_size=None, convention="exact"):
        out = original(cost, masks, num_frames, batch_size, convention)
        if masks and masks[0].requires_grad:  # the training step (not the DDP probe on a copy)
            exact = original(cost, masks, num_frames, batch_size, "exact")
            seen.append((convention, float(out.detach()), float(exact.detach())))
        return out

    monkeypatch.setattr(trainer_mod, "loss_gflops", recording)
    cfg = tiny_config(engine_synth, tmp_path, "upb", optim={"epochs": 1, "lr_steps": []},
                      train={"flops_convention": "released_upb"})
    threads = torch.get_num_threads()
    try:
        best = trainer_mod.train(Config.from_dict(cfg))
    finally:
        torch.set_num_threads(threads)
    assert seen and all(conv == "released_upb" for conv, _, _ in seen)
    # upb never credits conv1, so it is never below the exact value of the same masks
    assert all(upb >= exact - 1e-6 for _, upb, exact in seen) and any(upb > exact for _, upb, exact in seen)
    log = capsys.readouterr().err + (tmp_path / "upb" / "train.log").read_text()
    assert "FLOPs loss convention released_upb" in log and "G/frame, released_upb)" in log
    assert "GFLOPs/video" in log and "(exact; released real" in log
    # evaluation: the exact value and both released values, per video averaged
    assert best["flops_convention"] == "exact"
    real, upb = best["gflops_per_video_released_real"], best["gflops_per_video_released_upb"]
    assert real <= upb <= best["gflops_static_per_video_released"] + 1e-9
    assert best["gflops_static_per_video_released"] == pytest.approx(best["gflops_static_per_video"])  # ResNet
    assert real != pytest.approx(best["gflops_per_video"], rel=1e-9)
