"""``data check``: find every problem of a list file and its videos, each named by ``file:line``.

Problems (``Problem.kind``):

- ``malformed``: the line does not parse.
- ``label``: label outside ``[0, num_classes)`` (or negative when the class count is unknown).
- ``duplicate``: the same video id listed again (names the first line).
- ``missing``: the frame folder or video file does not exist.
- ``short``: fewer frames than the list says (folder: consecutive frame files; video: decoded frames).
- ``unreadable``: a frame image or the video cannot be opened or decoded.
- ``truncated``: the video decodes fewer frames than its container claims.
- ``empty``: a folder or video without any frame.

Videos are decoded completely (the only way to catch truncation); frame folders are listed and, by
default, their first and last listed frames decoded (``deep=True`` decodes every frame).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from adafuse.data.decode import DEFAULT_TEMPLATE, count_folder_frames, open_video, probe_video, read_frame_folder
from adafuse.data.errors import ListFormatError, VideoReadError, where
from adafuse.data.lists import ListKind, VideoRecord, iter_list_lines, read_classes


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


def _check_frames(path: str, rec: VideoRecord, template: str, start_index: int, deep: bool) -> list[tuple[str, str]]:
    if not os.path.isdir(path):
        return [("missing", f"frame folder {path} does not exist")]
    n = count_folder_frames(path, template, start_index)
    if n == 0:
        first = template.format(start_index)
        return [("empty", f"frame folder {path} has no frame {first} (template {template!r})")]
    out = []
    listed = rec.num_frames if rec.num_frames is not None else n
    if listed > n:
        out.append(("short", f"{path}: the list says {listed} frames, the folder has {n} consecutive frames"))
    to_read = range(min(listed, n)) if deep else sorted({0, min(listed, n) - 1})
    for i in to_read:
        try:
            read_frame_folder(path, [i], template, start_index)
        except VideoReadError as e:
            out.append(("unreadable", f"{e.source}: {e.reason}"))
            if not deep:
                break
    return out


def _decode_all(path: str) -> tuple[int, str | None]:
    """Decode every frame: (frames decoded, error message or None). Opening errors raise."""
    container = open_video(path)
    n = 0
    try:
        for _ in container.decode(container.streams.video[0]):
            n += 1
    except Exception as e:
        return n, str(e)
    finally:
        container.close()
    return n, None


def _check_video(path: str, rec: VideoRecord) -> list[tuple[str, str]]:
    if not os.path.isfile(path):
        return [("missing", f"video {path} does not exist")]
    try:
        info = probe_video(path, count="auto")
        decoded, error = _decode_all(path)
    except VideoReadError as e:
        return [("unreadable", f"{path}: {e.reason}")]
    out = []
    if error is not None:
        kind = "truncated" if decoded > 0 else "unreadable"
        out.append((kind, f"{path}: decoding stopped after {decoded} of {info.num_frames} frames: {error}"))
    elif decoded < info.num_frames:
        out.append(("truncated", f"{path}: the container says {info.num_frames} frames, only {decoded} decode"))
    if decoded == 0 and error is None:
        out.append(("empty", f"video {path} decodes no frames"))
    if rec.num_frames is not None and decoded < rec.num_frames:
        out.append(("short", f"{path}: the list says {rec.num_frames} frames, only {decoded} decode"))
    return out


def _check_one(job: tuple) -> tuple[int, list[tuple[str, str]]]:
    """Worker: problems of one record -> (position, [(kind, message)])."""
    pos, rec, root, template, start_index, deep = job
    path = rec.resolve(root)
    try:
        if rec.is_video:
            return pos, _check_video(path, rec)
        return pos, _check_frames(path, rec, template, start_index, deep)
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
        if rec.id in first_line:
            report.problems.append(
                Problem(list_file, line, "duplicate", f"{rec.id!r} already listed at line {first_line[rec.id]}",
                        rec.path)
            )
            continue
        first_line[rec.id] = line
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
