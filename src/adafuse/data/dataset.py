"""The video dataset (frame folders or video files, one list file) and its collate function (the DataLoader
is :func:`adafuse.data.loader.build_loader`).

A sample is a dict::

    {"video": float32 (T, 3, H, W)   or (V, T, 3, H, W) for multi-view evaluation,
     "label": int, "id": str (list path without video extension), "index": int (position in the list),
     "source": str (resolved folder or file), "frame_indices": int64 (T,) or (V, T), 0-based}

and a batch (from :func:`collate_videos`) stacks them: ``video`` ``(N, T, 3, H, W)``, ``label`` ``(N,)``,
``index`` ``(N,)``, ``frame_indices`` ``(N, T)``, ``id``/``source`` lists, plus ``num_skipped`` (int) and
``skipped`` (list positions of the skipped samples).

Sources are read through :func:`adafuse.data.media.open_source`, so a truncated video or a frame folder
with a gap is an error even when the sampled frames happen to exist. Bad input is never replaced by other
data. With ``on_error="raise"`` (default) an unreadable sample raises :class:`VideoReadError` naming the
file and the list line. With ``on_error="skip"`` the sample comes back as a :class:`SkippedSample`, a
warning is logged, the collate function drops it, and the batch's ``num_skipped`` says how many were
dropped: summing ``batch["num_skipped"]`` over an epoch gives the total across all workers
(``dataset.num_skipped`` only counts the current process). A batch in which every sample was skipped has
``video`` = None.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from adafuse.data.decode import DEFAULT_TEMPLATE
from adafuse.data.errors import ListFormatError, VideoReadError
from adafuse.data.lists import ListKind, VideoRecord, read_classes, read_list
from adafuse.data.media import MediaSource, VideoSource, open_source
from adafuse.data.sampling import FrameSampler
from adafuse.data.transforms import ClipTransform, eval_transform, to_clip, train_transform

log = logging.getLogger(__name__)


class SkippedSample(NamedTuple):
    """What ``dataset[i]`` returns for an unreadable sample with ``on_error="skip"``."""

    index: int
    reason: str


class VideoDataset(Dataset):
    """Clips from a list of frame folders and/or video files.

    Args:
        source: a list file (see :mod:`adafuse.data.lists`) or a sequence of :class:`VideoRecord`.
        root: directory the list paths are relative to (default: the list file's directory).
        num_frames: ``T``, frames per clip.
        train: random sampling + ``train_transform`` by default; False: deterministic sampling.
        sampling: ``"tsn"`` (segments, the paper) or ``"dense"`` (``stride`` apart).
        stride: frame step of dense sampling.
        num_clips: clips per video in evaluation (multi-clip testing); views are clip-major.
        transform: a :class:`ClipTransform` (default ``train_transform(224)`` without flip, or
            ``eval_transform(224)``); may add crop views (``three_crop``).
        template, start_index: frame file names in a folder: ``template.format(i + start_index)``.
        kind: how to parse the list (``"auto"``, ``"frames"``, ``"video"``).
        on_error: ``"raise"`` or ``"skip"`` (see the module docstring).
        num_classes: if given, labels outside ``[0, num_classes)`` raise :class:`ListFormatError`.
        classes: class names, or a ``classes.txt`` path; default: ``classes.txt`` next to the list if any.
        seed: seed of the sampling/augmentation generator (:class:`adafuse.data.loader.SeededClips` reseeds it
            per clip).
        decode_threads: threads per video decoder; video_seek: see :func:`read_video_frames`.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[VideoRecord],
        root: str | os.PathLike | None = None,
        *,
        num_frames: int = 8,
        train: bool = True,
        sampling: Literal["tsn", "dense"] = "tsn",
        stride: int = 8,
        num_clips: int = 1,
        transform: ClipTransform | None = None,
        template: str = DEFAULT_TEMPLATE,
        start_index: int = 1,
        kind: ListKind = "auto",
        on_error: Literal["raise", "skip"] = "raise",
        num_classes: int | None = None,
        classes: str | os.PathLike | Sequence[str] | None = None,
        seed: int | None = 0,
        decode_threads: int = 1,
        video_seek: Literal["auto", "always", "never"] = "auto",
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if isinstance(source, (str, os.PathLike)):
            self.list_file: str | None = os.fspath(source)
            self.records = read_list(source, kind)
            default_root = os.path.dirname(os.path.abspath(self.list_file))
            default_classes = os.path.join(default_root, "classes.txt")
        else:
            self.list_file = None
            self.records = list(source)
            default_root, default_classes = None, None
        self.root = os.fspath(root) if root is not None else default_root
        if isinstance(classes, (str, os.PathLike)):
            self.classes: list[str] | None = read_classes(classes)
        elif classes is not None:
            self.classes = list(classes)
        elif default_classes is not None and os.path.isfile(default_classes):
            self.classes = read_classes(default_classes)
        else:
            self.classes = None
        if num_classes is None and classes is not None and self.classes is not None:
            num_classes = len(self.classes)
        self.num_classes = num_classes
        if num_classes is not None:
            for r in self.records:
                if not 0 <= r.label < num_classes:
                    raise ListFormatError(r.list_file, r.line, f"label {r.label} outside [0, {num_classes})")
        self.sampler = FrameSampler(num_frames, sampling, train, num_clips, stride)
        self.train = train
        if transform is None:
            transform = train_transform(224) if train else eval_transform(224)
        self.transform = transform
        self.template = template
        self.start_index = start_index
        self.on_error = on_error
        self.seed = seed
        self.decode_threads = decode_threads
        self.video_seek = video_seek
        self.num_skipped = 0  # in this process only; sum batch["num_skipped"] for the total
        self._rng = np.random.default_rng(seed)
        self._counts: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_frames(self) -> int:
        return self.sampler.num_frames

    def reseed(self, seed: int) -> None:
        """Restart the sampling/augmentation generator (called in each DataLoader worker)."""
        self._rng = np.random.default_rng(seed)

    def source(self, index: int) -> MediaSource:
        """The :class:`~adafuse.data.media.MediaSource` of video ``index``."""
        src = open_source(self.records[index].resolve(self.root), self.template, self.start_index)
        if isinstance(src, VideoSource):
            src.seek, src.threads = self.video_seek, self.decode_threads
        return src

    def frame_count(self, index: int) -> int:
        """Frames of video ``index``: from the list, else the source's count (:mod:`adafuse.data.media`), cached."""
        rec = self.records[index]
        if rec.num_frames is not None:
            return rec.num_frames
        if index not in self._counts:
            self._counts[index] = self.source(index).num_frames
        return self._counts[index]

    def load(self, index: int) -> dict[str, Any]:
        """The sample ``index`` (always raises on bad input, whatever ``on_error`` says)."""
        rec = self.records[index]
        path = rec.resolve(self.root)
        n = self.frame_count(index)
        if n < 1:
            raise VideoReadError(path, f"has {n} frames")
        clips = self.sampler(n, self._rng)  # (C, T)
        try:
            frames = self.source(index).read(clips.reshape(-1))
        except VideoReadError as e:
            if rec.num_frames is not None:
                raise VideoReadError(e.source, f"{e.reason} (the list says {n} frames)", kind=e.kind) from e
            raise
        frames = frames.reshape(*clips.shape, *frames.shape[1:])  # (C, T, H, W, 3)
        label = rec.label
        views = []
        for c in range(clips.shape[0]):
            video, label_c = self.transform.apply(to_clip(frames[c]), rec.label, self._rng)
            views.append(video.reshape(-1, *video.shape[-4:]))  # (views, T, 3, H, W)
            if c == 0:
                label = label_c
        video = torch.cat(views)  # (V, T, 3, H, W), clip-major
        per_clip = video.shape[0] // clips.shape[0]
        frame_indices = torch.from_numpy(clips).repeat_interleave(per_clip, dim=0)
        if video.shape[0] == 1:
            video, frame_indices = video[0], frame_indices[0]
        return {
            "video": video,
            "label": int(label),
            "id": rec.id,
            "index": index,
            "source": path,
            "frame_indices": frame_indices,
        }

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedSample:
        rec = self.records[index]
        try:
            return self.load(index)
        except VideoReadError as e:
            err = VideoReadError(e.source or rec.resolve(self.root), e.reason, rec.list_file, rec.line, kind=e.kind)
            if self.on_error == "raise":
                raise err from e
            self.num_skipped += 1
            log.warning("skipping sample %d: %s", index, err)
            return SkippedSample(index, str(err))


def collate_videos(batch: list[dict[str, Any] | SkippedSample | None]) -> dict[str, Any]:
    """Stack samples into a batch, dropping skipped samples (:class:`SkippedSample` or None); ``num_skipped``
    counts them and ``skipped`` lists the positions of those that carry one.

    Returns ``{"video": (N, T, 3, H, W) or (N, V, T, 3, H, W) | None, "label": (N,), "index": (N,),
    "frame_indices": (N, T) or (N, V, T), "id": [str], "source": [str], "num_skipped": int,
    "skipped": [int]}``.
    """
    kept = [s for s in batch if isinstance(s, dict)]
    out: dict[str, Any] = {"num_skipped": len(batch) - len(kept),
                           "skipped": [s.index for s in batch if isinstance(s, SkippedSample)]}
    if not kept:
        out.update(video=None, label=None, index=None, frame_indices=None, id=[], source=[])
        return out
    out["video"] = torch.stack([s["video"] for s in kept])
    out["label"] = torch.tensor([s["label"] for s in kept], dtype=torch.int64)
    out["index"] = torch.tensor([s["index"] for s in kept], dtype=torch.int64)
    out["frame_indices"] = torch.stack([s["frame_indices"] for s in kept])
    out["id"] = [s["id"] for s in kept]
    out["source"] = [s["source"] for s in kept]
    return out
