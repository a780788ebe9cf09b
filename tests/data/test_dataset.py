from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from datahelpers import write_frames

from adafuse.data.dataset import SkippedSample, VideoDataset, collate_videos
from adafuse.data.errors import ListFormatError, VideoReadError
from adafuse.data.loader import EpochSampler, build_loader
from adafuse.data.transforms import eval_transform, train_transform


def small_train(size=32):
    return train_transform(size, scales=(1.0, 0.875))


def test_sample_dict(tiny_synth):
    ds = VideoDataset(tiny_synth.train_videos, num_frames=8, transform=small_train())
    s = ds[3]
    assert set(s) == {"video", "label", "id", "index", "source", "frame_indices"}
    assert s["video"].shape == (8, 3, 32, 32) and s["video"].dtype == torch.float32
    assert s["frame_indices"].dtype == torch.int64 and s["frame_indices"].shape == (8,)
    assert s["index"] == 3 and s["id"].startswith("videos/") and s["source"].endswith(".mp4")
    assert isinstance(s["label"], int) and ds.classes is not None and len(ds.classes) == 15
    n = ds.records[3].num_frames
    avg = n // 8
    assert (s["frame_indices"] // avg == torch.arange(8)).all()


def test_eval_multi_view(tiny_synth):
    ds = VideoDataset(tiny_synth.val_frames, num_frames=4, train=False, num_clips=2,
                      transform=eval_transform(32, resize_short=40, three_crop=True))
    s = ds[0]
    assert s["video"].shape == (6, 4, 3, 32, 32)
    assert s["frame_indices"].shape == (6, 4)
    assert torch.equal(s["frame_indices"][0], s["frame_indices"][2])  # crops of clip 0
    assert not torch.equal(s["frame_indices"][0], s["frame_indices"][3])
    assert torch.equal(ds[0]["video"], s["video"])  # evaluation is deterministic
    batch = collate_videos([ds[0], ds[1]])
    assert batch["video"].shape == (2, 6, 4, 3, 32, 32) and batch["frame_indices"].shape == (2, 6, 4)


def test_frames_and_video_lists_give_the_same_clip(tiny_synth):
    kw = dict(num_frames=8, train=False, transform=eval_transform(64, resize_short=64))
    a = VideoDataset(tiny_synth.val_frames, **kw)[5]
    b = VideoDataset(tiny_synth.val_videos, **kw)[5]
    assert torch.equal(a["frame_indices"], b["frame_indices"]) and a["label"] == b["label"]
    assert (a["video"] - b["video"]).abs().mean() < 0.12  # normalised units: ~6 grey levels


def make_list(tmp_path, lines):
    p = tmp_path / "list.txt"
    p.write_text("".join(f"{x}\n" for x in lines))
    return p


def test_bad_sample_raises_with_file_and_line(tmp_path):
    write_frames(tmp_path / "good", 10)
    write_frames(tmp_path / "short", 4)
    lst = make_list(tmp_path, ["good 10 0", "short 10 1", "gone 10 2"])
    ds = VideoDataset(lst, num_frames=8, train=False, transform=eval_transform(16, resize_short=16))
    assert ds[0]["label"] == 0
    with pytest.raises(VideoReadError) as e:
        ds[1]
    msg = str(e.value)
    assert f"{lst}:2" in msg and "short" in msg and "the list says 10 frames" in msg
    assert e.value.line == 2 and e.value.list_file == str(lst)
    with pytest.raises(VideoReadError, match=r"list.txt:3.*does not exist"):
        ds[2]


def test_skip_mode_returns_none_and_counts_across_workers(tmp_path):
    write_frames(tmp_path / "good", 10)
    lines = [f"good 10 {i % 3}" if i % 4 else f"missing_{i} 10 0" for i in range(12)]
    lst = make_list(tmp_path, lines)
    ds = VideoDataset(lst, num_frames=4, train=True, transform=train_transform(16), on_error="skip")
    assert isinstance(ds[0], SkippedSample) and ds[0].index == 0 and ds.num_skipped == 2
    assert ds[1]["label"] == 1
    loader = build_loader(ds, EpochSampler(len(ds), False), 4, 2, 0)
    total_skipped = total_seen = 0
    for batch in loader:
        total_skipped += batch["num_skipped"]
        total_seen += 0 if batch["video"] is None else batch["video"].shape[0]
    assert (total_skipped, total_seen) == (3, 9)
    all_bad = collate_videos([ds[0], ds[4]])
    assert all_bad["video"] is None and all_bad["num_skipped"] == 2 and all_bad["skipped"] == [0, 4]


def test_label_range_checked(tmp_path):
    write_frames(tmp_path / "a", 3)
    lst = make_list(tmp_path, ["a 3 0", "a 3 7"])
    with pytest.raises(ListFormatError, match=r"list.txt:2.*label 7"):
        VideoDataset(lst, num_classes=5)


def test_loader_is_reproducible(tiny_synth):
    def first_batch(workers):
        ds = VideoDataset(tiny_synth.train_frames, num_frames=4, transform=small_train(), seed=0)
        loader = build_loader(ds, EpochSampler(len(ds), True, seed=123), 6, workers, 123)
        batch = next(iter(loader))
        return batch["index"], batch["frame_indices"], batch["video"]

    a, b = first_batch(2), first_batch(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c, d = first_batch(0), first_batch(0)
    assert all(torch.equal(x, y) for x, y in zip(c, d, strict=True))


def test_video_without_count_is_probed(tiny_synth, tmp_path):
    src = f"{tiny_synth.root}/videos"
    shutil.copy(f"{src}/move_right_0000.mp4", tmp_path / "clip with space.mp4")
    lst = make_list(tmp_path, ["clip with space.mp4 0"])
    ds = VideoDataset(lst, num_frames=8, train=False, transform=eval_transform(32, resize_short=32))
    s = ds[0]
    assert s["video"].shape == (8, 3, 32, 32) and ds.frame_count(0) >= 16
    assert np.all(np.diff(s["frame_indices"].numpy()) > 0)


def test_errors_cross_process_boundaries(tmp_path):
    import pickle

    err = pickle.loads(pickle.dumps(VideoReadError("a/b.mp4", "broken", "l.txt", 3)))
    assert (err.source, err.reason, err.list_file, err.line) == ("a/b.mp4", "broken", "l.txt", 3)
    err = pickle.loads(pickle.dumps(ListFormatError("l.txt", 4, "bad")))
    assert (err.path, err.line, str(err)) == ("l.txt", 4, "l.txt:4: bad")

    lst = make_list(tmp_path, ["missing_dir 10 0"])
    ds = VideoDataset(lst, num_frames=4, transform=train_transform(16))
    loader = build_loader(ds, EpochSampler(len(ds), False), 1, 1, 0)
    with pytest.raises(VideoReadError, match=r"list.txt:1"):
        next(iter(loader))
