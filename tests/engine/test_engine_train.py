"""Training end to end on tiny synthetic data: run files, exact resume after a kill, NaN stop, config errors."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch
import yaml
from conftest import adafuse_cmd, run_cli, tiny_config, write_config

from adafuse.cli import main as cli_main
from adafuse.config import Config
from adafuse.data.preprocessing import Preprocessing
from adafuse.engine import trainer as trainer_mod
from adafuse.models.serialization import model_from_checkpoint


@pytest.fixture(scope="module")
def trained_run(engine_synth, tmp_path_factory):
    """A 2-epoch AdaFuse run in this process (validation on the training list, to check the fit)."""
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(engine_synth, out, "fit", data={"val_list": engine_synth.train_frames},
                      optim={"epochs": 2, "name": "adamw", "lr": 0.002, "weight_decay": 0.01, "lr_steps": []},
                      train={"checkpoint_every": 2})
    threads = torch.get_num_threads()
    try:
        best = trainer_mod.train(Config.from_dict(cfg))
    finally:
        torch.set_num_threads(threads)
    return out / "fit", best


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_training_fits_and_writes_the_run_directory(trained_run):
    run, best = trained_run
    # the run directory of docs/ARCHITECTURE.md
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()
    saved = Config.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert saved.model.name == "adafuse_tsn_r18" and saved.optim.epochs == 2
    log = read_jsonl(run / "metrics.jsonl")
    epochs = [r for r in log if r["kind"] == "train_epoch"]
    vals = [r for r in log if r["kind"] == "val"]
    assert [r["epoch"] for r in epochs] == [1, 2] and [r["epoch"] for r in vals] == [1, 2]
    assert all(len(r["block_ratios"]) == 8 and abs(sum(r["policy_ratios"]) - 1) < 1e-6 for r in vals)
    assert sum(r["kind"] == "train" for r in log) == epochs[-1]["step"]  # one line per step (log_every=1)
    # the loss went down (from about ln 15, the uniform prediction, where the near-zero classifier starts)
    assert epochs[-1]["ce"] < epochs[0]["ce"] - 0.03
    assert epochs[-1]["loss"] < epochs[0]["loss"] - 0.03
    # checkpoints: weights_only-safe, carrying config, classes, preprocessing and training state
    for name in ("last.pt", "best.pt"):
        payload = torch.load(run / "checkpoints" / name, weights_only=True)
        assert payload["class_names"][0] == "move_right" and len(payload["class_names"]) == 15
        assert payload["input_spec"]["size"] == 32 and payload["config"]["optim"]["epochs"] == 2
        assert {"optimizer", "scheduler", "scaler", "rng", "epoch", "step", "best_top1"} <= set(payload)
        assert payload["preprocessing"] == Preprocessing.from_config(saved, payload["input_spec"]).to_dict()
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["step_in_epoch"] == 0
    assert best["top1"] == pytest.approx(max(r["top1"] for r in vals), abs=1e-5)


def test_eval_needs_only_the_checkpoint(trained_run, tmp_path, capsys):
    from adafuse.analysis.runs import load_run

    run, _ = trained_run
    out = tmp_path / "eval"
    assert cli_main(["eval", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--out", str(out)]) == 0
    assert "top1" in capsys.readouterr().out
    preds = read_jsonl(out / "predictions.jsonl")
    assert len(preds) == 45 and len({p["id"] for p in preds}) == 45
    p = preds[0]
    assert len(p["top5"]) == 5 and len(p["scores"]) == 5 and len(p["frame_gflops"]) == 4
    assert len(p["block_ratios"]) == 8 and len(p["block_constant"]) == 8 and len(p["frame_indices"]) == 4
    assert p["gflops"] == pytest.approx(sum(p["frame_gflops"]))
    metrics = json.loads((out / "metrics.json").read_text())
    stored = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["preprocessing"]
    assert metrics["preprocessing"] == stored  # eval used the checkpoint's preprocessing
    assert metrics["num_videos"] == 45 and metrics["frames"] == 4 and metrics["input_size"] == 32
    assert metrics["top1"] == pytest.approx(100 * sum(p["correct"] for p in preds) / 45)
    assert metrics["gflops_per_video"] == pytest.approx(sum(p["gflops"] for p in preds) / 45)
    assert metrics["gflops_per_video"] < metrics["gflops_static_per_video"]
    # the analysis side reads it under its own contract checks
    (tmp_path / "r").mkdir()
    (out).rename(tmp_path / "r" / "eval")
    loaded = load_run(tmp_path / "r")
    assert loaded.has_policy and len(loaded.predictions) == 45
    # multi-view: two temporal clips per video, logits averaged, cost counted per view
    out2 = tmp_path / "eval2"
    assert cli_main(["eval", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--out", str(out2),
                     "eval.num_clips=2"]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert m2["views"] == 2 and m2["gflops_static_per_video"] == pytest.approx(2 * metrics["gflops_static_per_video"])


def test_kill_mid_epoch_and_resume_matches_an_uninterrupted_run(engine_synth, tmp_path):
    cfg = tiny_config(engine_synth, tmp_path, "x", model={"name": "adafuse_tsn_r18"},
                      data={"batch_size": 4}, optim={"epochs": 2, "lr": 0.02, "lr_steps": [1]},
                      train={"checkpoint_every": 1}, run={"log_every": 1})
    straight = write_config(tmp_path / "straight.yaml", {**cfg, "run": {**cfg["run"], "name": "straight"}})
    killed = write_config(tmp_path / "killed.yaml", {**cfg, "run": {**cfg["run"], "name": "killed"}})

    proc = subprocess.Popen(adafuse_cmd("train", str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 180
    steps = 0
    while time.time() < deadline and proc.poll() is None:
        if log.is_file():
            steps = sum(1 for line in log.read_text().splitlines() if '"kind": "train"' in line)
            if steps >= 3:
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    state = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and 0 < state["step_in_epoch"] < 11, "the kill should land inside epoch 1"

    resumed = run_cli("train", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    done = run_cli("train", str(straight))
    assert done.returncode == 0, done.stderr[-3000:]

    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 22
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), f"{k} differs after resume"
    mom_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    mom_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(mom_a, mom_b, strict=True))
    # the resumed run's log covers every step exactly once after the kill point, and the epoch summaries agree
    ea = [r for r in read_jsonl(tmp_path / "straight" / "metrics.jsonl") if r["kind"] == "train_epoch"]
    eb = [r for r in read_jsonl(tmp_path / "killed" / "metrics.jsonl") if r["kind"] == "train_epoch"]
    assert [r["loss"] for r in ea] == [r["loss"] for r in eb]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(engine_synth, tmp_path, monkeypatch, capsys):
    cfg = tiny_config(engine_synth, tmp_path, "nan", model={"name": "tsn_r18"}, data={"batch_size": 4},
                      optim={"epochs": 2}, train={"checkpoint_every": 2})
    path = write_config(tmp_path / "nan.yaml", cfg)
    build = trainer_mod.build_model_from_config
    calls = {"n": 0}

    def poisoned(cfg, num_classes):
        model = build(cfg, num_classes)

        def hook(module, inputs, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] == 5:  # the 5th training step produces NaN logits
                    return output * float("nan")
            return output

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(trainer_mod, "build_model_from_config", poisoned)
    threads = torch.get_num_threads()
    try:
        code = cli_main(["train", str(path)])
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert code == 3
    assert "not finite" in err and "step 5" in err and "last.pt" in err
    state = torch.load(tmp_path / "nan" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4 and state["epoch"] == 0  # the checkpoint of step 4, before the NaN
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    model, _ = model_from_checkpoint(state)  # still a usable checkpoint
    assert model.num_classes == 15


def test_config_mistakes_are_errors(engine_synth, tmp_path):
    path = write_config(tmp_path / "c.yaml", tiny_config(engine_synth, tmp_path))
    r = run_cli("train", str(path), "optim.lrr=0.1")
    assert r.returncode == 2 and "unknown key 'optim.lrr'" in r.stderr and "did you mean 'optim.lr'" in r.stderr
    r = run_cli("train", str(path), "model.num_classes=10")
    assert r.returncode == 2 and "model.num_classes=10" in r.stderr and "15 classes" in r.stderr
    r = run_cli("train", str(path), "model.kwargs={widht: 8}")
    assert r.returncode == 2 and "widht" in r.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
