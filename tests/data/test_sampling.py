from __future__ import annotations

import math

import numpy as np
import pytest

from adafuse.data.sampling import (
    FrameSampler,
    dense_eval_indices,
    dense_train_indices,
    padded_indices,
    tsn_eval_indices,
    tsn_train_indices,
)


@pytest.mark.parametrize("n", [8, 9, 15, 16, 37, 100, 301])
def test_train_one_frame_per_segment(n):
    rng = np.random.default_rng(0)
    avg = n // 8
    for _ in range(50):
        idx = tsn_train_indices(n, 8, rng)
        assert idx.shape == (8,) and idx.dtype == np.int64
        assert np.all(idx // avg == np.arange(8))  # frame i lies in segment i
        assert np.all(np.diff(idx) > 0) and idx.max() < n


@pytest.mark.parametrize("n", [1, 3, 7])
def test_short_video_is_padded_with_last_frame(n):
    rng = np.random.default_rng(0)
    expected = [min(i, n - 1) for i in range(8)]
    assert tsn_train_indices(n, 8, rng).tolist() == expected
    assert tsn_eval_indices(n, 8).tolist() == [expected]
    assert padded_indices(n, 8).tolist() == expected


@pytest.mark.parametrize("n", [8, 10, 16, 23, 48, 99, 300])
def test_eval_segment_centres(n):
    idx = tsn_eval_indices(n, 8)[0]
    exact = [math.floor(n * (2 * i + 1) / 16) for i in range(8)]
    assert idx.tolist() == exact
    approx = [int(n / 8 / 2 + i * n / 8) for i in range(8)]  # the float formula agrees away from ties
    assert sum(a != b for a, b in zip(idx.tolist(), approx, strict=True)) <= 1


def test_eval_multi_clip_shifts_inside_segments():
    clips = tsn_eval_indices(80, 8, num_clips=2)
    assert clips.shape == (2, 8)
    assert clips[0].tolist() == [2 + 10 * i for i in range(8)]
    assert clips[1].tolist() == [7 + 10 * i for i in range(8)]
    assert tsn_eval_indices(80, 8, 1).tolist() == [[5 + 10 * i for i in range(8)]]


def test_dense_sampling():
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = dense_train_indices(100, 8, 4, rng)
        assert np.all(np.diff(idx) == 4) and idx.max() < 100
    assert dense_train_indices(10, 8, 4, rng).tolist() == [0, 4, 8, 9, 9, 9, 9, 9]
    centred = dense_eval_indices(100, 8, 4)[0]
    assert centred[0] == (100 - 29) // 2 and np.all(np.diff(centred) == 4)
    three = dense_eval_indices(100, 8, 4, num_clips=3)
    assert three[:, 0].tolist() == [0, 36, 71] and three.max() == 99


def test_sampler_object_and_errors():
    rng = np.random.default_rng(0)
    assert FrameSampler(8, "tsn", train=True)(40, rng).shape == (1, 8)
    assert FrameSampler(8, "tsn", train=False, num_clips=3)(40).shape == (3, 8)
    assert FrameSampler(4, "dense", train=False, stride=2)(40).shape == (1, 4)
    with pytest.raises(ValueError):
        FrameSampler(8, "tsn", train=True, num_clips=2)
    with pytest.raises(ValueError):
        FrameSampler(8, "uniform")
    with pytest.raises(ValueError):
        tsn_train_indices(0, 8, rng)
