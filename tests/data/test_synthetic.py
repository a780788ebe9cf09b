from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datahelpers import run_data_cli

from adafuse.data.decode import read_frame_folder, read_video_frames
from adafuse.data.lists import read_classes, read_list
from adafuse.data.synthetic import (
    REVERSAL_PAIRS,
    STATIC_CLASSES,
    SYNTH_CLASSES,
    SYNTH_PRESETS,
    generate_synthetic,
    render_clip,
)


def test_layout_and_lists(tiny_synth):
    root = Path(tiny_synth.root)
    assert read_classes(tiny_synth.classes) == list(SYNTH_CLASSES) and len(SYNTH_CLASSES) >= 12
    meta = json.loads((root / "synth.json").read_text())
    assert meta["reversal_pairs"] == [list(p) for p in REVERSAL_PAIRS]
    train_f, train_v = read_list(tiny_synth.train_frames), read_list(tiny_synth.train_videos)
    val_f = read_list(tiny_synth.val_frames)
    assert len(train_f) == len(train_v) == 15 * 3 and len(val_f) == 15
    lo, hi = SYNTH_PRESETS["tiny"]["frames"]
    for f, v in zip(train_f, train_v, strict=True):
        assert v.path == f"{f.path.replace('frames/', 'videos/')}.mp4" and f.label == v.label
        assert lo <= f.num_frames <= hi
        assert (root / f.path / f"{f.num_frames:05d}.jpg").is_file()
        assert not (root / f.path / f"{f.num_frames + 1:05d}.jpg").exists()
    assert {r.label for r in val_f} == set(range(15))


def test_same_seed_same_data_whatever_the_workers(tiny_synth, tmp_path):
    again = generate_synthetic(tmp_path / "again", **SYNTH_PRESETS["tiny"], seed=0, workers=1, progress=False)
    for name in ("train_frames", "val_frames", "train_videos", "val_videos", "classes"):
        assert Path(getattr(again, name)).read_text() == Path(getattr(tiny_synth, name)).read_text()
    for rec in read_list(again.val_frames)[::4]:
        a, b = Path(again.root, rec.path), Path(tiny_synth.root, rec.path)
        for i in (1, rec.num_frames):
            assert (a / f"{i:05d}.jpg").read_bytes() == (b / f"{i:05d}.jpg").read_bytes()
    rec = read_list(again.val_videos)[3]
    idx = range(rec.num_frames)
    assert np.array_equal(read_video_frames(Path(again.root, rec.path), idx),
                          read_video_frames(Path(tiny_synth.root, rec.path), idx))
    other = generate_synthetic(tmp_path / "other", **SYNTH_PRESETS["tiny"], seed=1, workers=2, progress=False)
    rec = read_list(other.val_frames)[0]
    assert not np.array_equal(read_frame_folder(Path(other.root, rec.path), [0]),
                              read_frame_folder(Path(tiny_synth.root, rec.path), [0]))
    reused = generate_synthetic(tmp_path / "again", **SYNTH_PRESETS["tiny"], seed=0, progress=False)
    assert reused.reused


def test_frames_only_set_has_the_same_frames_and_no_videos(tiny_synth, tmp_path):
    frames_only = generate_synthetic(tmp_path / "f", **SYNTH_PRESETS["tiny"], seed=0, workers=1, progress=False,
                                     videos=False)
    assert frames_only.train_videos is None and frames_only.val_videos is None
    assert not list(Path(frames_only.root).glob("videos/*")) and not list(Path(frames_only.root).glob("*_videos.txt"))
    for name in ("train_frames", "val_frames"):
        assert Path(getattr(frames_only, name)).read_text() == Path(getattr(tiny_synth, name)).read_text()
    rec = read_list(frames_only.val_frames)[5]
    assert (Path(frames_only.root, rec.path, "00001.jpg").read_bytes()
            == Path(tiny_synth.root, rec.path, "00001.jpg").read_bytes())
    # a frames-only set is not mistaken for a full one (and the other way round)
    assert generate_synthetic(tmp_path / "f", **SYNTH_PRESETS["tiny"], seed=0, workers=1, progress=False,
                              videos=False).reused
    assert not generate_synthetic(tmp_path / "f", **SYNTH_PRESETS["tiny"], seed=0, workers=1, progress=False).reused


@pytest.mark.parametrize("pair", REVERSAL_PAIRS)
def test_second_class_of_a_pair_is_the_first_played_backwards(pair):
    a, b = (SYNTH_CLASSES[i] for i in pair)
    for seed in range(3):
        forward = render_clip(a, [seed, 1], size=48, num_frames=17)
        backward = render_clip(b, [seed, 1], size=48, num_frames=17)
        assert np.array_equal(forward[::-1], backward)
        assert not np.array_equal(forward, backward)  # the clip really changes over time


def test_stored_videos_follow_the_construction(tiny_synth):
    """Video k of class B on disk == the forward clip drawn from B's own seed, reversed."""
    lo, hi = SYNTH_PRESETS["tiny"]["frames"]
    size = SYNTH_PRESETS["tiny"]["size"]
    a, b = REVERSAL_PAIRS[0]
    rec = next(r for r in read_list(tiny_synth.train_frames) if r.label == b)
    k = int(rec.path.rsplit("_", 1)[1])
    rng = np.random.default_rng([0, b, k])
    n = int(rng.integers(lo, hi + 1))
    forward = render_clip(SYNTH_CLASSES[a], rng, size, n).astype(float)
    stored = read_frame_folder(Path(tiny_synth.root, rec.path), range(rec.num_frames)).astype(float)
    assert n == rec.num_frames
    assert np.abs(stored - forward[::-1]).mean() < 6.0  # JPEG error only
    assert np.abs(stored - forward).mean() > 2 * np.abs(stored - forward[::-1]).mean()


def ks_statistic(x, y):
    x, y = np.sort(x), np.sort(y)
    grid = np.concatenate([x, y])
    return np.max(np.abs(np.searchsorted(x, grid, "right") / len(x) - np.searchsorted(y, grid, "right") / len(y)))


def frame_stats(class_name, seeds):
    """Per-frame statistics pooled over clips: what an order-agnostic model can see."""
    feats = []
    for s in seeds:
        clip = render_clip(class_name, [s, 7], size=32, num_frames=16).astype(np.float32)
        feats.append(np.stack([clip.mean(axis=(1, 2, 3)), clip.std(axis=(1, 2, 3))], axis=1))
    return np.concatenate(feats)


@pytest.mark.parametrize("pair", REVERSAL_PAIRS)
def test_reversal_pairs_share_the_frame_distribution(pair):
    """Independent draws of A and B: the per-frame statistics have the same distribution (two-sample KS,
    well under the 0.001 critical value for ~40 independent clips), while A and a static class differ."""
    a, b = (SYNTH_CLASSES[i] for i in pair)
    fa = frame_stats(a, range(0, 40))
    fb = frame_stats(b, range(1000, 1040))
    for j in range(fa.shape[1]):
        assert ks_statistic(fa[:, j], fb[:, j]) < 0.3


def test_time_signal_separates_a_pair():
    """The horizontal centre of mass of what changes moves right in move_right, left in move_left."""
    def drift(name, seed):
        clip = render_clip(name, [seed, 3], size=48, num_frames=16).astype(np.float32)
        motion = np.abs(clip[1:] - clip[:1]).sum(axis=(1, 3))  # (T-1, W): change w.r.t. the first frame
        xs = np.arange(clip.shape[2])
        com = (motion * xs).sum(1) / np.maximum(motion.sum(1), 1e-6)
        return com[-1] - com[len(com) // 3]

    right = [drift("move_right", s) for s in range(10)]
    left = [drift("move_left", s) for s in range(10)]
    assert np.mean(right) > 3 and np.mean(left) < -3


def test_static_classes_do_not_move():
    for c in STATIC_CLASSES:
        clip = render_clip(SYNTH_CLASSES[c], 5, size=48, num_frames=12).astype(np.float32)
        assert np.abs(clip - clip[0]).mean() < 8  # only pixel noise and distractors change


def test_synth_cli(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["synth", "--out", str(out), "--preset", "tiny", "--videos-per-class", "2", "--val-per-class", "1",
            "--size", "32", "--frames", "8..10", "--seed", "3", "--workers", "1"]
    assert run_data_cli(argv) == 0
    assert "15 classes, 15 train / 15 val" in capsys.readouterr().out
    assert len(read_list(out / "train_videos.txt")) == 15
    assert all(8 <= r.num_frames <= 10 for r in read_list(out / "val_frames.txt"))
    assert run_data_cli(argv) == 0 and "reused" in capsys.readouterr().out
    (out / "videos" / "move_up_0001.mp4").unlink()  # incomplete set: regenerated, not reused
    assert run_data_cli(argv) == 0 and "generated" in capsys.readouterr().out
    assert (out / "videos" / "move_up_0001.mp4").is_file()
    with pytest.raises(ValueError, match="even"):
        generate_synthetic(tmp_path / "odd", videos_per_class=2, size=33, progress=False)
