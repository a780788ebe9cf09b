"""Every registered model: output shapes, masks, and rebuild from ``arch`` + ``build_config``."""

from __future__ import annotations

import pytest
import torch

from adafuse.models import MODEL_NAMES, MODELS, build_model, collect_masks, fusion_modules, model_names

N, T, SIZE, K = 2, 4, 64, 5


@pytest.fixture(scope="module")
def clip():
    return torch.randn(N, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_runs_and_rebuilds_from_its_build_config(name, clip):
    torch.manual_seed(0)
    model = build_model(name, num_classes=K, num_frames=T).eval()
    assert model.arch == name
    with torch.no_grad():
        logits = model(clip)
    assert logits.shape == (N, K) and torch.isfinite(logits).all()
    for f, mask in zip(fusion_modules(model), collect_masks(model), strict=True):
        assert mask.shape == (N * T, f.channels, 3)
        assert torch.equal(mask.sum(-1), torch.ones(N * T, f.channels))

    config = dict(model.build_config)
    assert config["num_classes"] == K and config["num_frames"] == T
    with torch.device("meta"):  # shapes only: no memory, no init
        rebuilt = MODELS[name](**config)
    assert rebuilt.arch == name and rebuilt.build_config == model.build_config
    assert shapes(rebuilt) == shapes(model)
    assert rebuilt.input_spec == model.input_spec


def test_unknown_name_lists_known_names():
    with pytest.raises(KeyError) as err:
        build_model("adafuse_tsn_r51")
    message = str(err.value)
    assert "adafuse_tsn_r51" in message
    for name in ("adafuse_tsn_r50", "tsm_r50", "lstm_r18", "random_r18", "cgnet_r18"):
        assert name in message


def test_names_and_policy_hidden_override():
    assert MODEL_NAMES == model_names() == sorted(MODELS)
    for name in ("tsn_r18", "tsm_r50", "adafuse_tsn_r50", "adafuse_tsm_r50", "adafuse_tsm_last_r50", "adaskip_r18",
                 "adareuse_r18", "lstm_r18", "lstm_r50", "random_r18", "threshold_r18", "cgnet_r18"):
        assert name in MODELS
    model = build_model("adafuse_tsn_r18", num_classes=3, policy_hidden=32)
    assert {f.policy.hidden for f in fusion_modules(model)} == {32}
    assert model.build_config["policy_hidden"] == 32
