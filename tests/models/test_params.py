"""Parameter counts and dense GFLOPs of the registered models against the paper (SPEC 1.3 and 5).

Tables of (model, builder options, expected); a model not (yet) in the registry is skipped by name.
"""

from __future__ import annotations

from typing import Any

import pytest

from adafuse.flops import count_params, static_cost
from adafuse.models import MODEL_NAMES, build_model


def _build(name: str, **kwargs: Any):
    if name not in MODEL_NAMES:
        pytest.skip(f"model {name!r} is not registered")
    return build_model(name, **kwargs)


# Exact counts (174 classes unless stated).
EXACT = [
    ("tsn_r18", {}, 11_265_774),  # paper 11.2M
    ("adafuse_tsn_r18", {}, 15_740_270),  # H=512 unshared: +4,474,496 (paper 15.6M is not reachable)
    ("tsn_r50", {}, 23_508_032 + 2048 * 174 + 174),  # torchvision ResNet-50 trunk + new classifier
    ("adafuse_tsn_r50", {}, 37_686_638),  # released code, quota rule with shared Linears: +13,822,080
    ("adafuse_tsm_r50", {}, 37_686_638),
    ("adafuse_tsm_last_r50", {}, 39_082_734),  # H=1024 in layer4: +15,218,176
    ("tsn_bninception", {}, 10_448_590),  # paper 10.4M, released code 10.449M
    ("adafuse_tsn_bninception", {}, 14_498_670),  # paper 14.5M, released code 14.499M
    # The paper's EfficientNet baselines (5.3/7.8/9.2/12.0M) are the ImageNet models' counts.
    ("tsn_effb0", {"num_classes": 1000}, 5_288_548),
    ("tsn_effb1", {"num_classes": 1000}, 7_794_184),
    ("tsn_effb2", {"num_classes": 1000}, 9_109_994),
    ("tsn_effb3", {"num_classes": 1000}, 12_233_232),
]

# Counts in millions, rounded as the paper prints them.
ROUNDED = [
    ("tsn_r18", {"num_classes": 27}, 11.19, 2),
    ("adafuse_tsm_last_r50", {"policy_hidden": 2048}, 54.3, 1),  # Table 7
    ("adafuse_tsm_last_r50", {"policy_hidden": 4096}, 84.7, 1),
]

# AdaFuse overhead over the plain backbone at the same head, millions (SPEC 1.3: quota rule, shared Linears).
OVERHEAD = [
    ("effb0", 3.96),
    ("effb1", 4.62),
    ("effb2", 4.63),
    ("effb3", 4.62),
]


@pytest.mark.parametrize(("name", "kwargs", "expected"), EXACT, ids=[f"{n}-{k}" for n, k, _ in EXACT])
def test_exact_params(name, kwargs, expected):
    assert count_params(_build(name, **kwargs)) == expected


@pytest.mark.parametrize(("name", "kwargs", "millions", "digits"), ROUNDED, ids=[f"{n}-{k}" for n, k, *_ in ROUNDED])
def test_rounded_params(name, kwargs, millions, digits):
    assert round(count_params(_build(name, **kwargs)) / 1e6, digits) == millions


@pytest.mark.parametrize(("net", "millions"), OVERHEAD, ids=[n for n, _ in OVERHEAD])
def test_policy_overhead(net, millions):
    dense = count_params(_build(f"tsn_{net}"))
    ada = count_params(_build(f"adafuse_tsn_{net}"))
    assert round((ada - dense) / 1e6, 2) == millions


# Dense GFLOPs per 8-frame video at the model's crop size (Tables 1-2). ResNet numbers are in
# tests/flops/test_flops_static.py.
GFLOPS = [
    ("tsn_bninception", 224, 16.4),
]


def _per_frame_cost(name: str):
    """Static cost counted on a one-frame clip: per-frame costs do not depend on T (checked in
    tests/flops/test_flops_static.py), and the big inputs of these nets make an 8-frame count slow on CPU."""
    return static_cost(_build(name, num_frames=1))


@pytest.mark.parametrize(("name", "size", "gflops"), GFLOPS, ids=[n for n, *_ in GFLOPS])
def test_dense_gflops(name, size, gflops):
    cost = _per_frame_cost(name)
    assert cost.size == size
    assert round(cost.total * 8 / 1e9, 1) == gflops


# Table 2's EfficientNet baselines (3.1/5.6/8.0/14.4 G per video) are the EfficientNet paper's FLOPs
# (0.39/0.70/1.0/1.8 B) x 8: multiply-accumulates of the convolutions only, at each model's resolution.
# Our full count also charges BatchNorm (2 x elements) and pooling, so it prints 3.2/5.7/8.2/15.1.
EFFICIENTNET = [
    ("tsn_effb0", 224, 3.1),
    ("tsn_effb1", 240, 5.6),
    ("tsn_effb2", 260, 8.0),
    ("tsn_effb3", 300, 14.4),
]


@pytest.mark.parametrize(("name", "size", "gflops"), EFFICIENTNET, ids=[n for n, *_ in EFFICIENTNET])
def test_efficientnet_conv_macs(name, size, gflops):
    cost = _per_frame_cost(name)
    assert cost.size == size
    assert cost.by_type["Conv2d"] * 8 / 1e9 == pytest.approx(gflops, rel=0.03)
    assert cost.total > cost.by_type["Conv2d"]
