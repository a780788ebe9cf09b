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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adafuse.config import Config
from adafuse.data.loader import EpochSampler, SeededClips, build_loader, sample_seed
from adafuse.data.preprocessing import Preprocessing

__all__ = ["EpochSampler", "SeededClips", "build_dataset", "build_loader", "check_inputs", "check_num_classes",
           "resolve_classes", "sample_seed"]

PROBED_ENTRIES = 3  # list entries looked up on disk by check_inputs (cheap: no decoding)


def check_inputs(cfg: Config, required: Sequence[str] = ("train",), optional: Sequence[str] = ("val",),
                 pretrained: bool = True, probe: int = PROBED_ENTRIES) -> None:
    """Every input file of a run checked before anything starts (no model built, no worker started).

    Checks ``data.root`` (a directory, when set), the list files of the ``required`` splits (set and
    existing) and of the ``optional`` ones (existing, when set), ``data.classes`` (when set),
    ``model.pretrained`` (when set and ``pretrained``), and that the first ``probe`` entries of each list
    exist under the root (a frame folder also needs its first frame file ``data.frame_template``): a wrong
    ``data.root`` is caught here rather than inside a DataLoader worker. With ``data.on_error=skip`` only
    all ``probe`` entries missing is an error (a few missing videos are what ``skip`` is for).

    Raises ``FileNotFoundError`` (``ValueError`` for an unset required list) with one line naming the config
    key and the file.
    """
    from adafuse.data.errors import ListFormatError
    from adafuse.data.lists import iter_list_lines

    d = cfg.data
    if d.root and not os.path.isdir(d.root):
        raise FileNotFoundError(f"data.root: no such directory {d.root}")
    lists = []
    for split in (*required, *optional):
        key, value = f"data.{split}_list", getattr(d, f"{split}_list")
        if not value:
            if split in required:
                raise ValueError(f"{key} is not set")
            continue
        if not os.path.isfile(value):
            raise FileNotFoundError(f"{key}: no such file {value}")
        lists.append((key, value))
    if d.classes and not os.path.isfile(d.classes):
        raise FileNotFoundError(f"data.classes: no such file {d.classes}")
    if pretrained and cfg.model.pretrained and not os.path.isfile(cfg.model.pretrained):
        raise FileNotFoundError(f"model.pretrained: no such file {cfg.model.pretrained} (the backbone weights to "
                                "start from: an ImageNet file to download first, or an earlier run's checkpoint; "
                                "model.pretrained=null trains from scratch)")
    for key, list_file in lists:
        root = d.root or os.path.dirname(os.path.abspath(list_file))
        problems = []
        for _, rec in iter_list_lines(list_file, d.list_kind):
            if isinstance(rec, ListFormatError):
                raise rec
            problems.append(_entry_problem(rec, root, d.frame_template, d.frame_start))
            if len(problems) == probe:
                break
        found = [p for p in problems if p is None]
        bad = next((p for p in problems if p is not None), None)
        if bad is not None and (d.on_error == "raise" or not found):
            relative = f"data.root={d.root}" if d.root else "the list file's directory (data.root is empty)"
            raise FileNotFoundError(f"{bad} (paths in {key} are relative to {relative})")


def _entry_problem(rec: Any, root: str, template: str, start: int) -> str | None:
    """None if the list entry ``rec`` exists under ``root``, else one line naming the file and list line."""
    from adafuse.data.errors import where
    from adafuse.data.lists import is_video_path

    path = rec.resolve(root)
    listed = f"listed at {where(rec.list_file, rec.line)}"
    if is_video_path(path) or os.path.isfile(path):
        return None if os.path.isfile(path) else f"{path} not found ({listed})"
    if not os.path.isdir(path):
        return f"{path} not found ({listed})"
    first = os.path.join(path, template.format(start))
    return None if os.path.isfile(first) else \
        f"{first} not found: frame folder without its first frame (data.frame_template, data.frame_start; {listed})"


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
                  input_spec: Any, preprocessing: Preprocessing | None = None) -> Any:
    """The :class:`~adafuse.data.dataset.VideoDataset` of ``split`` (``train`` or ``val``) from the config,
    normalised as ``input_spec`` says (the model's preprocessing). ``val`` samples and transforms as
    ``preprocessing`` says (default :meth:`Preprocessing.from_config` of ``cfg`` and ``input_spec``: the rule
    ``adafuse predict`` follows too), with ``eval.num_clips``/``eval.three_crop`` views on top."""
    from adafuse.data.dataset import VideoDataset
    from adafuse.data.transforms import train_transform

    d = cfg.data
    list_file = d.train_list if split == "train" else d.val_list
    if not list_file:
        raise ValueError(f"data.{split}_list is not set")
    if not Path(list_file).is_file():
        raise FileNotFoundError(f"data.{split}_list: no such file {list_file}")
    train = split == "train"
    num_frames, sampling, stride = cfg.model.num_frames, d.sampling, d.dense_stride
    if train:
        transform = train_transform(d.input_size, d.scales, d.flip, [tuple(p) for p in d.flip_label_pairs] or None,
                                    normalize=input_spec)
    else:
        pre = preprocessing or Preprocessing.from_config(cfg, input_spec)
        transform = pre.transform(three_crop=cfg.eval.three_crop)
        num_frames, sampling, stride = pre.num_frames, pre.sampling, pre.dense_stride
    return VideoDataset(
        list_file, d.root or None, num_frames=num_frames, train=train, sampling=sampling,
        stride=stride, num_clips=1 if train else cfg.eval.num_clips, transform=transform,
        template=d.frame_template, start_index=d.frame_start, kind=d.list_kind, on_error=d.on_error,
        num_classes=num_classes, classes=class_names, seed=cfg.run.seed,
    )
