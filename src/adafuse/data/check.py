"""``data check``: find every problem of a list file and its videos, each named by ``file:line``.

Problems (``Problem.kind``):

- ``malformed``: the line does not parse.
- ``label``: label outside ``[0, num_classes)`` (or negative when the class count is unknown).
- ``duplicate``: the same path listed again (names the first line; ``x.mp4`` and ``x.webm`` are two videos).
- ``missing``: the frame folder or video file does not exist.
- ``short``: the list says more frames than the source has (:mod:`adafuse.data.media`: the container's
  declared count for a video, the highest frame number for a folder).
- ``unreadable``: a frame image or the video cannot be opened or decoded.
- ``truncated``: the video holds or decodes fewer frames than its container declares.
- ``gap``: a frame file is missing below the highest frame of a folder.
- ``size``: the frames of a folder (or video) do not all have one size.
- ``empty``: a folder or video without any frame.

Videos are decoded completely; frame folders are listed (gaps) and, by default, the headers of their first
and last frames read; ``deep=True`` decodes every frame image and compares their sizes.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from adafuse.data.decode import DEFAULT_TEMPLATE
from adafuse.data.errors import ListFormatError, VideoReadError, where
from adafuse.data.lists import ListKind, VideoRecord, iter_list_lines, read_classes
from adafuse.data.media import open_source

KINDS = ("malformed", "label", "duplicate", "missing", "short", "unreadable", "truncated", "gap", "size", "empty")


@dataclass(frozen=True)
class Problem:
    """One problem: ``list_file:line`` names the list line; ``path`` the file or folder concerned."""

    list_file: str
    line: int | None
    kind: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        return f"{where(self.list_file, self.line)}: [{self.kind}] {self.message}"


@dataclass
class CheckReport:
    """Result of :func:`check_list`: ``problems`` in list order; ``ok`` is True when there are none."""

    list_file: str
    num_lines: int = 0
    num_videos_checked: int = 0
    num_classes: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out

    def summary(self) -> str:
        if self.ok:
            return f"{self.list_file}: {self.num_lines} lines, {self.num_videos_checked} videos checked, no problems"
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts().items()))
        return f"{self.list_file}: {self.num_lines} lines, {len(self.problems)} problems ({kinds})"


def _check_source(path: str, rec: VideoRecord, template: str, start_index: int, deep: bool) -> list[tuple[str, str]]:
    """Problems of one source, by the one definition of its frames (:mod:`adafuse.data.media`)."""
    src = open_source(path, template, start_index)
    if src.kind == "video" and not os.path.isfile(path):
        return [("missing", f"video {path} does not exist")]
    if src.kind == "frames" and not os.path.isdir(path):
        return [("missing", f"frame folder {path} does not exist")]
    try:
        # videos are always decoded completely; folders are listed (gaps) and, deep, every image decoded
        n = src.verify(decode=deep or src.kind == "video")
    except VideoReadError as e:
        kind = e.kind if e.kind in KINDS else "unreadable"
        return [(kind, f"{e.source}: {e.reason}")]
    if rec.num_frames is not None and rec.num_frames > n:
        what = "the video has" if src.kind == "video" else "the folder has"
        return [("short", f"{path}: the list says {rec.num_frames} frames, {what} {n}")]
    return []


def _check_one(job: tuple) -> tuple[int, list[tuple[str, str]]]:
    """Worker: problems of one record -> (position, [(kind, message)])."""
    pos, rec, root, template, start_index, deep = job
    path = rec.resolve(root)
    try:
        return pos, _check_source(path, rec, template, start_index, deep)
    except VideoReadError as e:
        return pos, [("unreadable", f"{e.source}: {e.reason}")]
    except Exception as e:  # a check must report, not crash, whatever the file holds
        return pos, [("unreadable", f"{path}: {type(e).__name__}: {e}")]


def check_list(
    list_file: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    template: str = DEFAULT_TEMPLATE,
    start_index: int = 1,
    num_classes: int | None = None,
    classes: str | os.PathLike | None = None,
    kind: ListKind = "auto",
    deep: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> CheckReport:
    """Check a list file and every video it names; never raises for data problems (they are reported).

    ``root``: directory of the list paths (default: the list's directory). ``num_classes`` (or a
    ``classes`` file; default ``classes.txt`` next to the list if present) enables the label-range check.
    ``workers``: processes decoding videos in parallel.
    """
    from tqdm import tqdm

    list_file = os.fspath(list_file)
    if root is None:
        root = os.path.dirname(os.path.abspath(list_file))
    if num_classes is None:
        cls_file = classes or os.path.join(os.path.dirname(os.path.abspath(list_file)), "classes.txt")
        if os.path.isfile(cls_file):
            num_classes = len(read_classes(cls_file))
        elif classes is not None:
            raise FileNotFoundError(f"classes file {classes} does not exist")
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"list file {list_file} does not exist")
    report = CheckReport(list_file, num_classes=num_classes)
    first_line: dict[str, int] = {}
    jobs = []
    records: dict[int, VideoRecord] = {}
    for line, item in iter_list_lines(list_file, kind):
        report.num_lines += 1
        if isinstance(item, ListFormatError):
            report.problems.append(Problem(list_file, line, "malformed", item.reason))
            continue
        rec = item
        if num_classes is not None and not 0 <= rec.label < num_classes:
            report.problems.append(
                Problem(list_file, line, "label", f"label {rec.label} outside [0, {num_classes})", rec.path)
            )
        elif rec.label < 0:
            report.problems.append(Problem(list_file, line, "label", f"negative label {rec.label}", rec.path))
        key = os.path.normpath(rec.path)
        if key in first_line:
            report.problems.append(
                Problem(list_file, line, "duplicate", f"{rec.path!r} already listed at line {first_line[key]}",
                        rec.path)
            )
            continue
        first_line[key] = line
        records[line] = rec
        jobs.append((line, rec, os.fspath(root), template, start_index, deep))

    def run() -> Iterator[tuple[int, list[tuple[str, str]]]]:
        if workers <= 1 or len(jobs) < 2:
            yield from map(_check_one, jobs)
            return
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ctx.Pool(workers) as pool:
            yield from pool.imap_unordered(_check_one, jobs, chunksize=4)

    for line, found in tqdm(run(), total=len(jobs), desc="checking videos", unit="video", disable=not progress):
        report.num_videos_checked += 1
        rec = records[line]
        report.problems.extend(Problem(list_file, line, k, msg, rec.resolve(root)) for k, msg in found)
    report.problems.sort(key=lambda p: (p.line or 0, p.kind))
    return report
