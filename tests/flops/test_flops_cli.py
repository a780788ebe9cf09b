"""`adafuse flops` and `adafuse models`."""

from __future__ import annotations

import json

import pytest

import adafuse.models
from adafuse.cli import main
from adafuse.flops import count_params
from adafuse.models import build_model

KEYS = ["arch", "params", "gflops_per_video", "gflops_floor_per_video", "gflops_per_video_released",
        "flops_convention", "num_classes", "frames", "size"]


def test_flops_json_tsn_r18(capsys):
    assert main(["flops", "tsn_r18", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == KEYS
    assert out["arch"] == "tsn_r18" and out["num_classes"] == 174 and out["frames"] == 8 and out["size"] == 224
    assert out["params"] == 11_265_774
    assert round(out["gflops_per_video"], 2) == 14.55
    assert out["gflops_floor_per_video"] == out["gflops_per_video"]  # nothing gated
    assert out["flops_convention"] == "exact"
    assert out["gflops_per_video_released"] == out["gflops_per_video"]  # no fixed-window average pool


def test_flops_json_tsn_bninception_released_count(capsys):
    """The released code's thop 0.0.31 count (paper Table 1: 16.4): its average pools cost 1 op per output
    element, ours window + 1, and its global pool is a 7x7 AvgPool2d (1 op per output element)."""
    assert main(["flops", "tsn_bninception", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert round(out["gflops_per_video"], 2) == 16.41
    assert round(out["gflops_per_video_released"], 2) == 16.35


def test_flops_options_and_text(capsys):
    assert main(["flops", "adafuse_tsn_r18", "--frames", "4", "--size", "64", "--num-classes", "27",
                 "--policy-hidden", "256", "--blocks"]) == 0
    out = capsys.readouterr().out
    params = count_params(build_model("adafuse_tsn_r18", num_classes=27, policy_hidden=256))
    assert f"params       {params:,}" in out and params < 15_000_000  # H=256 instead of the default 512
    assert "4 frames x 64x64, 27 classes" in out
    assert "gated blocks 8" in out and "layer4.1" in out and "GFLOPs/video" in out


def test_flops_unknown_model(capsys):
    assert main(["flops", "no_such_net"]) == 2
    err = capsys.readouterr().err
    assert "no_such_net" in err and "tsn_r18" in err


def test_models_json_and_table(capsys, monkeypatch):
    monkeypatch.setattr(adafuse.models, "MODEL_NAMES", ["tsn_r18", "adafuse_tsn_r18"])
    assert main(["models", "--size", "32", "--frames", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["arch"] for r in rows] == ["tsn_r18", "adafuse_tsn_r18"]
    assert all(list(r) == KEYS and r["size"] == 32 and r["frames"] == 2 for r in rows)
    assert rows[1]["gflops_floor_per_video"] < rows[1]["gflops_per_video"]
    assert main(["models", "--size", "32", "--frames", "2"]) == 0
    table = capsys.readouterr().out
    assert "params (M)" in table and "adafuse_tsn_r18" in table and "15.740" in table


def test_models_reports_a_broken_model(capsys, monkeypatch):
    from adafuse.models import registry

    def broken(**kwargs):
        raise RuntimeError("half-built")

    monkeypatch.setitem(registry.MODELS, "broken_net", broken)
    monkeypatch.setattr(adafuse.models, "MODEL_NAMES", ["broken_net", "tsn_r18"])
    assert main(["models", "--size", "32", "--frames", "1"]) == 1
    captured = capsys.readouterr()
    assert "tsn_r18" in captured.out
    assert "broken_net" in captured.err and "half-built" in captured.err


@pytest.mark.parametrize("verb", ["models", "flops"])
def test_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    assert "thop 0.0.31" in capsys.readouterr().out
