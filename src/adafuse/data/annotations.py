"""Readers of the official annotation files of each data set -> classes + labelled video ids.

Each file is found by its official name or, for SthV2 and Jester, by the short names of the current downloads
(``labels.json``/``train.json``/``validation.json``; ``labels.csv``/``train.csv``/``validation.csv``).

- Something-Something V1 (CSV, ``;``-separated): ``something-something-v1-labels.csv`` (one class name per
  line), ``something-something-v1-train.csv`` / ``-validation.csv`` (``<id>;<class name>``). Videos are
  frame folders ``<id>/00001.jpg``.
- Jester: the same layout with ``jester-v1-labels.csv``, ``jester-v1-train.csv``, ``jester-v1-validation.csv``
  (27 classes).
- Something-Something V2 (JSON): ``something-something-v2-labels.json`` maps the template *without*
  brackets (``"Moving something up"``) to the class index as a string; ``-train.json`` / ``-validation.json``
  are lists of ``{"id", "label", "template", "placeholders"}`` where ``template`` has brackets
  (``"Moving [something] up"``). Videos ``<id>.webm``.
- Kinetics-400/600/700 (CSV with a header): ``label,youtube_id,time_start,time_end,split`` (extra columns
  are ignored); a clip is ``<youtube_id>_<start:06d>_<end:06d>.mp4``. Mini-Kinetics-200 is the subset of
  Kinetics-400 whose YouTube ids are listed in two files (train / val, one id per line).

Class order (**Decision**, to match the class indices of released TSM/AdaFuse checkpoints): SthV1 and
Jester classes are sorted alphabetically (as TSM's list-generation scripts do; ``class_order="file"``
keeps the labels file's order); SthV2 uses the indices of its labels file; Kinetics classes are sorted.
Test splits without labels are not read.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from adafuse.data.errors import ListFormatError

DATASETS = ("sthv1", "sthv2", "jester", "kinetics", "minikinetics")
SPLITS = ("train", "val")


@dataclass(frozen=True)
class AnnotatedVideo:
    """One labelled video: ``name`` is what is looked for under the data root (a frame-folder name or a
    video file stem), ``where`` the annotation ``file:line`` it came from."""

    name: str
    label: int
    split: str
    where: str


@dataclass
class Annotations:
    """Class names (index = position) and labelled videos of one data set."""

    dataset: str
    classes: list[str]
    videos: list[AnnotatedVideo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the user should know (dropped rows, ...)

    def split(self, name: str) -> list[AnnotatedVideo]:
        return [v for v in self.videos if v.split == name]


AnnotationPaths = str | os.PathLike | Sequence[str | os.PathLike]


def _files(paths: AnnotationPaths) -> list[Path]:
    """A directory (its files, recursively) or a list of files/directories -> files."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(x for x in p.rglob("*") if x.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"annotation path {p} does not exist")
    return out


def _pick(files: list[Path], names: Sequence[str], what: str, required: bool = True) -> Path | None:
    """The one file called one of ``names`` (the official long name, e.g. ``jester-v1-labels.csv``, may
    also end a longer name; short names like ``labels.csv`` must match exactly)."""
    long_name, *short = names
    found = [f for f in files if f.name.endswith(long_name) or f.name in short]
    looked = " or ".join(names)
    if len(found) > 1:
        raise FileNotFoundError(f"several {what} files ({looked}): {', '.join(str(f) for f in found[:5])}")
    if not found:
        if required:
            raise FileNotFoundError(f"no {what} file among the {len(files)} annotation files given "
                                    f"(looked for {looked})")
        return None
    return found[0]


def _read_lines(path: Path) -> list[tuple[int, str]]:
    with open(path, encoding="utf-8-sig") as f:
        return [(i, line.rstrip("\r\n")) for i, line in enumerate(f, start=1) if line.strip()]


def _read_20bn_csv(
    dataset: str, paths: AnnotationPaths, prefix: str, class_order: Literal["sorted", "file"]
) -> Annotations:
    """SthV1 / Jester: labels CSV + ``<id>;<class>`` split CSVs."""
    files = _files(paths)
    labels_file = _pick(files, (f"{prefix}-labels.csv", "labels.csv"), "labels")
    names = [text.strip() for _, text in _read_lines(labels_file)]
    if len(set(names)) != len(names):
        raise ListFormatError(labels_file, None, "duplicate class names")
    classes = sorted(names) if class_order == "sorted" else names
    index = {name: i for i, name in enumerate(classes)}
    ann = Annotations(dataset, classes)
    for split, stem in (("train", "train"), ("val", "validation")):
        names = (f"{prefix}-{stem}.csv", f"{stem}.csv")
        path = _pick(files, names, f"{split} split", required=False)
        if path is None:
            ann.notes.append(f"no {split} annotation file ({' or '.join(names)}) given: {split} list not written")
            continue
        for line, text in _read_lines(path):
            if ";" not in text:
                raise ListFormatError(path, line, f"expected '<id>;<class name>', got {text!r}")
            vid, name = text.split(";", 1)
            name = name.strip()
            if line == 1 and name not in index and not vid.strip().isdigit():
                continue  # a header line ("video_id;label")
            if name not in index:
                raise ListFormatError(path, line, f"class {name!r} is not in {labels_file.name}")
            ann.videos.append(AnnotatedVideo(vid.strip(), index[name], split, f"{path}:{line}"))
    return ann


def read_sthv1(paths: AnnotationPaths, class_order: Literal["sorted", "file"] = "sorted") -> Annotations:
    """Something-Something V1 annotations (174 classes); see the module docstring."""
    return _read_20bn_csv("sthv1", paths, "something-something-v1", class_order)


def read_jester(paths: AnnotationPaths, class_order: Literal["sorted", "file"] = "sorted") -> Annotations:
    """Jester annotations (27 classes); see the module docstring."""
    return _read_20bn_csv("jester", paths, "jester-v1", class_order)


def read_sthv2(paths: AnnotationPaths) -> Annotations:
    """Something-Something V2 annotations (174 classes, labels-file order); see the module docstring."""
    files = _files(paths)
    labels_file = _pick(files, ("something-something-v2-labels.json", "labels.json"), "labels")
    try:
        mapping = json.loads(labels_file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ListFormatError(labels_file, None, f"not valid JSON: {e}") from e
    by_index: dict[int, str] = {}
    for name, idx in mapping.items():
        try:
            i = int(idx)
        except (TypeError, ValueError) as e:
            raise ListFormatError(labels_file, None, f"class index {idx!r} of {name!r} is not an integer") from e
        if i in by_index:
            raise ListFormatError(labels_file, None, f"class index {i} used twice")
        by_index[i] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise ListFormatError(labels_file, None, "class indices are not 0..K-1")
    classes = [by_index[i] for i in range(len(by_index))]
    index = {name: i for i, name in enumerate(classes)}
    ann = Annotations("sthv2", classes)
    for split, stem in (("train", "train"), ("val", "validation")):
        names = (f"something-something-v2-{stem}.json", f"{stem}.json")
        path = _pick(files, names, f"{split} split", required=False)
        if path is None:
            ann.notes.append(f"no {split} annotation file ({' or '.join(names)}) given: {split} list not written")
            continue
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ListFormatError(path, None, f"not valid JSON: {e}") from e
        if not isinstance(entries, list):
            raise ListFormatError(path, None, "expected a JSON list of video entries")
        for k, entry in enumerate(entries):
            where = f"{path} (entry {k})"
            if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
                raise ListFormatError(path, None, f"entry {k}: expected an object with 'id' and 'template'")
            name = str(entry["template"]).replace("[", "").replace("]", "")
            if name not in index:
                raise ListFormatError(path, None, f"entry {k} (id {entry['id']}): template {name!r} not in labels")
            ann.videos.append(AnnotatedVideo(str(entry["id"]), index[name], split, where))
    return ann


_KINETICS_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
                    "validation": "val"}


def kinetics_clip_name(youtube_id: str, time_start: float | str, time_end: float | str) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>`` (the name of a Kinetics clip file without extension)."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def read_id_list(path: str | os.PathLike) -> set[str]:
    """YouTube ids, one per line (the first whitespace-separated token of each line; ``#`` comments)."""
    ids = set()
    for _, text in _read_lines(Path(path)):
        token = text.split()[0] if text.split() else ""
        if token and not token.startswith("#"):
            ids.add(token)
    return ids


def read_kinetics(
    paths: AnnotationPaths,
    subset_train: str | os.PathLike | Iterable[str] | None = None,
    subset_val: str | os.PathLike | Iterable[str] | None = None,
    dataset: str = "kinetics",
) -> Annotations:
    """Kinetics annotations from CSV files (every ``*.csv`` given; the ``split`` column, or else the file
    name, says train or val; test rows are ignored).

    ``subset_train``/``subset_val``: YouTube-id lists (file or ids) keeping only those videos
    (Mini-Kinetics); the classes are then the sorted labels present in the kept training videos, and
    validation videos of other classes are dropped (with a note).
    """
    files = [f for f in _files(paths) if f.suffix.lower() == ".csv"]
    if not files:
        raise FileNotFoundError(f"no Kinetics CSV files in {paths}")
    subsets = {}
    for split, ids in (("train", subset_train), ("val", subset_val)):
        if ids is None:
            continue
        subsets[split] = read_id_list(ids) if isinstance(ids, (str, os.PathLike)) else set(ids)
    rows: list[tuple[str, str, str, str]] = []  # (name, label, split, where)
    for path in files:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            for col in ("youtube_id", "time_start", "time_end"):
                if col not in header:
                    raise ListFormatError(path, 1, f"missing column {col!r} (header: {header})")
            file_split = next((v for k, v in _KINETICS_SPLITS.items() if k in path.stem.lower()), None)
            for row in reader:
                line = reader.line_num
                split = _KINETICS_SPLITS.get((row.get("split") or "").strip().lower(), None)
                if split is None and not (row.get("split") or "").strip():
                    split = file_split
                label = (row.get("label") or "").strip()
                if split is None or not label:
                    continue  # test rows / unlabelled rows
                ytid = (row.get("youtube_id") or "").strip()
                if split in subsets and ytid not in subsets[split]:
                    continue
                try:
                    name = kinetics_clip_name(ytid, row["time_start"], row["time_end"])
                except (TypeError, ValueError) as e:
                    raise ListFormatError(path, line, f"bad time_start/time_end: {e}") from e
                rows.append((name, label, split, f"{path}:{line}"))
    classes = sorted({label for _, label, split, _ in rows if split == "train"})
    if not classes:
        classes = sorted({label for _, label, _, _ in rows})
    index = {c: i for i, c in enumerate(classes)}
    ann = Annotations(dataset, classes)
    dropped = 0
    seen: set[tuple[str, str]] = set()
    for name, label, split, where in rows:
        if label not in index:
            dropped += 1
            continue
        if (name, split) in seen:
            continue  # the same clip listed in two CSV files
        seen.add((name, split))
        ann.videos.append(AnnotatedVideo(name, index[label], split, where))
    if dropped:
        ann.notes.append(f"{dropped} validation rows have classes absent from the training split; dropped")
    for split, ids in subsets.items():
        got = sum(1 for v in ann.videos if v.split == split)
        if got < len(ids):
            ann.notes.append(f"{split} subset lists {len(ids)} ids; {got} found in the CSV files")
    return ann


def read_annotations(dataset: str, paths: AnnotationPaths, **kwargs) -> Annotations:
    """Dispatch on ``dataset`` (one of :data:`DATASETS`)."""
    if dataset == "sthv1":
        return read_sthv1(paths, **kwargs)
    if dataset == "jester":
        return read_jester(paths, **kwargs)
    if dataset == "sthv2":
        return read_sthv2(paths)
    if dataset == "kinetics":
        return read_kinetics(paths, **kwargs)
    if dataset == "minikinetics":
        if kwargs.get("subset_train") is None or kwargs.get("subset_val") is None:
            raise ValueError("minikinetics needs subset_train and subset_val (YouTube-id list files)")
        return read_kinetics(paths, dataset="minikinetics", **kwargs)
    raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS}")
