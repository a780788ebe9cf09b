"""Compute budgets end to end: `adafuse calibrate` stores shifts in the checkpoint, `adafuse eval --budget/--budgets`
evaluates operating points (budget_curve.json), `adafuse predict/export --budget` apply the shift, bad budgets
exit 2."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from adafuse.cli import main as cli_main
from adafuse.config import Config
from adafuse.data.lists import read_classes
from adafuse.flops import static_cost
from adafuse.models import build_model
from adafuse.models.fusion import PolicyNet
from adafuse.models.serialization import model_payload


@pytest.fixture(scope="module")
def budget_ckpt(engine_synth, tmp_path_factory):
    """An untrained width-16 AdaFuse-R18 checkpoint (policies randomised so decisions vary with the input) with
    the config of the tiny synthetic set; returns (path, floor fraction)."""
    out = tmp_path_factory.mktemp("budget")
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model("adafuse_tsn_r18", num_classes=15, num_frames=4, policy_hidden=32, width=16).eval()
    for m in model.modules():
        if isinstance(m, PolicyNet):
            m.fc0.weight.data.copy_(torch.randn(m.fc0.weight.shape, generator=gen) / m.fc0.weight.shape[1] ** 0.5)
            m.fc1.weight.data.copy_(torch.randn(m.fc1.weight.shape, generator=gen) * 2.0 / m.hidden ** 0.5)
            m.fc1.bias.data.copy_(torch.randn(m.fc1.bias.shape, generator=gen))
    model.input_spec = dataclasses.replace(model.input_spec, size=32)
    cfg = Config.from_dict(tiny_config(engine_synth, out, "b")).to_dict()
    payload = {**model_payload(model, read_classes(Path(engine_synth.root) / "classes.txt")), "config": cfg}
    path = out / "ckpt.pt"
    torch.save(payload, path)
    cost = static_cost(model, 32)
    return path, cost.floor / cost.total


def test_calibrate_stores_shifts_and_eval_uses_them(budget_ckpt, tmp_path, capsys):
    ckpt, floor = budget_ckpt
    stored = tmp_path / "calibrated.pt"
    b1, b2 = 0.95, floor + 0.4 * (1 - floor)
    assert cli_main(["calibrate", "-c", str(ckpt), "--budgets", str(b1), str(b2), "--calib-clips", "12",
                     "--out", str(stored)]) == 0
    entries = torch.load(stored, weights_only=True)["budget_calibration"]
    assert [e["budget"] for e in entries] == [b1, b2]
    for e in entries:
        assert abs(e["achieved"] - e["budget"]) <= 0.02 * e["budget"]
    assert entries[0]["shift"] < entries[1]["shift"]
    capsys.readouterr()
    out = tmp_path / "eval"
    assert cli_main(["eval", "-c", str(stored), "--budget", str(b2), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["calibration"]["stored"] and metrics["budget_shift"] == entries[1]["shift"]
    assert metrics["budget"] == b2
    own = tmp_path / "own"
    assert cli_main(["eval", "-c", str(stored), "--out", str(own)]) == 0
    natural = json.loads((own / "metrics.json").read_text())["gflops_per_video"]
    assert metrics["gflops_per_video"] < natural


def test_eval_budgets_writes_the_curve(budget_ckpt, tmp_path, capsys):
    ckpt, floor = budget_ckpt
    budgets = [1.0, 0.9, round(floor + 0.3 * (1 - floor), 4)]
    out = tmp_path / "eval"
    args = ["eval", "-c", str(ckpt), "--out", str(out), "--budgets", *map(str, budgets), "--calib-clips", "12",
            "--sparse-timing", "2"]
    assert cli_main(args) == 0
    assert "budget 0.900" in capsys.readouterr().out
    curve = json.loads((out / "budget_curve.json").read_text())
    assert curve["gflops_all_keep"] > 0 and [p["budget"] for p in curve["points"]] == budgets
    gflops = [p["gflops_per_video"] for p in curve["points"]]
    assert gflops[0] > gflops[1] > gflops[2]
    for p in curve["points"]:
        assert {"budget", "gflops_per_video", "top1", "top5", "policy_ratios", "shift", "sparse_ms_per_clip"} <= set(p)
        assert p["fraction"] == pytest.approx(p["gflops_per_video"] / curve["gflops_all_keep"])
        assert abs(p["calibrated_fraction"] - p["budget"]) <= 0.02 * p["budget"]
        assert abs(sum(p["policy_ratios"]) - 1) < 1e-6 and p["sparse_ms_per_clip"] > 0
    own = json.loads((out / "metrics.json").read_text())  # the own policy's usual eval files, too
    assert own["budget_shift"] == 0.0 and curve["own_policy"]["gflops_per_video"] == own["gflops_per_video"]
    assert (out / "predictions.jsonl").is_file()
    # the evaluated videos spend about what the calibration clips did (same synthetic distribution)
    assert curve["points"][0]["fraction"] >= 0.98
    assert curve["points"][0]["policy_ratios"][2] > curve["points"][1]["policy_ratios"][2]


@pytest.mark.parametrize("args,message", [(["--budget", "1.5"], "above 1"),
                                          (["--budgets", "0.9", "0.01"], "below the model's floor"),
                                          (["--budget", "0.9", "--shift", "1"], "not allowed with")])
def test_unreachable_budgets_exit_2(budget_ckpt, tmp_path, capsys, args, message):
    ckpt, _ = budget_ckpt
    try:
        code = cli_main(["eval", "-c", str(ckpt), "--out", str(tmp_path / "e"), *args])
    except SystemExit as e:  # argparse: mutually exclusive options
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_predict_and_export_apply_the_budget(budget_ckpt, engine_synth, tmp_path, capsys):
    ckpt, floor = budget_ckpt
    video = str(Path(engine_synth.root) / Path(engine_synth.val_frames).read_text().split()[0])
    gflops = {}
    for name, extra in (("own", []), ("low", ["--budget", str(floor + 0.2 * (1 - floor)), "--calib-clips", "8"]),
                        ("high", ["--shift", "-50"])):
        capsys.readouterr()
        assert cli_main(["predict", video, "--checkpoint", str(ckpt), "--json", *extra]) == 0
        gflops[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["gflops"]
    assert gflops["low"] < gflops["own"] < gflops["high"]
    assert cli_main(["predict", video, "--checkpoint", str(ckpt), "--budget", "2"]) == 2
    assert "above 1" in capsys.readouterr().err


def test_export_bakes_the_shift_into_the_graph(budget_ckpt, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from adafuse.inference.budget import set_budget_shift
    from adafuse.models.serialization import model_from_checkpoint

    ckpt, _ = budget_ckpt
    path = tmp_path / "m.onnx"
    assert cli_main(["export", "--checkpoint", str(ckpt), "--onnx", str(path), "--shift", "1.5"]) == 0
    assert "OK" in capsys.readouterr().out
    model, _ = model_from_checkpoint(ckpt)
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        own = model(x)
        set_budget_shift(model, 1.5)
        shifted = model(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert torch.allclose(out, shifted, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out, own, rtol=1e-3, atol=1e-4)


def test_budget_conditioned_training(engine_synth, tmp_path):
    from adafuse.engine import trainer as trainer_mod
    from adafuse.models.budget_conditioning import is_budget_conditioned
    from adafuse.models.serialization import model_from_checkpoint

    cfg = tiny_config(engine_synth, tmp_path, "cond", optim={"epochs": 1, "lr_steps": []},
                      train={"budget_range": [0.5, 1.0], "budget_weight": 2.0})
    threads = torch.get_num_threads()
    try:
        trainer_mod.train(Config.from_dict(cfg))
    finally:
        torch.set_num_threads(threads)
    ckpt = tmp_path / "cond" / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)["model"]
    embeds = [k for k in state if ".target_embed." in k]
    assert len(embeds) == 16 and any(state[k].abs().sum() > 0 for k in embeds)  # 8 gates x (weight, bias), trained
    model, _ = model_from_checkpoint(ckpt)
    assert is_budget_conditioned(model)
    with pytest.raises(ValueError, match="budget_range"):
        bad = tiny_config(engine_synth, tmp_path, "bad", train={"budget_range": [0.8, 0.5]})
        trainer_mod.train(Config.from_dict(bad))
