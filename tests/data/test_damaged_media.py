"""Damaged media are never silently shortened: a truncated video, a frame folder with a gap and a folder
whose frames differ in size are found by ``data prepare``, ``data check`` (``--deep``), ``data extract``
and the dataset, which all count frames by one definition (:mod:`adafuse.data.media`)."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest
from datahelpers import run_data_cli, write_frames
from PIL import Image

from adafuse.data.check import check_list
from adafuse.data.dataset import VideoDataset
from adafuse.data.errors import VideoReadError
from adafuse.data.extract import extract_frames
from adafuse.data.lists import read_list
from adafuse.data.media import FrameFolder, VideoSource, media_kind, open_source
from adafuse.data.transforms import eval_transform

N = 20


def write_video(path, n=N, codec="libvpx-vp9", rate=12, options=None):
    """A video whose frame i has red level 10*i (the index can be read back from the pixels)."""
    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream(codec, rate=rate)
        s.height, s.width = 16, 24
        s.pix_fmt = "yuv420p"
        if codec.startswith("libvpx"):
            s.options = {"deadline": "realtime", "cpu-used": "8"}
        for i in range(n):
            a = np.zeros((16, 24, 3), np.uint8)
            a[..., 0] = 10 * i
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def packet_offsets(path) -> list[int]:
    with av.open(str(path)) as c:
        return [p.pos for p in c.demux(c.streams.video[0]) if p.size > 0]


def truncate_losing(src, dst, lost: int):
    """Copy ``src`` cut just before its ``lost``-th last packet (the container header still declares N)."""
    offsets = packet_offsets(src)
    data = src.read_bytes()
    dst.write_bytes(data[: offsets[len(offsets) - lost]])
    return dst


@pytest.fixture(scope="module")
def webm(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("webm") / "full.webm")


@pytest.mark.parametrize("lost", [1, 5, 15])
def test_truncated_webm_is_detected_by_every_reader(webm, tmp_path, lost):
    bad = truncate_losing(webm, tmp_path / "cut.webm", lost)
    src = open_source(bad)
    assert src.kind == "video" and src.num_frames == N  # the declared count, not what survived
    with pytest.raises(VideoReadError, match="truncated") as e:
        src.verify()
    assert e.value.kind == "truncated" and "cut.webm" in str(e.value)
    with pytest.raises(VideoReadError, match="truncated"):
        src.verify(decode=True)
    with pytest.raises(VideoReadError, match="truncated"):
        src.read([0])  # even a frame that survived: the video as a whole is damaged
    with pytest.raises(VideoReadError, match="truncated"):
        list(src.iter_frames())
    assert open_source(webm).verify(decode=True) == N  # the intact file passes

    (tmp_path / "l.txt").write_text(f"cut.webm 0\nfull.webm {N} 0\n")
    shutil.copy(webm, tmp_path / "full.webm")
    for deep in (False, True):
        report = check_list(tmp_path / "l.txt", deep=deep, progress=False)
        assert [(p.kind, p.line) for p in report.problems] == [("truncated", 1)]
    ds = VideoDataset(tmp_path / "l.txt", num_frames=2, train=False, transform=eval_transform(16, resize_short=16))
    with pytest.raises(VideoReadError, match=r"l.txt:1.*truncated"):
        ds[0]
    assert ds[1]["video"].shape == (2, 3, 16, 16)


def test_truncated_mp4_with_header_first_is_detected(tmp_path):
    full = write_video(tmp_path / "full.mp4", codec="libx264", options={"movflags": "faststart"})
    bad = truncate_losing(full, tmp_path / "cut.mp4", 3)
    assert VideoSource(str(bad)).num_frames == N
    with pytest.raises(VideoReadError) as e:
        VideoSource(str(bad)).verify()
    assert e.value.kind == "truncated"


def test_prepare_lists_damaged_sources_as_problems_not_shorter(webm, tmp_path):
    classes = {"Moving something up": "0", "Dropping something": "1"}
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "something-something-v2-labels.json").write_text(json.dumps(classes))
    entries = [{"id": str(i), "template": "Moving [something] up", "label": "x", "placeholders": []}
               for i in (1, 2)]
    (ann / "something-something-v2-train.json").write_text(json.dumps(entries))
    root = tmp_path / "videos"
    root.mkdir()
    shutil.copy(webm, root / "1.webm")
    truncate_losing(webm, root / "2.webm", 10)
    out = tmp_path / "lists"
    assert run_data_cli(["prepare", "sthv2", "--annotations", str(ann), "--root", str(root), "--out", str(out)]) == 0
    assert [(r.path, r.num_frames) for r in read_list(out / "train.txt")] == [("1.webm", N)]
    problems = (out / "missing.txt").read_text().splitlines()
    assert len(problems) == 1 and problems[0].startswith("train\t2\ttruncated:")


def test_frame_folder_gap_is_detected_by_every_reader(tmp_path):
    folder = write_frames(tmp_path / "frames" / "7", 33, size=(8, 8))
    (folder / "00010.jpg").unlink()
    src = FrameFolder(str(folder))
    assert src.num_frames == 33 and src.missing() == [9]
    with pytest.raises(VideoReadError, match="00010.jpg") as e:
        src.read([0, 32])  # the sampled frames exist, the folder still has a gap
    assert e.value.kind == "gap"

    # prepare (jester): the folder is a problem, not a 9-frame video
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "jester-v1-labels.csv").write_text("Swiping Left\nSwiping Right\n")
    (ann / "jester-v1-train.csv").write_text("7;Swiping Left\n8;Swiping Right\n")
    write_frames(tmp_path / "frames" / "8", 12, size=(8, 8))
    out = tmp_path / "lists"
    assert run_data_cli(["prepare", "jester", "--annotations", str(ann), "--root", str(tmp_path / "frames"),
                         "--out", str(out)]) == 0
    assert [(r.path, r.num_frames) for r in read_list(out / "train.txt")] == [("8", 12)]
    assert "\t7\tgap:" in (out / "missing.txt").read_text()

    # check (plain and deep) and the dataset, with the count the old prepare wrote (up to the gap)
    lst = tmp_path / "frames" / "l.txt"
    lst.write_text("7 9 0\n8 12 1\n")
    for deep in (False, True):
        report = check_list(lst, deep=deep, progress=False)
        assert [(p.kind, p.line) for p in report.problems] == [("gap", 1)]
        assert "00010.jpg" in report.problems[0].message
    ds = VideoDataset(lst, num_frames=4, train=False, transform=eval_transform(8, resize_short=8))
    with pytest.raises(VideoReadError, match=r"l.txt:1.*gap"):
        ds[0]
    assert ds[1]["label"] == 1


def test_frames_of_different_sizes_fail_deep_check_and_reading(tmp_path):
    folder = write_frames(tmp_path / "v", 6, size=(8, 8))
    Image.fromarray(np.zeros((10, 8, 3), np.uint8)).save(folder / "00004.jpg")
    (tmp_path / "l.txt").write_text("v 6 0\n")
    deep = check_list(tmp_path / "l.txt", deep=True, progress=False)
    assert [(p.kind, p.line) for p in deep.problems] == [("size", 1)] and "00004.jpg" in deep.problems[0].message
    with pytest.raises(VideoReadError) as e:
        FrameFolder(str(folder)).read([0, 3])
    assert e.value.kind == "size"


def test_extract_refuses_a_truncated_video(webm, tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(webm, tmp_path / "in" / "good.webm")
    truncate_losing(webm, tmp_path / "in" / "bad.webm", 4)
    (tmp_path / "in" / "l.txt").write_text("good.webm 0\nbad.webm 1\n")
    report = extract_frames(tmp_path / "in" / "l.txt", None, tmp_path / "out", progress=False)
    assert report.extracted == 1 and len(report.failed) == 1
    assert report.failed[0][1] == 2 and "truncated" in report.failed[0][2]
    assert not (tmp_path / "out" / "bad").exists()
    assert [(r.path, r.num_frames) for r in read_list(report.out_list)] == [("good", N)]
    assert FrameFolder(str(tmp_path / "out" / "good")).verify(decode=True) == N


def test_one_rule_for_the_kind_and_one_frame_count(webm, tmp_path):
    assert media_kind("a/b.webm") == "video" and media_kind(tmp_path) == "frames"
    other = tmp_path / "clip.bin"
    shutil.copy(webm, other)
    assert media_kind(other) == "video" and open_source(other).num_frames == N
    folder = write_frames(tmp_path / "f", 5, template="img_{:03d}.png", start=0)
    (folder / "notes.txt").write_text("x")
    src = open_source(folder, "img_{:03d}.png", 0)
    assert src.num_frames == 5
    frames = src.read([4, 0])
    assert frames[:, 0, 0, 0].tolist() == [40, 0]
    assert [i for i, _ in src.iter_frames(every=2)] == [0, 2, 4]
    assert [i for i, _ in open_source(webm).iter_frames(every=7)] == [0, 7, 14]
