from __future__ import annotations

import os
import shutil

from datahelpers import run_data_cli

from adafuse.data.check import check_list
from adafuse.data.lists import read_list


def plant_faults(root):
    """Rewrite the copy's lists with one fault per line; returns {kind: line number}."""
    frames = read_list(root / "train_frames.txt")
    videos = read_list(root / "train_videos.txt")
    # short folder: delete the last two frames of one folder
    short = frames[1]
    for i in (short.num_frames, short.num_frames - 1):
        os.remove(root / short.path / f"{i:05d}.jpg")
    # missing folder
    shutil.rmtree(root / frames[2].path)
    # truncated mp4
    data = (root / videos[3].path).read_bytes()
    (root / videos[3].path).write_bytes(data[: len(data) // 2])
    lines = [
        f"{frames[0].path} {frames[0].num_frames} {frames[0].label}",  # 1 fine
        f"{short.path} {short.num_frames} {short.label}",  # 2 short
        f"{frames[2].path} {frames[2].num_frames} {frames[2].label}",  # 3 missing
        f"{videos[3].path} {videos[3].num_frames} {videos[3].label}",  # 4 truncated (+ short)
        f"{frames[4].path} {frames[4].num_frames} 99",  # 5 bad label
        f"{frames[0].path} {frames[0].num_frames} {frames[0].label}",  # 6 duplicate of 1
        "this line is malformed",  # 7
        f"{videos[5].path} {videos[5].num_frames} {videos[5].label}",  # 8 fine
    ]
    (root / "faulty.txt").write_text("".join(f"{x}\n" for x in lines))
    return {"short": 2, "missing": 3, "truncated": 4, "label": 5, "duplicate": 6, "malformed": 7}


def test_check_finds_every_planted_fault(synth_copy):
    expected = plant_faults(synth_copy)
    report = check_list(synth_copy / "faulty.txt", workers=2, progress=False)
    found = {(p.kind, p.line) for p in report.problems}
    for kind, line in expected.items():
        assert (kind, line) in found, (kind, line, found)
    assert not any(p.line in (1, 8) for p in report.problems)
    assert report.num_classes == 15  # from classes.txt next to the list
    dup = next(p for p in report.problems if p.kind == "duplicate")
    assert "line 1" in dup.message and str(synth_copy / "faulty.txt") + ":6" in str(dup)
    assert not report.ok and "problems" in report.summary()


def test_check_clean_list_and_cli_exit_codes(synth_copy, capsys):
    assert check_list(synth_copy / "val_videos.txt", progress=False).ok
    assert run_data_cli(["check", str(synth_copy / "val_frames.txt"), "--workers", "1"]) == 0
    plant_faults(synth_copy)
    assert run_data_cli(["check", str(synth_copy / "faulty.txt"), "--num-classes", "15", "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert "faulty.txt:3: [missing]" in out and "faulty.txt:5: [label]" in out


def test_deep_check_finds_a_corrupt_middle_frame(synth_copy):
    rec = read_list(synth_copy / "val_frames.txt")[0]
    (synth_copy / rec.path / "00005.jpg").write_bytes(b"garbage")
    assert check_list(synth_copy / "val_frames.txt", progress=False).ok  # only first/last decoded
    deep = check_list(synth_copy / "val_frames.txt", deep=True, progress=False)
    assert [(p.kind, p.line) for p in deep.problems] == [("unreadable", 1)]
    assert "00005.jpg" in deep.problems[0].message
