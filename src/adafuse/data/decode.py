"""Decoders: frame folders (JPEG/PNG files) and video files (PyAV).

Both return the requested frames as one uint8 array ``(T, H, W, 3)`` RGB, in the order of the requested
indices (0-based, duplicates allowed). Anything that cannot be read raises :class:`VideoReadError`
naming the file; nothing is ever replaced by another frame or another video.

Video decoding first demuxes the packets (cheap: no decoding) to learn the frame count and where the
keyframes are, then decodes only from the keyframe before each requested frame when that skips enough
work (``seek="auto"``), otherwise decodes sequentially from the start. Frame ``i`` is the ``i``-th frame
in presentation order, the same numbering that frame extraction (``data extract``) writes as
``{i+1:05d}.jpg``.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from adafuse.data.errors import VideoReadError

DEFAULT_TEMPLATE = "{:05d}.jpg"


# --------------------------------------------------------------------------------------- frame folders


def frame_path(folder: str | os.PathLike, index: int, template: str = DEFAULT_TEMPLATE, start_index: int = 1) -> str:
    """File of 0-based frame ``index`` in ``folder``: ``folder/template.format(index + start_index)``."""
    return os.path.join(os.fspath(folder), template.format(index + start_index))


def count_folder_frames(
    folder: str | os.PathLike, template: str = DEFAULT_TEMPLATE, start_index: int = 1
) -> int:
    """Frames of a frame folder by the one definition (:class:`adafuse.data.media.FrameFolder`): the highest
    frame number present, 0 for a folder without frames. Gaps are not checked here.

    Raises :class:`VideoReadError` if ``folder`` is not a directory.
    """
    from adafuse.data.media import FrameFolder

    src = FrameFolder(os.fspath(folder), template, start_index)
    if not src.numbers:
        return 0
    try:
        return src.num_frames
    except VideoReadError:
        return 0


def _open_rgb(path: str) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        if img.mode != "RGB":
            img = img.convert("RGB")
        return np.asarray(img)


def read_frame_folder(
    folder: str | os.PathLike,
    indices: Sequence[int] | np.ndarray,
    template: str = DEFAULT_TEMPLATE,
    start_index: int = 1,
) -> np.ndarray:
    """Read frames ``indices`` (0-based) of a frame folder -> uint8 ``(T, H, W, 3)`` RGB
    (:meth:`adafuse.data.media.FrameFolder.read`).

    Each distinct frame is decoded once. Raises :class:`VideoReadError` naming the frame file if it is
    missing or cannot be decoded, if the folder has a gap, or if the frames differ in size.
    """
    from adafuse.data.media import FrameFolder

    return FrameFolder(os.fspath(folder), template, start_index).read(indices)


# ------------------------------------------------------------------------------------------ video files


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself.

    ``num_frames``: frame count; ``exact`` is False when it was estimated from duration x frame rate
    (``probe_video(..., count="estimate")`` on a container without a frame count, e.g. webm).
    ``fps``: average frame rate (frames/s); ``duration``: seconds; ``width``/``height``: pixels.
    """

    num_frames: int
    exact: bool
    fps: float | None
    duration: float | None
    width: int
    height: int
    codec: str


def open_video(path: str):
    """Open a video container with PyAV; raises :class:`VideoReadError` (missing, unreadable, no video stream)."""
    import av

    try:
        container = av.open(path)
    except FileNotFoundError as e:
        raise VideoReadError(path, "video file does not exist", kind="missing") from e
    except Exception as e:  # av.error.FFmpegError and friends: not a readable container
        raise VideoReadError(path, f"cannot open video: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream")
    return container


def _video_packets(container, stream, path: str) -> list:
    try:
        return [p for p in container.demux(stream) if p.size > 0]
    except Exception as e:
        raise VideoReadError(path, f"cannot demux video (truncated or corrupt?): {e}") from e


def declared_frames(container, path: str) -> int:
    """The frame count a container declares: its frame count (mp4, avi), else its declared duration x
    average frame rate, rounded (webm, mkv: they store no count). Raises :class:`VideoReadError` when it
    declares neither."""
    stream = container.streams.video[0]
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    duration = _duration(container, stream)
    if duration is None or not rate:
        raise VideoReadError(path, "the container declares neither a frame count nor a duration and frame rate")
    return int(round(duration * float(rate)))


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _check_packets(path: str, found: int, declared: int) -> None:
    if found < declared:
        raise VideoReadError(path, f"truncated: the container declares {declared} frames, the file holds only "
                                   f"{found}", kind="truncated")


def count_packets(path: str | os.PathLike, expected: int | None = None) -> int:
    """Demux (no decoding) and count the video packets; with ``expected`` (the declared count), raise
    :class:`VideoReadError` (``kind="truncated"``) when there are fewer."""
    path = os.fspath(path)
    container = open_video(path)
    try:
        n = len(_video_packets(container, container.streams.video[0], path))
    finally:
        container.close()
    if expected is not None:
        _check_packets(path, n, expected)
    return n


def probe_video(path: str | os.PathLike, count: Literal["auto", "packets", "estimate"] = "auto") -> VideoInfo:
    """Frame count, rate and size of a video file.

    ``count="auto"`` (or ``"estimate"``): the declared count (:func:`declared_frames`, reads only the
    header; the definition every part of the toolkit uses); ``"packets"``: the packets actually in the
    file (reads the file, decodes nothing). ``exact`` is False when the count comes from duration x rate.
    Raises :class:`VideoReadError`.
    """
    path = os.fspath(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        duration = _duration(container, stream)
        exact = bool(stream.frames and stream.frames > 0)
        if count == "packets":
            n, exact = len(_video_packets(container, stream, path)), True
        else:
            n = declared_frames(container, path)
        return VideoInfo(
            num_frames=n,
            exact=exact,
            fps=fps,
            duration=duration,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            codec=stream.codec_context.name,
        )
    finally:
        container.close()


def _to_rgb(frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def read_video_frames(
    path: str | os.PathLike,
    indices: Sequence[int] | np.ndarray,
    seek: Literal["auto", "always", "never"] = "auto",
    threads: int = 1,
) -> np.ndarray:
    """Decode frames ``indices`` (0-based, presentation order) of a video -> uint8 ``(T, H, W, 3)`` RGB.

    ``seek``: ``"auto"`` jumps to the keyframe before a requested frame when that skips at least a
    quarter of the decoding, ``"never"`` decodes from the start, ``"always"`` jumps whenever possible.
    ``threads``: decoder threads (1 suits DataLoader workers). Raises :class:`VideoReadError` if the video
    cannot be opened or decoded, is truncated (fewer packets than its declared frame count,
    :func:`declared_frames`), or has fewer frames than an index asks for.
    """
    path = os.fspath(path)
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        raise ValueError("no frame indices requested")
    if wanted[0] < 0:
        raise ValueError(f"negative frame index {wanted[0]}")
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        declared = declared_frames(container, path)
        packets = _video_packets(container, stream, path)
        _check_packets(path, len(packets), declared)
        if wanted[-1] >= declared:
            raise VideoReadError(
                path, f"frame {wanted[-1]} (0-based) requested but the video has only {declared} frames",
                kind="short",
            )
        try:
            frames = _decode_wanted(stream, packets, wanted, seek)
        except VideoReadError:
            raise
        except Exception as e:
            raise VideoReadError(path, f"decoding failed: {e}") from e
        missing = [i for i in wanted if i not in frames]
        if missing:
            raise VideoReadError(
                path, f"{len(missing)} requested frames could not be decoded (first: {missing[0]}, 0-based)",
                kind="truncated",
            )
    finally:
        container.close()
    shapes = {a.shape for a in frames.values()}
    if len(shapes) > 1:
        raise VideoReadError(path, f"decoded frames have different sizes {sorted(shapes)}", kind="size")
    return np.stack([frames[int(i)] for i in indices])


def _decode_sequential(codec, packets: list, wanted: list[int]) -> dict[int, np.ndarray]:
    """Decode from the first packet, numbering frames by output order."""
    want = set(wanted)
    out: dict[int, np.ndarray] = {}
    pos = 0
    for packet in [*packets, None]:
        for frame in codec.decode(packet):
            if pos in want:
                out[pos] = _to_rgb(frame)
                if len(out) == len(want):
                    return out
            pos += 1
    return out


def _decode_wanted(stream, packets: list, wanted: list[int], seek: str) -> dict[int, np.ndarray]:
    codec = stream.codec_context
    if seek == "never" or any(p.pts is None for p in packets):
        return _decode_sequential(codec, packets, wanted)

    pts_sorted = sorted(p.pts for p in packets)
    if len(set(pts_sorted)) != len(pts_sorted):  # duplicated timestamps: numbering by pts is ambiguous
        return _decode_sequential(codec, packets, wanted)
    decode_pos = {p.pts: k for k, p in enumerate(packets)}
    # keyframes as (decode position, pts); a frame is decodable from the last keyframe that comes before
    # it in decode order and does not show after it (open-GOP leading frames need the previous keyframe)
    keys = [(k, p.pts) for k, p in enumerate(packets) if p.is_keyframe]
    if not keys or keys[0][0] != 0:
        return _decode_sequential(codec, packets, wanted)

    def start_of(target_pts: int) -> int:
        d = decode_pos[target_pts]
        j = bisect.bisect_right([k for k, _ in keys], d) - 1
        while j > 0 and keys[j][1] > target_pts:
            j -= 1
        return keys[j][0]

    # plan: runs of packets to decode; jump only when the next start lies beyond the current position
    runs: list[list[int]] = []  # [first packet, last packet] per run
    for i in wanted:
        target = pts_sorted[i]
        start, end = start_of(target), decode_pos[target]
        if runs and start <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    planned = sum(b - a + 1 for a, b in runs)
    sequential = max(decode_pos[pts_sorted[i]] for i in wanted) + 1
    if seek == "auto" and planned > 0.75 * sequential:
        return _decode_sequential(codec, packets, wanted)

    index_of_pts = {p: i for i, p in enumerate(pts_sorted)}
    want = set(wanted)
    out: dict[int, np.ndarray] = {}
    for r, (a, b) in enumerate(runs):
        # feed the run; frames held back by the decoder (B-frames) come out when the run is drained
        for packet in [*packets[a : b + 1], None]:
            for frame in codec.decode(packet):
                i = index_of_pts.get(frame.pts)
                if i is None:
                    raise RuntimeError(f"decoded a frame with unexpected timestamp {frame.pts}")
                if i in want and i not in out:
                    out[i] = _to_rgb(frame)
        if r + 1 < len(runs):
            codec.flush_buffers()
    return out


def count_decodable_frames(path: str | os.PathLike) -> int:
    """Decode every frame of a video and return how many decoded (the ground truth for ``data check``).

    Raises :class:`VideoReadError` if the file cannot be opened or a packet fails to decode.
    """
    path = os.fspath(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        n = 0
        try:
            for _ in container.decode(stream):
                n += 1
        except Exception as e:
            raise VideoReadError(path, f"decoding failed after {n} frames: {e}") from e
        return n
    finally:
        container.close()
