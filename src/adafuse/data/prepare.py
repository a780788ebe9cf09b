"""``data prepare``: official annotations + a data root -> ``train.txt``, ``val.txt``, ``classes.txt``.

The root is scanned once for the annotated videos, as frame folders named ``<name>`` or video files
``<name>.<ext>`` at any depth up to ``max_depth`` (so ``root/<id>/``, ``root/<id>.webm``,
``root/train/<label>/<clip>.mp4`` all work). Frame counts follow the one definition of
:mod:`adafuse.data.media` (highest frame number of a folder; declared count of a video), and every source
is checked for damage on the way (a folder with a gap, a video whose packets stop before its declared
count). Paths in the lists are relative to the root. Videos that are missing, unreadable or damaged are
left out of the lists **and reported** (never listed with a shorter count): counts and the first few on
the console, all of them in ``OUT/missing.txt`` (tab-separated ``<split> <name> <reason> <annotation
file:line>``; the reason starts with its kind: ``truncated:``, ``gap:``, ``unreadable:``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from adafuse.data.annotations import SPLITS, AnnotatedVideo, Annotations, read_annotations
from adafuse.data.decode import DEFAULT_TEMPLATE
from adafuse.data.errors import VideoReadError
from adafuse.data.lists import VIDEO_EXTENSIONS, VideoRecord, write_classes, write_list
from adafuse.data.media import open_source

Found = tuple[str, str]  # (path relative to root, "frames" or "video")


def index_root(root: str | os.PathLike, names: set[str], max_depth: int = 3) -> dict[str, dict[str, str]]:
    """Find ``names`` under ``root``: ``{name: {"frames": relpath, "video": relpath}}`` (either key may be
    missing). A directory whose name is wanted is a frame folder and is not entered; a file whose stem is
    wanted and whose extension is a video extension is a video."""
    root = os.fspath(root)
    found: dict[str, dict[str, str]] = {}

    def walk(path: str, rel: str, depth: int) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        subdirs = []
        for e in entries:
            relpath = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir():
                if e.name in names:
                    found.setdefault(e.name, {}).setdefault("frames", relpath)
                elif depth < max_depth and not e.name.startswith("."):
                    subdirs.append((e.path, relpath))
            else:
                stem, ext = os.path.splitext(e.name)
                if ext.lower() in VIDEO_EXTENSIONS and stem in names:
                    found.setdefault(stem, {}).setdefault("video", relpath)
        for p, r in subdirs:
            walk(p, r, depth + 1)

    walk(root, "", 0)
    return found


@dataclass
class PrepareReport:
    """What ``prepare`` wrote and what it could not find."""

    dataset: str
    out_dir: str
    num_classes: int
    written: dict[str, int] = field(default_factory=dict)  # split -> lines written
    annotated: dict[str, int] = field(default_factory=dict)  # split -> videos in the annotations
    missing: list[tuple[str, str, str, str]] = field(default_factory=list)  # (split, name, reason, where)
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    listed_as: str = "annotated"  # what the per-split totals count: "annotated" videos, or videos "found"

    def summary(self, first: int = 5) -> str:
        lines = [f"{self.dataset}: {self.num_classes} classes -> {self.out_dir}"]
        for split in self.annotated:
            miss = sum(1 for m in self.missing if m[0] == split)
            lines.append(
                f"  {split}: {self.written.get(split, 0)} videos written, "
                f"{miss} of {self.annotated[split]} {self.listed_as} videos missing, unreadable or damaged"
            )
        if self.missing:
            lines.append(f"  first {min(first, len(self.missing))} of {len(self.missing)} missing/unreadable/damaged "
                         f"(all in {self.files.get('missing')}):")
            for split, name, reason, where in self.missing[:first]:
                lines.append(f"    [{split}] {name}: {reason} ({where})")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _measure(root: str, relpath: str, kind: str, template: str, start_index: int) -> int:
    """Frames of a source by the one definition; a truncated video or a folder with a gap raises."""
    return open_source(os.path.join(root, relpath), template, start_index, kind=kind).verify()


def count_or_reason(root: str, relpath: str, kind: str, template: str = DEFAULT_TEMPLATE,
                    start_index: int = 1) -> int | str:
    """Frames of ``root/relpath`` (:mod:`adafuse.data.media`'s definition, the source verified), or why it
    cannot be listed (``"truncated: ..."``, ``"gap: ..."``, ``"unreadable: ..."``, ``"no frames"``)."""
    try:
        n = _measure(root, relpath, kind, template, start_index)
    except VideoReadError as e:
        return f"{e.kind}: {e.reason}" if e.source == os.path.join(root, relpath) \
            else f"{e.kind}: {e.source}: {e.reason}"
    return n if n > 0 else "no frames"


def write_missing(out: Path, missing: list[tuple[str, str, str, str]]) -> str | None:
    """``out/missing.txt`` (``<split> <name> <reason> <where>`` per line) when anything is missing, else
    remove a stale one; returns its path or None."""
    missing_file = out / "missing.txt"
    if missing:
        missing_file.write_text("".join(f"{s}\t{name}\t{reason}\t{where}\n" for s, name, reason, where in missing))
        return str(missing_file)
    missing_file.unlink(missing_ok=True)
    return None


def build_lists(
    annotations: Annotations,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    prefer: Literal["auto", "frames", "video"] = "auto",
    template: str = DEFAULT_TEMPLATE,
    start_index: int = 1,
    workers: int = 8,
    max_depth: int = 3,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Write ``train.txt``, ``val.txt``, ``classes.txt`` (and ``missing.txt`` if anything is missing) for
    ``annotations`` whose videos live under ``root``.

    ``prefer``: when a video exists both as a frame folder and a file, ``"auto"``/``"frames"`` take the
    folder, ``"video"`` the file; ``"frames"``/``"video"`` also ignore the other kind entirely.
    """
    from tqdm import tqdm

    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data root {root} is not a directory")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = PrepareReport(annotations.dataset, str(out), len(annotations.classes), notes=list(annotations.notes))
    (log or (lambda s: None))(f"scanning {root} for {len(annotations.videos)} annotated videos ...")
    found = index_root(root, {v.name for v in annotations.videos}, max_depth)

    def locate(v: AnnotatedVideo) -> Found | None:
        options = found.get(v.name, {})
        order = ("video",) if prefer == "video" else ("frames",) if prefer == "frames" else ("frames", "video")
        for kind in order:
            if kind in options:
                return options[kind], kind
        return None

    def job(v: AnnotatedVideo) -> tuple[AnnotatedVideo, Found | None, int | str]:
        loc = locate(v)
        if loc is None:
            return v, None, "not found under the root"
        return v, loc, count_or_reason(root, loc[0], loc[1], template, start_index)

    results = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        it = pool.map(job, annotations.videos)
        for r in tqdm(it, total=len(annotations.videos), desc="counting frames", unit="video", disable=not progress):
            results.append(r)

    records: dict[str, list[VideoRecord]] = {s: [] for s in SPLITS}
    for v, loc, n in results:
        report.annotated[v.split] = report.annotated.get(v.split, 0) + 1
        if isinstance(n, str):
            report.missing.append((v.split, v.name, n, v.where))
            continue
        records[v.split].append(VideoRecord(loc[0], v.label, n))
    report.files["classes"] = str(write_classes(annotations.classes, out / "classes.txt"))
    for split in SPLITS:
        if split in report.annotated:
            report.files[split] = str(write_list(records[split], out / f"{split}.txt"))
            report.written[split] = len(records[split])
    missing_file = write_missing(out, report.missing)
    if missing_file:
        report.files["missing"] = missing_file
    return report


def prepare_dataset(
    dataset: str,
    annotations: str | os.PathLike | list[str | os.PathLike],
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    subset_train: str | os.PathLike | None = None,
    subset_val: str | os.PathLike | None = None,
    class_order: Literal["sorted", "file"] = "sorted",
    prefer: Literal["auto", "frames", "video"] = "auto",
    template: str = DEFAULT_TEMPLATE,
    start_index: int = 1,
    workers: int = 8,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Read the official annotations of ``dataset`` (``sthv1``, ``sthv2``, ``jester``, ``kinetics``,
    ``minikinetics``) and write the list files for the videos found under ``root`` into ``out_dir``.

    ``subset_train``/``subset_val``: YouTube-id list files (Mini-Kinetics; optional for Kinetics).
    ``class_order``: SthV1/Jester only (default sorted, the TSM convention).
    """
    kwargs: dict = {}
    if dataset in ("sthv1", "jester"):
        kwargs["class_order"] = class_order
    if dataset in ("kinetics", "minikinetics"):
        kwargs.update(subset_train=subset_train, subset_val=subset_val)
    ann = read_annotations(dataset, annotations, **kwargs)
    return build_lists(
        ann, root, out_dir, prefer=prefer, template=template, start_index=start_index, workers=workers,
        progress=progress, log=log,
    )
