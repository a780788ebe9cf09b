"""Data for the engine: datasets from the config. The loader, :class:`EpochSampler` and :class:`SeededClips`
live in :mod:`adafuse.data.loader` (re-exported here); their order is a pure function of ``(seed, epoch)``
so that training can stop anywhere and resume exactly.

* :class:`EpochSampler` — the epoch's permutation comes from ``(seed, epoch)``, is padded to a multiple of
  the world size and sharded by rank; ``start`` skips the batches an interrupted epoch already consumed.
  It yields ``(epoch, index)`` keys.
* :class:`SeededClips` — wraps a :class:`~adafuse.data.dataset.VideoDataset`; for key ``(epoch, index)`` it
  reseeds the dataset's sampling/augmentation generator from ``(seed, epoch, index)`` before loading, so a
  clip's frames and crop depend on neither the worker, the number of workers or processes, nor on where a
  run was resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adafuse.config import Config
from adafuse.data.loader import EpochSampler, SeededClips, build_loader, sample_seed

__all__ = ["EpochSampler", "SeededClips", "build_dataset", "build_loader", "check_num_classes", "resolve_classes",
           "sample_seed"]


def resolve_classes(cfg: Config) -> list[str] | None:
    """Class names from ``data.classes``, else ``classes.txt`` next to the training (or validation) list."""
    from adafuse.data.lists import read_classes

    if cfg.data.classes:
        path = Path(cfg.data.classes)
        if not path.is_file():
            raise FileNotFoundError(f"data.classes: no such file {path}")
        return read_classes(path)
    for lst in (cfg.data.train_list, cfg.data.val_list):
        if lst:
            candidate = Path(lst).resolve().parent / "classes.txt"
            if candidate.is_file():
                return read_classes(candidate)
    return None


def check_num_classes(cfg: Config, class_names: list[str] | None) -> int:
    """The classifier size, checking the config against the class list (an error if they disagree)."""
    n_cfg = cfg.model.num_classes
    if class_names is None:
        if n_cfg is None:
            raise ValueError("the number of classes is unknown: set model.num_classes or give data.classes "
                             "(a classes.txt with one name per line)")
        return n_cfg
    if n_cfg is not None and n_cfg != len(class_names):
        src = cfg.data.classes or "classes.txt next to the list file"
        raise ValueError(f"model.num_classes={n_cfg} but {src} lists {len(class_names)} classes")
    return len(class_names)


def build_dataset(cfg: Config, split: str, num_classes: int, class_names: list[str] | None,
                  input_spec: Any) -> Any:
    """The :class:`~adafuse.data.dataset.VideoDataset` of ``split`` (``train`` or ``val``) from the config,
    normalised as ``input_spec`` says (the model's preprocessing)."""
    from adafuse.data.dataset import VideoDataset
    from adafuse.data.transforms import eval_transform, train_transform

    d = cfg.data
    list_file = d.train_list if split == "train" else d.val_list
    if not list_file:
        raise ValueError(f"data.{split}_list is not set")
    if not Path(list_file).is_file():
        raise FileNotFoundError(f"data.{split}_list: no such file {list_file}")
    train = split == "train"
    if train:
        transform = train_transform(d.input_size, d.scales, d.flip, [tuple(p) for p in d.flip_label_pairs] or None,
                                    normalize=input_spec)
    else:
        transform = eval_transform(d.input_size, d.scale_size, three_crop=cfg.eval.three_crop,
                                   normalize=input_spec)
    return VideoDataset(
        list_file, d.root or None, num_frames=cfg.model.num_frames, train=train, sampling=d.sampling,
        stride=d.dense_stride, num_clips=1 if train else cfg.eval.num_clips, transform=transform,
        template=d.frame_template, start_index=d.frame_start, kind=d.list_kind, on_error=d.on_error,
        num_classes=num_classes, classes=class_names, seed=cfg.run.seed,
    )
