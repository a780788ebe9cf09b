from __future__ import annotations

import os

import numpy as np
from datahelpers import run_data_cli

from adafuse.data.decode import read_frame_folder, read_video_frames
from adafuse.data.extract import extract_frames, extract_video
from adafuse.data.lists import read_list


def small_video_list(tiny_synth, tmp_path, n=3):
    lines = open(tiny_synth.val_videos).read().splitlines()[:n]
    lst = tmp_path / "some_videos.txt"
    lst.write_text("".join(f"{x}\n" for x in lines))
    return lst


def test_extract_is_resumable_and_writes_a_frame_list(tiny_synth, tmp_path):
    lst = small_video_list(tiny_synth, tmp_path)
    out = tmp_path / "frames"
    report = extract_frames(lst, tiny_synth.root, out, workers=2, progress=False)
    assert (report.extracted, report.skipped_existing, report.failed) == (3, 0, [])
    records = read_list(report.out_list)
    assert report.out_list == str(out / "some_frames.txt")  # *_videos.txt -> *_frames.txt
    src = read_list(lst)
    assert [(r.num_frames, r.label) for r in records] == [(s.num_frames, s.label) for s in src]
    first = records[0]
    a = read_frame_folder(out / first.path, range(first.num_frames)).astype(float)
    b = read_video_frames(src[0].resolve(tiny_synth.root), range(first.num_frames)).astype(float)
    assert np.abs(a - b).mean() < 6.0  # JPEG q90 of noisy frames

    # simulate an interrupted run: one folder gone, a stale temporary folder left behind
    victim = out / records[1].path
    for f in victim.iterdir():
        f.unlink()
    victim.rmdir()
    stale = victim.parent / f".{victim.name}.tmp-99999"
    stale.mkdir()
    (stale / "00001.jpg").write_bytes(b"partial")
    mtime = os.path.getmtime(out / first.path / "00001.jpg")
    report = extract_frames(lst, tiny_synth.root, out, workers=1, progress=False)
    assert (report.extracted, report.skipped_existing) == (1, 2)
    assert not stale.exists() and victim.is_dir()
    assert os.path.getmtime(out / first.path / "00001.jpg") == mtime  # complete folders untouched
    assert [(r.path, r.num_frames) for r in read_list(report.out_list)] == [(r.path, r.num_frames) for r in records]


def test_extract_options_and_failures(tiny_synth, tmp_path, capsys):
    src = read_list(tiny_synth.val_videos)[0]
    n = extract_video(src.resolve(tiny_synth.root), tmp_path / "half", fps=6, short_side=32)
    assert n == (src.num_frames + 1) // 2  # 12 fps -> 6 fps
    assert read_frame_folder(tmp_path / "half", [0]).shape == (1, 32, 32, 3)
    lst = tmp_path / "train_videos.txt"
    lst.write_text(f"{src.path} {src.num_frames} {src.label}\nvideos/missing.mp4 3 0\n")
    out = tmp_path / "out"
    code = run_data_cli(["extract", "--list", str(lst), "--root", tiny_synth.root, "--out", str(out),
                         "--workers", "1"])
    assert code == 1
    printed = capsys.readouterr().out
    assert f"{lst}:2" in printed and "1 failed" in printed
    assert [r.path for r in read_list(out / "train_frames.txt")] == [src.path[: -len(".mp4")]]
