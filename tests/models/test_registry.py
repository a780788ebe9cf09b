"""Every registered model: output shapes, masks, and rebuild from ``arch`` + ``build_config``."""

from __future__ import annotations

import pytest
import torch

from adafuse.models import (
    MODEL_NAMES,
    MODELS,
    build_model,
    builder_arguments,
    collect_masks,
    fusion_modules,
    model_names,
    register_model,
    registry,
)
from adafuse.models.serialization import model_from_checkpoint, model_payload

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


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_rejects_a_misspelled_keyword_naming_the_valid_ones(name):
    with pytest.raises(TypeError, match=r"'num_frmaes'.*valid arguments: .*num_frames"):
        build_model(name, num_classes=K, num_frmaes=4)


def test_build_config_records_every_builder_argument_with_defaults():
    model = build_model("tsn_r18", num_classes=K)
    assert model.build_config == {"num_classes": K, "num_frames": 8, "dropout": 0.5, "width": 64}
    assert set(build_model("threshold_r18", num_classes=K, width=8).build_config) == set(
        builder_arguments("threshold_r18"))
    assert build_model("threshold_r18", num_classes=K, width=8).backbone.conv1.out_channels == 8
    with pytest.raises(TypeError, match="policy_hiden"):
        build_model("tsn_r18", policy_hiden=7, widht=16)


def test_fixed_registration_arguments_accept_only_their_value():
    model = build_model("adaskip_r18", num_classes=K, actions=["skip", "keep"], use_history=False, width=8)
    assert {f.actions for f in fusion_modules(model)} == {("skip", "keep")}
    with pytest.raises(TypeError, match="fixes actions"):
        build_model("adaskip_r18", actions=("reuse", "keep"))


def test_register_model_is_the_extension_point(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))

    @register_model("tiny_tsn_r18")
    def tiny(num_classes: int = 3, num_frames: int = 2, dropout: float = 0.0, width: int = 8):
        return build_model("tsn_r18", num_classes=num_classes, num_frames=num_frames, dropout=dropout, width=width)

    model = build_model("tiny_tsn_r18", num_frames=4)
    assert model.arch == "tiny_tsn_r18" and model.build_config == dict(num_classes=174, num_frames=4, dropout=0.0,
                                                                        width=8)
    with pytest.raises(RuntimeError, match="registered twice"):
        register_model("tiny_tsn_r18", tiny)
    with pytest.raises(TypeError, match="kwargs"):
        register_model("loose", lambda num_classes=1, **rest: None)


def test_checkpoint_with_an_unknown_build_config_key_is_rejected():
    payload = model_payload(build_model("tsn_r18", num_classes=K, num_frames=T, width=8))
    payload["build_config"]["widht"] = 16
    with pytest.raises(ValueError, match=r"checkpoint: .*'widht'.*valid arguments"):
        model_from_checkpoint(payload)
