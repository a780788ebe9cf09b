"""Faults never leave a run silently wrong or hanging: distributed errors end every process, checkpoints are
finite (buffers too), one trainer per run directory, resume refuses a changed config, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import run_cli, tiny_config, write_config

from adafuse.cli import main as cli_main
from adafuse.config import Config
from adafuse.data.lists import read_list
from adafuse.engine import checkpoint as ckpt
from adafuse.engine import trainer as trainer_mod
from adafuse.engine.distributed import DistInfo


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def small_list(synth, path, n, bad_at=()):
    """``n`` frame-folder lines of the synthetic set (absolute paths); lines ``bad_at`` (0-based) name a
    folder that does not exist."""
    recs = read_list(synth.train_frames)
    root = os.path.dirname(os.path.abspath(synth.train_frames))
    lines = []
    for i in range(n):
        r = recs[i]
        folder = f"{root}/missing_{i}" if i in bad_at else f"{root}/{r.path}"
        lines.append(f"{folder} {r.num_frames} {r.label}")
    path.write_text("".join(f"{x}\n" for x in lines))
    shutil.copy(synth.classes, path.parent / "classes.txt")
    return path


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Two CPU processes (gloo); the timeout turns a hang into a failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "adafuse", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def in_process(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return cli_main(argv)
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ distributed


@pytest.mark.slow
def test_distributed_data_error_ends_every_process(engine_synth, tmp_path):
    lst = small_list(engine_synth, tmp_path / "l.txt", 8, bad_at=(5,))
    cfg = tiny_config(engine_synth, tmp_path, "ddp_err", data={"train_list": str(lst), "val_list": "",
                                                               "batch_size": 4}, optim={"epochs": 1})
    r = torchrun("train", str(write_config(tmp_path / "c.yaml", cfg)))
    assert r.returncode != 0
    assert f"{lst}:6" in r.stderr and "missing_5" in r.stderr and "does not exist" in r.stderr, r.stderr[-3000:]
    assert "another process failed" in r.stderr  # the healthy rank said why it stopped
    assert "adafuse/engine" not in r.stderr and "adafuse/data" not in r.stderr  # no traceback of ours
    # (torchrun itself prints a ChildFailedError summary)


@pytest.mark.slow
def test_distributed_skip_mode_survives_an_all_bad_batch_and_counts_once(engine_synth, tmp_path):
    train = small_list(engine_synth, tmp_path / "train.txt", 4, bad_at=(2,))
    val = small_list(engine_synth, tmp_path / "val.txt", 3, bad_at=(0,))  # index 0 is also rank 1's padding
    cfg = tiny_config(engine_synth, tmp_path, "ddp_skip", data={"train_list": str(train), "val_list": str(val),
                                                                "batch_size": 2, "on_error": "skip"},
                      optim={"epochs": 1}, eval={"batch_size": 2})
    r = torchrun("train", str(write_config(tmp_path / "c.yaml", cfg)))
    assert r.returncode == 0, r.stderr[-3000:]
    log = read_jsonl(tmp_path / "ddp_skip" / "metrics.jsonl")
    epoch = next(x for x in log if x["kind"] == "train_epoch")
    assert epoch["skipped"] == 1 and epoch["step"] == 1  # one of the two steps skipped by both processes
    val_rec = next(x for x in log if x["kind"] == "val")
    assert val_rec["num_skipped"] == 1 and val_rec["num_videos"] == 2
    assert "skipped 1" in r.stdout


def test_skipped_padding_duplicate_counts_once(monkeypatch):
    from adafuse.engine import evaluate as evaluate_mod

    parts = [([{"index": 1}], [0, 2]), ([{"index": 3}], [0])]  # rank 1's padding repeats index 0
    monkeypatch.setattr(evaluate_mod, "all_gather_objects", lambda obj: parts)
    records, skipped = evaluate_mod.gather_records([], [])
    assert [r["index"] for r in records] == [1, 3] and skipped == 2


# ------------------------------------------------------------------------------------------ finiteness


def _trainer(synth, out, name="fin", **sections):
    cfg = Config.from_dict(tiny_config(synth, out, name, **sections))
    t = trainer_mod.Trainer(cfg, DistInfo())
    threads = torch.get_num_threads()
    try:
        t.setup()
    finally:
        torch.set_num_threads(threads)
    return t


def test_a_checkpoint_is_written_only_when_parameters_and_buffers_are_finite(engine_synth, tmp_path):
    t = _trainer(engine_synth, tmp_path)
    t.save()
    good = (t.ckpt_dir / "last.pt").read_bytes()
    bn = next(m for m in t.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var.fill_(float("inf"))  # what lr=1e6 leaves in BatchNorm while the parameters stay finite
    assert all(bool(torch.isfinite(p).all()) for p in t.model.parameters())
    with pytest.raises(trainer_mod.TrainingDiverged, match="running_var"):
        t.save(best=True)
    assert (t.ckpt_dir / "last.pt").read_bytes() == good and not (t.ckpt_dir / "best.pt").exists()
    t.close()


def test_non_finite_validation_is_never_best(engine_synth, tmp_path, monkeypatch):
    small = str(small_list(engine_synth, tmp_path / "s.txt", 8))
    t = _trainer(engine_synth, tmp_path, optim={"epochs": 1}, data={"train_list": small, "val_list": small})
    real = t.validate

    def poisoned():
        metrics = real()
        return {**metrics, "top1": 100.0, "num_nonfinite": 3}

    monkeypatch.setattr(t, "validate", poisoned)
    threads = torch.get_num_threads()
    try:
        assert t.fit() == {**t.last_val}
    finally:
        torch.set_num_threads(threads)
    assert t.best_top1 is None and not (t.ckpt_dir / "best.pt").exists() and (t.ckpt_dir / "last.pt").exists()


def test_exploding_training_leaves_only_finite_checkpoints(engine_synth, tmp_path, capsys):
    cfg = tiny_config(engine_synth, tmp_path, "boom", model={"name": "tsn_r18"}, data={"batch_size": 4},
                      optim={"epochs": 2, "lr": 1e6}, train={"checkpoint_every": 1})
    code = in_process(["train", str(write_config(tmp_path / "boom.yaml", cfg))])
    assert code == 3 and "last good state" in capsys.readouterr().err
    for name in ("last.pt", "best.pt"):
        path = tmp_path / "boom" / "checkpoints" / name
        if path.exists():
            state = torch.load(path, weights_only=True)["model"]
            assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()), name


def test_eval_refuses_non_finite_checkpoints(engine_synth, tmp_path, capsys):
    t = _trainer(engine_synth, tmp_path)
    t.save()
    t.close()
    payload = torch.load(t.ckpt_dir / "last.pt", weights_only=True)
    key = next(k for k in payload["model"] if k.endswith("running_var"))
    payload["model"][key].fill_(float("inf"))
    torch.save(payload, tmp_path / "inf.pt")
    assert in_process(["eval", "--checkpoint", str(tmp_path / "inf.pt"), "--out", str(tmp_path / "e")]) == 3
    err = capsys.readouterr().err
    assert key in err and "inf.pt" in err and not (tmp_path / "e" / "metrics.json").exists()
    # the budget curve loads the checkpoint the same way, so it refuses it too
    assert in_process(["eval", "--checkpoint", str(tmp_path / "inf.pt"), "--budgets", "1.0", "0.5",
                       "--out", str(tmp_path / "b")]) == 3
    err = capsys.readouterr().err
    assert key in err and not (tmp_path / "b" / "budget_curve.json").exists()
    payload = torch.load(t.ckpt_dir / "last.pt", weights_only=True)
    fc = next(k for k in payload["model"] if k.endswith("fc.weight"))
    payload["model"][fc].fill_(3e38)  # finite weights, overflowing logits
    torch.save(payload, tmp_path / "big.pt")
    assert in_process(["eval", "--checkpoint", str(tmp_path / "big.pt"), "--out", str(tmp_path / "e")]) == 3
    assert "NaN/inf logits" in capsys.readouterr().err and not (tmp_path / "e" / "metrics.json").exists()


# ------------------------------------------------------------------------------------------ run directory


def test_second_trainer_on_a_run_directory_fails_at_once(engine_synth, tmp_path, capsys):
    path = write_config(tmp_path / "c.yaml", tiny_config(engine_synth, tmp_path, "locked", optim={"epochs": 1}))
    with ckpt.RunLock(tmp_path / "locked"):
        assert in_process(["train", str(path), "optim.lr=0.1"]) == 4
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and socket.gethostname() in err and err.count("\n") == 1
    assert not (tmp_path / "locked" / "checkpoints").exists() and not (tmp_path / "locked" / "metrics.jsonl").exists()


def test_stale_lock_is_taken_over_and_resume_refuses_a_changed_config(engine_synth, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "r"
    run.mkdir()
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
    (run / "checkpoints").mkdir()
    orphan = run / "checkpoints" / ".last.pt.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    cfg = tiny_config(engine_synth, tmp_path, "r", optim={"epochs": 1}, data={"val_list": ""})
    path = write_config(tmp_path / "c.yaml", cfg)
    assert in_process(["train", str(path)]) == 0
    assert f"pid {dead.pid}" in (run / "train.log").read_text()  # the takeover is logged
    assert not orphan.exists()
    last = (run / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()

    assert in_process(["train", str(path), "optim.lr=0.5", "optim.epochs=2", "data.flip=true"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and "data.flip" in err and "optim.epochs" not in err and "--force-resume" in err
    assert (run / "checkpoints" / "last.pt").read_bytes() == last  # nothing was trained
    # harmless keys (epochs, logging, eval) resume; the forced one goes on with the new values
    assert in_process(["train", str(path), "optim.epochs=2", "run.log_every=3", "eval.batch_size=5"]) == 0
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    assert in_process(["train", str(path), "optim.epochs=3", "optim.lr=0.5", "--force-resume"]) == 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["config"]["optim"]["lr"] == 0.5


def test_metrics_have_each_step_once_after_a_resume(engine_synth, tmp_path):
    cfg = tiny_config(engine_synth, tmp_path, "m", data={"val_list": "", "batch_size": 8}, optim={"epochs": 1})
    path = write_config(tmp_path / "c.yaml", cfg)
    run = tmp_path / "m"
    assert in_process(["train", str(path)]) == 0
    epoch1 = (run / "checkpoints" / "last.pt").read_bytes()
    assert in_process(["train", str(path), "optim.epochs=2"]) == 0
    # as if killed after logging epoch 2 but before saving it: last.pt is still epoch 1's
    (run / "checkpoints" / "last.pt").write_bytes(epoch1)
    assert in_process(["train", str(path), "optim.epochs=2"]) == 0
    log = read_jsonl(run / "metrics.jsonl")
    keys = [(r["kind"], r["step"]) for r in log]
    assert len(keys) == len(set(keys)), "duplicate steps in metrics.jsonl"
    assert [r["epoch"] for r in log if r["kind"] == "train_epoch"] == [1, 2]


# ------------------------------------------------------------------------------------------ one-line errors


def test_bad_checkpoints_are_one_line_errors(engine_synth, tmp_path, capsys):
    t = _trainer(engine_synth, tmp_path)
    t.save()
    t.close()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(300))
    evil = tmp_path / "evil.pt"
    subprocess.run([sys.executable, "-c", (
        "import torch, sys\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        "        return (print, ('ran code',))\n"
        "torch.save({'model': {}, 'arch': 'x', 'x': Evil()}, sys.argv[1])\n"), str(evil)], check=True)
    payload = torch.load(t.ckpt_dir / "last.pt", weights_only=True)
    payload["build_config"] = {**payload["build_config"], "width": 8}  # weights of width 16
    shapes = tmp_path / "shapes.pt"
    torch.save(payload, shapes)
    for path, words in ((junk, "not a readable checkpoint"), (evil, "refused"), (shapes, "do not fit")):
        assert in_process(["eval", "--checkpoint", str(path)]) == 2
        out = capsys.readouterr()
        assert out.err.count("\n") == 1 and path.name in out.err and words in out.err, out.err
        assert "weights_only" not in out.err and "ran code" not in out.out


def test_full_disk_while_saving_is_one_line(engine_synth, tmp_path):
    import resource

    cfg = tiny_config(engine_synth, tmp_path, "full", data={"val_list": ""}, optim={"epochs": 1})
    path = write_config(tmp_path / "c.yaml", cfg)
    limit = 256 * 1024  # files may not grow past 256 KiB: the checkpoint (a few MB) cannot be written

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "adafuse", "train", str(path)], capture_output=True, text=True,
                       timeout=300, env=env, preexec_fn=small_files)
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "cannot write checkpoint" in last and "last.pt" in last and "Traceback" not in r.stderr
    assert not list((tmp_path / "full" / "checkpoints").glob(".*.tmp"))


def test_help_documents_exit_codes_and_print_config_takes_overrides(engine_synth, tmp_path, capsys):
    for verb in ("train", "eval"):
        with pytest.raises(SystemExit):
            cli_main([verb, "--help"])
        text = capsys.readouterr().out
        assert "exit codes" in text and all(f"  {c} " in text for c in ("0", "1", "2", "3", "4", "5", "143"))
    path = write_config(tmp_path / "c.yaml", tiny_config(engine_synth, tmp_path))
    assert cli_main(["train", str(path), "--print-config", "optim.lr=0.125"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["lr"] == 0.125
    with pytest.raises(SystemExit):
        cli_main(["train", str(path), "--print-config", "--bogus"])


def test_eval_prints_the_skip_count(engine_synth, tmp_path, capsys):
    t = _trainer(engine_synth, tmp_path)
    t.save()
    t.close()
    val = small_list(engine_synth, tmp_path / "v.txt", 3, bad_at=(1,))
    assert in_process(["eval", "--checkpoint", str(t.ckpt_dir / "last.pt"), "--out", str(tmp_path / "e"),
                       f"data.val_list={val}", "data.on_error=skip"]) == 0
    assert "(2 videos, 1 skipped)" in capsys.readouterr().out


def test_resume_check_ignores_only_harmless_keys():
    base = Config().to_dict()
    changed = Config().to_dict()
    changed["optim"]["epochs"] = 99
    changed["eval"]["num_clips"] = 3
    changed["run"]["log_every"] = 1
    assert trainer_mod.config_differences(base, changed) == []
    changed["train"]["flops_weight"] = 0.5
    changed["data"]["train_list"] = "other.txt"
    diffs = trainer_mod.config_differences(base, changed)
    assert len(diffs) == 2 and diffs[0].startswith("data.train_list") and diffs[1].startswith("train.flops_weight")


def test_print_config_of_run_cli(engine_synth, tmp_path):
    path = write_config(tmp_path / "c.yaml", tiny_config(engine_synth, tmp_path))
    r = run_cli("train", str(path), "--print-config", "optim.lr=0.25")
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["optim"]["lr"] == 0.25
