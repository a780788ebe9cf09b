from __future__ import annotations

import numpy as np
import pytest
from datahelpers import write_frames

from adafuse.data.decode import (
    count_decodable_frames,
    count_folder_frames,
    probe_video,
    read_frame_folder,
    read_video_frames,
)
from adafuse.data.errors import VideoReadError
from adafuse.data.lists import read_list


def encode(path, codec, n=40, size=(48, 64), gop=None, options=None):
    """A video whose frame i has red level 6*i (so the index can be read back from the pixels)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=12)
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        s.bit_rate = 4_000_000
        if gop:
            s.codec_context.gop_size = gop
        if options:
            s.options = options
        for i in range(n):
            a = np.zeros((*size, 3), np.uint8)
            a[..., 0] = 6 * i
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def frame_numbers(frames):
    return np.round(frames[:, :, :, 0].astype(float).mean(axis=(1, 2)) / 6).astype(int).tolist()


def test_frame_folder_reading_and_counting(tmp_path):
    folder = write_frames(tmp_path / "v", 12)
    assert count_folder_frames(folder) == 12
    frames = read_frame_folder(folder, [0, 5, 5, 11])
    assert frames.shape == (4, 24, 32, 3) and frames.dtype == np.uint8
    assert frames[:, 0, 0, 0].tolist() == [0, 50, 50, 110]
    other = write_frames(tmp_path / "w", 3, template="img_{:05d}.jpg")
    assert count_folder_frames(other, "img_{:05d}.jpg") == 3
    zero = write_frames(tmp_path / "z", 3, template="{:06d}.jpg", start=0)
    assert read_frame_folder(zero, [2], "{:06d}.jpg", start_index=0)[0, 0, 0, 0] == 20


def test_frame_folder_errors_name_the_file(tmp_path):
    folder = write_frames(tmp_path / "v", 4)
    with pytest.raises(VideoReadError, match="00006.jpg"):
        read_frame_folder(folder, [5])
    (folder / "00002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoReadError, match="00002.jpg"):
        read_frame_folder(folder, [1])
    with pytest.raises(VideoReadError, match="does not exist"):
        read_frame_folder(tmp_path / "nope", [0])


@pytest.mark.parametrize("codec,gop", [("libx264", 8), ("libx264", None), ("mpeg4", 5)])
def test_video_seek_modes_agree(tmp_path, codec, gop):
    path = encode(tmp_path / "v.mp4", codec, gop=gop)
    idx = [3, 9, 9, 20, 33, 39]
    ref = read_video_frames(path, idx, seek="never")
    assert frame_numbers(ref) == idx
    for mode in ("always", "auto"):
        assert np.array_equal(read_video_frames(path, idx, seek=mode), ref)


def test_webm_reports_no_count_and_is_counted(tmp_path):
    path = encode(tmp_path / "v.webm", "libvpx-vp9", n=30, options={"deadline": "realtime", "cpu-used": "8"})
    import av

    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # webm has no frame count
    info = probe_video(path)  # the declared count: duration x rate
    assert info.num_frames == 30 and not info.exact
    counted = probe_video(path, count="packets")
    assert counted.num_frames == 30 and counted.exact
    assert frame_numbers(read_video_frames(path, [0, 14, 29])) == [0, 14, 29]
    assert count_decodable_frames(path) == 30


def test_video_errors(tmp_path):
    path = encode(tmp_path / "v.mp4", "libx264", n=10)
    with pytest.raises(VideoReadError, match="only 10 frames"):
        read_video_frames(path, [0, 10])
    with pytest.raises(VideoReadError, match="does not exist"):
        read_video_frames(tmp_path / "missing.mp4", [0])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoReadError, match="bad.mp4"):
        probe_video(bad)


def test_mp4_and_frame_folder_forms_agree(tiny_synth):
    videos = read_list(tiny_synth.train_videos)
    frames = read_list(tiny_synth.train_frames)
    for v, f in list(zip(videos, frames, strict=True))[::7]:
        assert v.num_frames == f.num_frames == probe_video(v.resolve(tiny_synth.root)).num_frames
        idx = np.arange(v.num_frames)
        a = read_video_frames(v.resolve(tiny_synth.root), idx).astype(float)
        b = read_frame_folder(f.resolve(tiny_synth.root), idx).astype(float)
        assert a.shape == b.shape
        assert np.abs(a - b).mean() < 6.0  # H.264 (yuv420p) vs JPEG q95 of the same frames
        # the per-frame means move together: decoding is aligned frame by frame
        ma, mb = a.mean(axis=(1, 2, 3)), b.mean(axis=(1, 2, 3))
        assert np.abs(ma - mb).max() < 2.0
