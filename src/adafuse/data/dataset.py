"""The video dataset (frame folders or video files, one list file) and its DataLoader factory.

A sample is a dict::

    {"video": float32 (T, 3, H, W)   or (V, T, 3, H, W) for multi-view evaluation,
     "label": int, "id": str (list path without video extension), "index": int (position in the list),
     "source": str (resolved folder or file), "frame_indices": int64 (T,) or (V, T), 0-based}

and a batch (from :func:`collate_videos`) stacks them: ``video`` ``(N, T, 3, H, W)``, ``label`` ``(N,)``,
``index`` ``(N,)``, ``frame_indices`` ``(N, T)``, ``id``/``source`` lists, plus ``num_skipped`` (int).

Bad input is never replaced by other data. With ``on_error="raise"`` (default) an unreadable sample
raises :class:`VideoReadError` naming the file and the list line. With ``on_error="skip"`` the sample
comes back as None, a warning is logged, the collate function drops it, and the batch's
``num_skipped`` says how many were dropped: summing ``batch["num_skipped"]`` over an epoch gives the
total across all workers (``dataset.num_skipped`` only counts the current process). A batch in which
every sample was skipped has ``video`` = None.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from adafuse.data.decode import DEFAULT_TEMPLATE, count_folder_frames, probe_video, read_frame_folder, read_video_frames
from adafuse.data.errors import ListFormatError, VideoReadError
from adafuse.data.lists import ListKind, VideoRecord, read_classes, read_list
from adafuse.data.sampling import FrameSampler
from adafuse.data.transforms import ClipTransform, eval_transform, to_clip, train_transform

log = logging.getLogger(__name__)


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
        seed: seed of the sampling/augmentation generator in the main process (workers are reseeded by
            :func:`build_dataloader`).
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

    def frame_count(self, index: int) -> int:
        """Frames of video ``index``: from the list, else counted (folder) or probed (video), cached."""
        rec = self.records[index]
        if rec.num_frames is not None:
            return rec.num_frames
        if index not in self._counts:
            path = rec.resolve(self.root)
            if rec.is_video:
                self._counts[index] = probe_video(path).num_frames
            else:
                self._counts[index] = count_folder_frames(path, self.template, self.start_index)
        return self._counts[index]

    def _decode(self, rec: VideoRecord, path: str, indices: np.ndarray) -> np.ndarray:
        if rec.is_video:
            return read_video_frames(path, indices, seek=self.video_seek, threads=self.decode_threads)
        return read_frame_folder(path, indices, self.template, self.start_index)

    def load(self, index: int) -> dict[str, Any]:
        """The sample ``index`` (always raises on bad input, whatever ``on_error`` says)."""
        rec = self.records[index]
        path = rec.resolve(self.root)
        n = self.frame_count(index)
        if n < 1:
            raise VideoReadError(path, f"has {n} frames")
        clips = self.sampler(n, self._rng)  # (C, T)
        try:
            frames = self._decode(rec, path, clips.reshape(-1))
        except VideoReadError as e:
            if rec.num_frames is not None:
                raise VideoReadError(e.source, f"{e.reason} (the list says {n} frames)") from e
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

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        rec = self.records[index]
        try:
            return self.load(index)
        except VideoReadError as e:
            err = VideoReadError(e.source or rec.resolve(self.root), e.reason, rec.list_file, rec.line)
            if self.on_error == "raise":
                raise err from e
            self.num_skipped += 1
            log.warning("skipping sample %d: %s", index, err)
            return None


def collate_videos(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack samples into a batch, dropping None (skipped) samples; ``num_skipped`` counts them.

    Returns ``{"video": (N, T, 3, H, W) or (N, V, T, 3, H, W) | None, "label": (N,), "index": (N,),
    "frame_indices": (N, T) or (N, V, T), "id": [str], "source": [str], "num_skipped": int}``.
    """
    kept = [s for s in batch if s is not None]
    out: dict[str, Any] = {"num_skipped": len(batch) - len(kept)}
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


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seeds ``random``, ``numpy`` and the dataset's generator from the
    worker's torch seed (itself derived from the loader's seeded generator), so runs repeat exactly."""
    info = torch.utils.data.get_worker_info()
    seed = info.seed if info is not None else torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    dataset = info.dataset if info is not None else None
    if dataset is not None and hasattr(dataset, "reseed"):
        dataset.reseed(seed)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = True,
    distributed: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader for a :class:`VideoDataset` (or any dataset of sample dicts).

    ``distributed``: a :class:`DistributedSampler` (needs an initialised process group; call
    :func:`set_epoch` every epoch so shuffling changes). Workers are persistent and seeded from ``seed``
    (and the rank, so ranks augment differently); ``pin_memory`` defaults to CUDA availability.
    The collate function is :func:`collate_videos` (drops skipped samples, reports ``num_skipped``).
    """
    rank = 0
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        rank = sampler.rank
    generator = torch.Generator()
    generator.manual_seed(seed + 1_000_003 * rank)
    if num_workers == 0 and hasattr(dataset, "reseed"):
        dataset.reseed(seed + 1_000_003 * rank)
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = True
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_videos,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=generator,
        **kwargs,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a distributed sampler which epoch it is (no-op for other samplers)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
