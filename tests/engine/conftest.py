"""Fixtures of the engine tests: a tiny synthetic set and tiny training configs (width-16 ResNet-18, 32 px)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adafuse.data.synthetic import generate_synthetic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def engine_synth(tmp_path_factory):
    """15 classes x 4 videos (3 train + 1 val each), 32 px, 16-20 frames."""
    out = tmp_path_factory.mktemp("engine_synth") / "synth"
    return generate_synthetic(out, videos_per_class=4, size=32, frames=(16, 20), seed=0, val_per_class=1,
                              workers=1, progress=False)


def tiny_config(synth, out_dir: Path, name: str = "run", **sections: dict) -> dict:
    """A complete tiny training config as a dict (sections override the defaults below)."""
    cfg = {
        "model": {"name": "adafuse_tsn_r18", "num_frames": 4, "kwargs": {"width": 16}, "policy_hidden": 32},
        "data": {"train_list": synth.train_frames, "val_list": synth.val_frames, "input_size": 32,
                 "scale_size": 32, "scales": [1.0, 0.875], "batch_size": 8, "num_workers": 0},
        "optim": {"epochs": 2, "lr": 0.02, "lr_steps": [1]},
        "train": {"flops_weight": 1.0},
        "eval": {"batch_size": 8},
        "run": {"out_dir": str(out_dir), "name": name, "seed": 0, "threads": 1, "log_every": 1,
                "tensorboard": False, "progress": False},
    }
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def adafuse_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "adafuse", *args]


def run_cli(*args: str, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(adafuse_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
