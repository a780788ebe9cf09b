"""The report's frame strips show the frames as the network saw them: the run's resize and centre crop."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

from adafuse.analysis.frames import read_thumbnails, run_preprocessing
from adafuse.data.media import open_source
from adafuse.data.preprocessing import Preprocessing


def test_thumbnails_are_the_network_view(media):
    pre = Preprocessing(num_frames=3, resize_short=40, crop_size=32)  # frames are 64x48: resized 53x40, crop 32
    frames, reason = read_thumbnails(str(media["folder"]), [0, 5, 11], height=24, preprocessing=pre)
    assert reason is None and frames.shape == (3, 24, 24, 3)
    seen = pre.crop_frames(open_source(media["folder"]).read([0, 5, 11]))
    expected = np.stack([np.asarray(Image.fromarray(f).resize((24, 24), Image.BILINEAR)) for f in seen])
    assert np.array_equal(frames, expected)
    whole, _ = read_thumbnails(str(media["folder"]), [0, 5, 11], height=24)
    assert whole.shape == (3, 24, 32, 3)


def test_run_preprocessing_prefers_the_evaluation_then_the_config():
    stored = Preprocessing(num_frames=4, resize_short=40, crop_size=32)
    config = {"model": {"num_frames": 4}, "data": {"input_size": 32, "scale_size": 48}}
    run = SimpleNamespace(metrics={"preprocessing": stored.to_dict()}, config=config)
    assert run_preprocessing(run) == stored
    run.metrics = {}
    assert (run_preprocessing(run).resize_short, run_preprocessing(run).crop_size) == (48, 32)
    run.config = None
    assert run_preprocessing(run) is None
    run.metrics = {"preprocessing": {"crop_size": 64, "resize_short": 32}}  # unreadable: whole frames
    assert run_preprocessing(run) is None
