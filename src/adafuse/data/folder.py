"""``data prepare folder``: your own videos -> ``classes.txt``, ``train.txt``, ``val.txt``.

Two inputs:

- **a folder of class sub-folders**: ``ROOT/<class name>/`` holds that class's video files (any depth below
  it) and/or frame folders (a directory holding the first frame file, ``00001.jpg`` by default). Class
  names are the sub-folder names, sorted; label = position in that order. A root whose only sub-folders
  are ``train/`` and ``val/`` (each of class sub-folders) gives the split itself.
- **a CSV file** of ``path,label`` lines (optionally ``path,label,split`` with split ``train`` or ``val``;
  a first line ``path,label[,split]`` is a header): paths relative to ``root`` (default: the CSV's folder)
  or absolute, labels are class names (sorted; numbers sorted numerically).

Without a given split, each class is split on its own (stratified): its videos in path order, shuffled
by a generator seeded from ``(seed, class name)``, the first ``round(val_fraction * n)`` (at least 1 when
the class has 2 videos or more, at most ``n - 1``) go to validation -- the same files and seed give the
same split on any machine, and a class's split does not depend on the other classes. ``val_list`` (a file
of paths, one per line, as they appear in the lists) names the validation videos instead.

Frame counts and damage follow :mod:`adafuse.data.media` (every source is verified, as ``data prepare``
does for the official data sets): damaged or unreadable sources, and CSV paths that do not exist, are left
out of the lists and reported in ``OUT/missing.txt``. Bad input (no class folders, an empty class folder, a
video directly under the root, a malformed CSV or val-list line) raises an error naming the file (and line).
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from adafuse.data.decode import DEFAULT_TEMPLATE
from adafuse.data.errors import ListFormatError
from adafuse.data.lists import VideoRecord, is_video_path, text_lines, write_classes, write_list
from adafuse.data.media import media_kind
from adafuse.data.prepare import PrepareReport, count_or_reason, write_missing

SPLIT_FOLDERS = ("train", "val")


@dataclass(frozen=True)
class Item:
    """One video found: ``path`` relative to the root (or absolute), ``kind`` ``"video"``/``"frames"``,
    its class name, the split it was given (or None) and where it came from (for messages)."""

    path: str
    kind: str
    label: str
    split: str | None
    where: str


def _check_name(path: str) -> None:
    name = os.path.basename(path)
    if "\n" in path or name != name.strip():
        raise ValueError(f"{path}: a name with a newline or leading/trailing spaces cannot be listed; rename it")


def _scan_class(root: str, rel: str, label: str, split: str | None, template: str, start_index: int,
                max_depth: int = 4) -> tuple[list[Item], int]:
    """Videos and frame folders under ``root/rel`` -> (items, number of other files ignored)."""
    items: list[Item] = []
    ignored = 0

    def walk(relpath: str, depth: int) -> None:
        nonlocal ignored
        for e in sorted(os.scandir(os.path.join(root, relpath)), key=lambda e: e.name):
            if e.name.startswith("."):
                continue
            child = f"{relpath}/{e.name}"
            if e.is_dir():
                if os.path.isfile(os.path.join(e.path, template.format(start_index))):
                    _check_name(e.path)
                    items.append(Item(child, "frames", label, split, e.path))
                elif depth < max_depth:
                    walk(child, depth + 1)
            elif is_video_path(e.name):
                _check_name(e.path)
                items.append(Item(child, "video", label, split, e.path))
            else:
                ignored += 1

    walk(rel, 1)
    return items, ignored


def scan_folder(root: str | os.PathLike, template: str = DEFAULT_TEMPLATE,
                start_index: int = 1) -> tuple[list[Item], list[str], list[str]]:
    """``(items, class names, notes)`` of a folder of class sub-folders (see the module docstring)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such directory")

    def subdirs(path: str) -> list[str]:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
        for e in entries:
            if not e.is_dir() and is_video_path(e.name):
                raise ValueError(f"{e.path}: a video directly under {path} has no class; move it into "
                                 f"{path}/<class name>/")
        return [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]

    top = subdirs(root)
    layout = [(s, f"{s}/") for s in SPLIT_FOLDERS] if sorted(top) == sorted(SPLIT_FOLDERS) else [(None, "")]
    items: list[Item] = []
    classes: set[str] = set()
    ignored = 0
    for split, prefix in layout:
        names = subdirs(os.path.join(root, prefix)) if split else top
        if not names:
            raise ValueError(f"{os.path.join(root, prefix)}: no class sub-folders (expected "
                             f"{os.path.join(root, prefix, '<class name>')}/ holding video files or frame folders)")
        for name in names:
            _check_name(os.path.join(root, prefix, name))
            found, skipped = _scan_class(root, f"{prefix}{name}", name, split, template, start_index)
            if not found:
                raise ValueError(f"{os.path.join(root, prefix, name)}: no video files or frame folders in this class "
                                 f"folder (videos end with .mp4, .webm, .avi, .mkv, .mov or .m4v; a frame folder holds "
                                 f"{template.format(start_index)})")
            items += found
            classes.add(name)
            ignored += skipped
    notes = [f"{ignored} other files (not videos, not in a frame folder) were ignored"] if ignored else []
    if layout[0][0]:
        notes.append("split given by the train/ and val/ folders")
    return items, sorted(classes), notes


def read_csv(path: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[list[Item], list[str], str]:
    """``(items, class names, root)`` of a ``path,label[,split]`` CSV (see the module docstring)."""
    path = os.fspath(path)
    root = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such directory (the root of the paths in {path})")
    items: list[Item] = []
    seen: dict[str, int] = {}
    with_split: bool | None = None
    for number, text in text_lines(path):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        row = [x.strip() for x in next(csv.reader([text]))]
        if not items and not seen and [x.lower() for x in row] in (["path", "label"], ["path", "label", "split"]):
            continue  # header
        if len(row) not in (2, 3) or not row[0] or not row[1]:
            raise ListFormatError(path, number, f"expected 'path,label' or 'path,label,split', got {text.strip()!r}")
        if with_split is None:
            with_split = len(row) == 3
        if with_split != (len(row) == 3):
            raise ListFormatError(path, number, f"{len(row)} columns, the first line has {5 - len(row)}: every line "
                                                "needs a split column, or none does (quote a path or label holding a "
                                                "comma)")
        split = row[2] if with_split else None
        if split is not None and split not in SPLIT_FOLDERS:
            raise ListFormatError(path, number, f"split must be train or val, got {split!r}")
        rel = row[0]
        if rel in seen:
            raise ListFormatError(path, number, f"{rel} is listed twice (first at line {seen[rel]})")
        seen[rel] = number
        _check_name(rel)
        full = rel if os.path.isabs(rel) else os.path.join(root, rel)
        items.append(Item(rel, media_kind(full), row[1], split, f"{path}:{number}"))
    if not items:
        raise ListFormatError(path, None, "no 'path,label' lines")
    names = sorted({i.label for i in items})
    if all(n.lstrip("-").isdigit() for n in names):
        names.sort(key=int)
    return items, names, root


def split_items(items: list[Item], val_fraction: float, seed: int) -> tuple[dict[str, str], list[str]]:
    """Stratified deterministic split: ``{path: "train" | "val"}`` and notes (see the module docstring)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    by_class: dict[str, list[str]] = {}
    for item in items:
        by_class.setdefault(item.label, []).append(item.path)
    split: dict[str, str] = {}
    alone = []
    for label, paths in by_class.items():
        paths = sorted(paths)
        random.Random(f"{seed}/{label}").shuffle(paths)
        n = len(paths)
        n_val = min(max(round(val_fraction * n), 1), n - 1)
        if n == 1:
            alone.append(label)
        for i, p in enumerate(paths):
            split[p] = "val" if i < n_val else "train"
    notes = [f"{len(alone)} classes with a single video have no validation video: {', '.join(sorted(alone)[:5])}"
             + (" ..." if len(alone) > 5 else "")] if alone else []
    return split, notes


def read_val_list(path: str | os.PathLike, items: list[Item]) -> dict[str, str]:
    """``{path: split}`` from a file naming the validation videos (one path per line, as in the lists;
    every other video is a training video). A line naming no video found raises, naming ``file:line``."""
    known = {i.path for i in items}
    val = set()
    for number, text in text_lines(path):
        name = text.strip()
        if not name or name.startswith("#"):
            continue
        name = name.removeprefix("./")
        if name not in known:
            raise ListFormatError(path, number, f"{name} is not one of the videos found (paths as in the lists, e.g. "
                                                f"{next(iter(sorted(known)))})")
        val.add(name)
    return {p: "val" if p in val else "train" for p in known}


def prepare_folder(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    val_list: str | os.PathLike | None = None,
    seed: int = 0,
    template: str = DEFAULT_TEMPLATE,
    start_index: int = 1,
    workers: int = 8,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Write ``classes.txt``, ``train.txt``, ``val.txt`` (and ``missing.txt`` when something is left out)
    into ``out_dir`` for ``source``: a folder of class sub-folders, or a ``.csv`` file whose paths are
    relative to ``root`` (default: the CSV's folder). List paths are relative to the folder (or ``root``).
    Returns the :class:`~adafuse.data.prepare.PrepareReport`; ``report.files["root"]`` is the data root."""
    from tqdm import tqdm

    source = os.fspath(source)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source} does not exist")
    if os.path.isdir(source):
        if root is not None:
            raise ValueError("--root is for a CSV input; a folder is its own root")
        items, classes, notes = scan_folder(source, template, start_index)
        data_root, listed_as = source, "found"
    else:
        items, classes, data_root = read_csv(source, root)
        notes, listed_as = [], "listed"
    given = {i.path: i.split for i in items if i.split is not None}
    if val_list is not None:
        if given:
            raise ValueError(f"{source} already gives the split (train/val); --val-list cannot be used with it")
        split = read_val_list(val_list, items)
        notes.append(f"validation videos named by {val_list}")
    elif given:
        split = given
    else:
        split, more = split_items(items, val_fraction, seed)
        notes += more
        notes.append(f"stratified split: {val_fraction:g} of each class for validation, seed {seed}")
    (log or (lambda s: None))(f"counting the frames of {len(items)} videos in {data_root} ...")

    def job(item: Item) -> int | str:
        if os.path.isabs(item.path):
            full_root, rel = os.path.dirname(item.path), os.path.basename(item.path)
        else:
            full_root, rel = data_root, item.path
        if not os.path.exists(os.path.join(full_root, rel)):
            return "not found under the root"
        return count_or_reason(full_root, rel, item.kind, template, start_index)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        counts = list(tqdm(pool.map(job, items), total=len(items), desc="counting frames", unit="video",
                           disable=not progress))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = PrepareReport("folder" if os.path.isdir(source) else "csv", str(out), len(classes), notes=notes,
                           listed_as=listed_as)
    label_of = {name: i for i, name in enumerate(classes)}
    records: dict[str, list[VideoRecord]] = {s: [] for s in SPLIT_FOLDERS}
    for item, n in sorted(zip(items, counts, strict=True), key=lambda x: (label_of[x[0].label], x[0].path)):
        s = split[item.path]
        report.annotated[s] = report.annotated.get(s, 0) + 1
        if isinstance(n, str):
            report.missing.append((s, item.path, n, item.where))
        else:
            records[s].append(VideoRecord(item.path, label_of[item.label], n))
    report.annotated = {s: report.annotated.get(s, 0) for s in SPLIT_FOLDERS}
    report.files["classes"] = str(write_classes(classes, out / "classes.txt"))
    for s in SPLIT_FOLDERS:
        report.files[s] = str(write_list(records[s], out / f"{s}.txt"))
        report.written[s] = len(records[s])
    missing_file = write_missing(out, report.missing)
    if missing_file:
        report.files["missing"] = missing_file
    report.files["root"] = data_root
    for s in SPLIT_FOLDERS:
        empty = [c for c in classes if not any(r.label == label_of[c] for r in records[s])]
        if empty:
            report.notes.append(f"{len(empty)} classes have no {s} video: {', '.join(empty[:5])}"
                                + (" ..." if len(empty) > 5 else ""))
    return report
