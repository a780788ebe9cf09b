"""The GPU paths of the engine: an AMP training step (bf16, and fp16 with its GradScaler), a short AMP training
run with evaluation, and NCCL data-parallel training under torchrun (2 GPUs). Marked ``gpu``: skipped without
CUDA; run with ``pytest -m gpu``. The bf16 step also runs on the CPU (autocast works there), unmarked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import run_cli, tiny_config, write_config

from adafuse.config import Config
from adafuse.engine import trainer as trainer_mod
from adafuse.engine.distributed import init_distributed
from adafuse.engine.evaluate import autocast_context

GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

def gpu_config(synth, out, name, amp, device="cuda", **sections):
    cfg = tiny_config(synth, out, name, **sections)
    cfg["run"]["device"] = device
    cfg["train"]["amp"] = amp
    return cfg


@pytest.mark.parametrize(("device", "amp"), [("cpu", "bf16"), pytest.param("cuda", "bf16", marks=GPU),
                                             pytest.param("cuda", "fp16", marks=GPU)])
def test_amp_training_step_runs_in_low_precision_and_updates_the_weights(engine_synth, tmp_path, device, amp):
    if device == "cuda" and amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = Config.from_dict(gpu_config(engine_synth, tmp_path, f"step_{amp}", amp, device))
    t = trainer_mod.Trainer(cfg, init_distributed(device))
    threads = torch.get_num_threads()
    try:
        t.setup()
    finally:
        torch.set_num_threads(threads)
    want = torch.bfloat16 if amp == "bf16" else torch.float16
    assert t.amp_dtype == want and t.scaler.is_enabled() == (amp == "fp16")
    conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d))
    seen = []
    hook = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = {k: v.detach().clone() for k, v in t.model.named_parameters()}
    t.train_sampler.set_epoch(0)
    batch = next(iter(t.train_loader))
    stats = t._step(t.ddp_model, batch, lam=cfg.train.flops_weight, stop=trainer_mod._Stop())
    hook.remove()
    t.close()
    assert seen and all(d == want for d in seen)  # the convs ran in the autocast dtype
    assert stats["nonfinite"] == 0 and stats["n"] == batch["video"].shape[0]
    changed = [k for k, v in t.model.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert changed and all(torch.isfinite(v).all() for v in t.model.parameters())
    assert all(p.dtype == torch.float32 for p in t.model.parameters())  # master weights stay float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_short_amp_training_run_and_evaluation(engine_synth, tmp_path):
    cfg = gpu_config(engine_synth, tmp_path, "amp_run", "auto", optim={"epochs": 2, "name": "adamw", "lr": 0.002})
    r = run_cli("train", str(write_config(tmp_path / "c.yaml", cfg)))
    assert r.returncode == 0, r.stderr[-4000:]
    run = tmp_path / "amp_run"
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [x for x in log if x["kind"] == "train_epoch"]
    assert len(epochs) == 2 and all(x["loss"] == x["loss"] for x in epochs)  # finite (not NaN)
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["epoch"] == 2
    r = run_cli("eval", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr[-4000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["num_videos"] == 15 and metrics["num_nonfinite"] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_autocast_context_is_a_no_op_without_a_dtype():
    x = torch.randn(4, 4, device="cuda")
    with autocast_context(torch.device("cuda"), None):
        assert (x @ x).dtype == torch.float32
    with autocast_context(torch.device("cuda"), torch.float16):
        assert (x @ x).dtype == torch.float16


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallel needs 2 CUDA GPUs")
def test_nccl_two_process_training_and_process_count_independent_eval(engine_synth, tmp_path):
    cfg = gpu_config(engine_synth, tmp_path, "nccl", "auto", optim={"epochs": 1, "name": "adamw", "lr": 0.002},
                     eval={"batch_size": 3})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "adafuse"]
    r = subprocess.run([*torchrun, "train", str(write_config(tmp_path / "c.yaml", cfg))], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    run = tmp_path / "nccl"
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert next(x for x in log if x["kind"] == "train_epoch")["step"] == 5  # 45 videos, 4 per rank, drop_last
    ckpt = str(run / "checkpoints" / "last.pt")
    one = run_cli("eval", "--checkpoint", ckpt, "--out", str(tmp_path / "e1"), "train.amp=off")
    two = subprocess.run([*torchrun, "eval", "--checkpoint", ckpt, "--out", str(tmp_path / "e2"), "train.amp=off"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-4000:]
    m1, m2 = (json.loads((tmp_path / e / "metrics.json").read_text()) for e in ("e1", "e2"))
    assert m1["num_videos"] == m2["num_videos"] == 15
    assert m1["top1"] == pytest.approx(m2["top1"]) and m1["gflops_per_video"] == pytest.approx(m2["gflops_per_video"])
