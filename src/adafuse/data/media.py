"""One media source: a video file or a frame folder, opened by path, with one definition of its frames.

Every part of the toolkit that reads videos (the dataset, ``data check``, ``data prepare``, ``data extract``,
``adafuse predict`` and the report) goes through :func:`open_source`, so they all agree on:

- **which kind a path is** (:func:`media_kind`): a path with a video extension, or any existing file, is a
  video file; anything else is a frame folder;
- **how many frames it has** (:attr:`MediaSource.num_frames`): for a video file the count the container
  declares (its frame count, or else its declared duration x frame rate, rounded); for a frame folder the
  highest frame number present (``template.format(start_index + n - 1)``);
- **when it is damaged**: a video whose packets stop before the declared count is *truncated*, a folder
  with a missing frame file below its highest frame has a *gap*; both are a :class:`VideoReadError` naming
  the file (``kind`` ``"truncated"`` / ``"gap"``), never a silently shorter clip. Frames of different sizes
  (``kind="size"``) are found by :meth:`MediaSource.verify` with ``decode=True`` and by any read that
  touches them.

Frames are uint8 ``(H, W, 3)`` RGB; indices are 0-based in presentation order (frame ``i`` of a video is
the frame ``data extract`` writes as ``template.format(i + start_index)``).
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Literal

import numpy as np
from PIL import Image

from adafuse.data.decode import (
    DEFAULT_TEMPLATE,
    _open_rgb,
    count_packets,
    declared_frames,
    frame_path,
    open_video,
    read_video_frames,
)
from adafuse.data.errors import VideoReadError
from adafuse.data.lists import is_video_path

MediaKind = Literal["video", "frames"]


def media_kind(path: str | os.PathLike) -> MediaKind:
    """``"video"`` for a path with a video extension or an existing file, else ``"frames"`` (a folder)."""
    return "video" if is_video_path(path) or os.path.isfile(path) else "frames"


def open_source(
    path: str | os.PathLike, template: str = DEFAULT_TEMPLATE, start_index: int = 1, kind: MediaKind | None = None
) -> MediaSource:
    """The :class:`MediaSource` of ``path`` (``kind`` default: :func:`media_kind`). Opening is lazy: nothing
    is read until a property or method needs it."""
    path = os.fspath(path)
    if (kind or media_kind(path)) == "video":
        return VideoSource(path)
    return FrameFolder(path, template, start_index)


class MediaSource:
    """A video file or a frame folder (see the module docstring). Subclasses: :class:`VideoSource`,
    :class:`FrameFolder`."""

    path: str
    kind: MediaKind

    @property
    def num_frames(self) -> int:  # pragma: no cover - abstract
        """Frames by the definition of the module docstring (raises :class:`VideoReadError`)."""
        raise NotImplementedError

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Frames ``indices`` (0-based, any order, duplicates allowed) -> uint8 ``(T, H, W, 3)``.

        Raises :class:`VideoReadError` if an index is outside ``[0, num_frames)``, the source is truncated
        or has a gap, or a frame cannot be decoded."""
        raise NotImplementedError

    def iter_frames(self, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:  # pragma: no cover - abstract
        """``(index, uint8 (H, W, 3))`` for frames ``0, every, 2 * every, ...``, decoded one at a time; raises
        :class:`VideoReadError` when the source ends before ``num_frames``."""
        raise NotImplementedError

    def verify(self, decode: bool = False) -> int:  # pragma: no cover - abstract
        """Check the source holds all its frames and return ``num_frames``; ``decode=True`` decodes every
        frame and checks they have one size. Raises :class:`VideoReadError` (``kind`` says what is wrong)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------------ video files


class VideoSource(MediaSource):
    """A video file read with PyAV (see :mod:`adafuse.data.decode` for the seeking strategy)."""

    kind: MediaKind = "video"

    def __init__(self, path: str, seek: Literal["auto", "always", "never"] = "auto", threads: int = 1) -> None:
        self.path = path
        self.seek = seek
        self.threads = threads

    @cached_property
    def num_frames(self) -> int:
        if not os.path.exists(self.path):
            raise VideoReadError(self.path, "video file does not exist", kind="missing")
        container = open_video(self.path)
        try:
            n = declared_frames(container, self.path)
        finally:
            container.close()
        if n < 1:
            raise VideoReadError(self.path, "the container declares no frames", kind="empty")
        return n

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return read_video_frames(self.path, indices, seek=self.seek, threads=self.threads)

    def _decode_all(self, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Decode sequentially; frames past the declared count are not yielded (one definition)."""
        n = self.num_frames
        container = open_video(self.path)
        got = 0
        try:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = self.threads
            try:
                for frame in container.decode(stream):
                    if got < n and got % every == 0:
                        yield got, frame.to_ndarray(format="rgb24")
                    got += 1
            except VideoReadError:
                raise
            except Exception as e:
                raise VideoReadError(self.path, f"decoding failed after {got} of {n} frames (truncated or corrupt?): "
                                                f"{e}", kind="truncated" if got else "unreadable") from e
        finally:
            container.close()
        if got < n:
            raise VideoReadError(self.path, f"truncated: the container declares {n} frames, only {got} decode",
                                 kind="truncated")

    def iter_frames(self, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return self._decode_all(every)

    def verify(self, decode: bool = False) -> int:
        n = self.num_frames
        if not decode:
            count_packets(self.path, expected=n)
            return n
        shape = None
        for i, frame in self._decode_all():
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise VideoReadError(self.path, f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 "
                                                f"{shape[1]}x{shape[0]}", kind="size")
        return n


# --------------------------------------------------------------------------------------- frame folders


def _template_parts(template: str) -> tuple[str, str]:
    """``"img_{:05d}.jpg"`` -> ``("img_", ".jpg")`` (the text around the one replacement field)."""
    parts = list(string.Formatter().parse(template))
    fields = [p for p in parts if p[1] is not None]
    if len(fields) != 1:
        raise ValueError(f"frame template {template!r} must have exactly one {{}} field")
    prefix, suffix, seen = "", "", False
    for literal, field_name, _, _ in parts:
        if seen:
            suffix += literal
        else:
            prefix += literal
        if field_name is not None:
            seen = True
    return prefix, suffix


class FrameFolder(MediaSource):
    """A folder of frame images ``template.format(start_index + i)`` for frame ``i``."""

    kind: MediaKind = "frames"

    def __init__(self, path: str, template: str = DEFAULT_TEMPLATE, start_index: int = 1) -> None:
        self.path = path
        self.template = template
        self.start_index = start_index

    @cached_property
    def numbers(self) -> set[int]:
        """Frame numbers present (as written in the file names, i.e. ``start_index``-based)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError as e:
            raise VideoReadError(self.path, "frame folder does not exist", kind="missing") from e
        except OSError as e:
            raise VideoReadError(self.path, f"cannot list frame folder ({e.strerror or e})") from e
        prefix, suffix = _template_parts(self.template)
        out = set()
        for name in names:
            if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
                continue
            middle = name[len(prefix) : len(name) - len(suffix)]
            if middle.isdigit() and self.template.format(int(middle)) == name:
                out.add(int(middle))
        return out

    @cached_property
    def num_frames(self) -> int:
        numbers = {k for k in self.numbers if k >= self.start_index}
        if not numbers:
            raise VideoReadError(self.path, f"frame folder has no frame {self.template.format(self.start_index)} "
                                            f"(template {self.template!r})", kind="empty")
        return max(numbers) - self.start_index + 1

    def missing(self) -> list[int]:
        """0-based indices below ``num_frames`` whose file is missing."""
        n = self.num_frames
        return [i for i in range(n) if i + self.start_index not in self.numbers]

    def check_gaps(self) -> None:
        """Raise :class:`VideoReadError` (``kind="gap"``) naming the first missing frame file, if any."""
        gaps = self.missing()
        if gaps:
            first = frame_path(self.path, gaps[0], self.template, self.start_index)
            raise VideoReadError(first, f"gap: frame {gaps[0]} (0-based) is missing; the folder has frames up to "
                                        f"{self.template.format(self.num_frames - 1 + self.start_index)} "
                                        f"({len(gaps)} missing)", kind="gap")

    def _frame(self, i: int) -> np.ndarray:
        path = frame_path(self.path, i, self.template, self.start_index)
        try:
            return _open_rgb(path)
        except FileNotFoundError as e:
            raise VideoReadError(path, f"frame {i} (0-based) is missing", kind="gap") from e
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise VideoReadError(path, f"cannot decode frame image: {e}") from e

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        n = self.num_frames
        self.check_gaps()
        wanted = sorted({int(x) for x in indices})
        if not wanted:
            raise ValueError("no frame indices requested")
        if wanted[0] < 0 or wanted[-1] >= n:
            bad = wanted[0] if wanted[0] < 0 else wanted[-1]
            raise VideoReadError(frame_path(self.path, bad, self.template, self.start_index),
                                 f"frame {bad} (0-based) requested but the folder has {n} frames", kind="short")
        decoded = {i: self._frame(i) for i in wanted}
        shapes = {a.shape for a in decoded.values()}
        if len(shapes) > 1:
            raise VideoReadError(self.path, f"frames have different sizes {sorted(shapes)}", kind="size")
        return np.stack([decoded[int(i)] for i in indices])

    def iter_frames(self, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        n = self.num_frames
        self.check_gaps()
        for i in range(0, n, every):
            yield i, self._frame(i)

    def verify(self, decode: bool = False) -> int:
        n = self.num_frames
        self.check_gaps()
        to_check = range(n) if decode else sorted({0, n - 1})
        size = None
        for i in to_check:
            path = frame_path(self.path, i, self.template, self.start_index)
            if decode:
                frame = self._frame(i)
                this = (frame.shape[1], frame.shape[0])
            else:
                try:
                    with Image.open(path) as img:
                        this = img.size
                        img.verify()
                except (OSError, ValueError, Image.DecompressionBombError) as e:
                    raise VideoReadError(path, f"cannot decode frame image: {e}") from e
            if size is None:
                size = this
            elif this != size:
                raise VideoReadError(path, f"frame {i} is {this[0]}x{this[1]}, frame 0 is {size[0]}x{size[1]} "
                                           "(frames of a folder must have one size)", kind="size")
        return n


__all__ = ["FrameFolder", "MediaSource", "VideoSource", "media_kind", "open_source"]
