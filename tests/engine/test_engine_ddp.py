"""torchrun with 2 CPU processes (gloo): training runs data-parallel, and evaluation gives the same numbers as
a single process (per-video results gathered and de-duplicated, not a mean of per-rank means)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import run_cli, tiny_config, write_config


def torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "adafuse", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_two_process_training_and_process_count_independent_eval(engine_synth, tmp_path):
    # 15 val videos: 2 ranks get 8 each, one padded duplicate that must be dropped
    cfg = tiny_config(engine_synth, tmp_path, "ddp", optim={"epochs": 1, "name": "adamw", "lr": 0.002},
                      data={"batch_size": 8}, eval={"batch_size": 3})
    path = write_config(tmp_path / "ddp.yaml", cfg)
    r = torchrun("train", str(path))
    assert r.returncode == 0, r.stderr[-4000:]
    run = tmp_path / "ddp"
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch = next(x for x in log if x["kind"] == "train_epoch")
    assert epoch["step"] == 5  # 45 videos, global batch 8 (4 per rank), drop_last: 5 steps
    val = next(x for x in log if x["kind"] == "val")
    assert val["num_videos"] == 15

    ckpt = str(run / "checkpoints" / "last.pt")
    one = run_cli("eval", "--checkpoint", ckpt, "--out", str(tmp_path / "e1"), "eval.batch_size=4")
    assert one.returncode == 0, one.stderr[-4000:]
    two = torchrun("eval", "--checkpoint", ckpt, "--out", str(tmp_path / "e2"), "eval.batch_size=3")
    assert two.returncode == 0, two.stderr[-4000:]
    m1 = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert m1["num_videos"] == m2["num_videos"] == 15
    for key in ("top1", "top5", "gflops_per_video", "ce"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-5, abs=1e-6), key
    assert sum(m1["block_ratios"], []) == pytest.approx(sum(m2["block_ratios"], []), abs=1e-6)
    p1 = [json.loads(x) for x in (tmp_path / "e1" / "predictions.jsonl").read_text().splitlines()]
    p2 = [json.loads(x) for x in (tmp_path / "e2" / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in p1] == [p["id"] for p in p2]  # list order, each video once
    assert [p["pred"] for p in p1] == [p["pred"] for p in p2]
    assert [p["gflops"] for p in p1] == pytest.approx([p["gflops"] for p in p2], rel=1e-6)
