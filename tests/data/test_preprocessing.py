"""The one preprocessing: derived from a config, round-trips through dicts/JSON/checkpoints, and is the same
frames and clip the evaluation dataset produces."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from adafuse.config import Config
from adafuse.data.preprocessing import Preprocessing, default_resize
from adafuse.data.sampling import FrameSampler
from adafuse.data.transforms import eval_transform, make_normalize
from adafuse.pixels import BNINCEPTION_MEAN, BNINCEPTION_STD

BNINCEPTION_SPEC = {"mean": BNINCEPTION_MEAN, "std": BNINCEPTION_STD, "value_range": 255.0, "bgr": True, "size": 96}


def test_from_config_takes_every_field_from_config_and_input_spec():
    cfg = Config.from_dict({"model": {"num_frames": 6}, "data": {"input_size": 96, "scale_size": 100,
                                                                 "sampling": "dense", "dense_stride": 3}})
    pre = Preprocessing.from_config(cfg, BNINCEPTION_SPEC)
    assert pre == Preprocessing(6, "dense", 3, 100, 96, BNINCEPTION_MEAN, BNINCEPTION_STD, 255.0, True)
    assert Preprocessing.from_config(cfg.to_dict(), BNINCEPTION_SPEC) == pre  # the dict a checkpoint stores


def test_dict_and_json_round_trip_exactly():
    pre = Preprocessing(6, "dense", 3, 100, 96, BNINCEPTION_MEAN, BNINCEPTION_STD, 255.0, True)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert Preprocessing.from_json(pre.to_json()) == pre
    assert json.loads(pre.to_json())["resize_short"] == 100
    buffer = io.BytesIO()
    torch.save(pre.to_dict(), buffer)
    buffer.seek(0)
    assert Preprocessing.from_dict(torch.load(buffer, weights_only=True)) == pre


@pytest.mark.parametrize(("change", "word"), [({"crop_size": 0}, "crop_size"), ({"sampling": "random"}, "sampling"),
                                              ({"resize_short": 200}, "smaller than the crop"),
                                              ({"std": (1.0, 0.0, 1.0)}, "std"), ({"num_frames": 2.5}, "num_frames")])
def test_bad_values_are_errors_naming_the_field(change, word):
    with pytest.raises(ValueError, match=word):
        Preprocessing.from_dict({**Preprocessing().to_dict(), **change})


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="unknown keys \\['scale'\\]"):
        Preprocessing.from_dict({**Preprocessing().to_dict(), "scale": 3})


def test_checkpoint_stored_wins_and_legacy_checkpoints_derive_it():
    spec = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "bgr": False, "value_range": 1.0, "size": 64}
    config = {"model": {"num_frames": 5}, "data": {"input_size": 64, "scale_size": 80, "sampling": "tsn"}}
    legacy = {"input_spec": spec, "config": config, "build_config": {"num_frames": 5}}
    derived = Preprocessing.of_checkpoint(legacy)
    assert derived == Preprocessing.from_config(config, spec) and derived.resize_short == 80
    assert derived.mean == (0.5, 0.5, 0.5) and derived.num_frames == 5
    stored = Preprocessing(5, resize_short=70, crop_size=64)
    assert Preprocessing.of_checkpoint({**legacy, "preprocessing": stored.to_dict()}) == stored
    # no config at all (a converted checkpoint): the model's frames and crop, short side crop x 256/224
    bare = Preprocessing.of_checkpoint({"input_spec": spec, "build_config": {"num_frames": 3}})
    assert (bare.num_frames, bare.crop_size, bare.resize_short) == (3, 64, default_resize(64)) == (3, 64, 73)


@pytest.mark.parametrize("sampling", ["tsn", "dense"])
def test_indices_are_the_evaluation_sampler(sampling):
    pre = Preprocessing(num_frames=5, sampling=sampling, dense_stride=3)
    for n in (1, 4, 5, 17, 100):
        expected = FrameSampler(5, sampling, train=False, num_clips=1, stride=3)(n)[0]
        assert np.array_equal(pre.indices(n), expected)
        assert np.array_equal(pre.sampler(2)(n), FrameSampler(5, sampling, False, 2, 3)(n))


def test_call_is_eval_transform_and_crop_frames_is_its_geometry():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 50, 70, 3), dtype=np.uint8)
    pre = Preprocessing(3, resize_short=40, crop_size=36, mean=BNINCEPTION_MEAN, std=BNINCEPTION_STD,
                        value_range=255.0, bgr=True)
    clip = pre(frames)
    assert clip.shape == (3, 3, 36, 36) and clip.dtype == torch.float32
    assert torch.equal(clip, eval_transform(36, 40, normalize=BNINCEPTION_SPEC)(frames))
    crops = pre.crop_frames(frames)
    assert crops.shape == (3, 36, 36, 3) and crops.dtype == np.uint8
    assert torch.equal(make_normalize(pre)(crops), clip)  # the pixels the network sees, then normalised
    assert not torch.equal(clip, Preprocessing(3, resize_short=36, crop_size=36)(frames))


def test_with_frames_and_with_crop():
    pre = Preprocessing(8, resize_short=48, crop_size=32)
    assert pre.with_frames(None) is pre and pre.with_crop(32) is pre
    assert pre.with_frames(4).num_frames == 4
    assert (pre.with_crop(64).crop_size, pre.with_crop(64).resize_short) == (64, 96)


def test_legacy_fixture_checkpoints_keep_the_rule_predict_had():
    """The checkpoints of tests/fixtures (written before configs and preprocessing were stored) get the crop of
    their input_spec, short side crop x 256/224 and their model's frame count."""
    from pathlib import Path

    records = torch.load(Path(__file__).parents[1] / "fixtures" / "legacy_checkpoints.pt", weights_only=True)
    for record in records:
        payload = record["checkpoint"]
        assert "preprocessing" not in payload and "config" not in payload
        pre = Preprocessing.of_checkpoint(payload)
        size = payload["input_spec"]["size"]
        assert (pre.num_frames, pre.crop_size, pre.resize_short) == (record["clip"].shape[1], size,
                                                                     default_resize(size))
        assert pre.mean == tuple(payload["input_spec"]["mean"]) and pre.sampling == "tsn"
