"""``data extract``: video files -> frame folders ``{:05d}.jpg`` (1-based) + a frame-folder list.

Each video ``<root>/<dir>/<name>.<ext>`` becomes ``<out>/<dir>/<name>/``. Work is parallel (processes)
and resumable: frames are written into a temporary sibling folder that is renamed into place only when
the video is complete, so an existing output folder is always complete and is skipped on a rerun;
leftover temporary folders of an interrupted run are removed. Videos that fail, including truncated ones
(fewer frames decode than the container declares, :mod:`adafuse.data.media`), are reported with their
list line and left out of the output list (nothing is silently dropped or shortened: the report says which).
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from adafuse.data.decode import DEFAULT_TEMPLATE, declared_frames, open_video
from adafuse.data.errors import VideoReadError, where
from adafuse.data.lists import ListKind, VideoRecord, read_list, write_list
from adafuse.data.media import FrameFolder


def extract_video(
    video: str | os.PathLike,
    out_folder: str | os.PathLike,
    fps: float | None = None,
    short_side: int | None = None,
    template: str = DEFAULT_TEMPLATE,
    quality: int = 90,
) -> int:
    """Decode ``video`` into ``out_folder`` (created atomically) and return the number of frames written.

    ``fps``: resample to this rate (keeps the first frame at or after each ``k/fps`` s; default: every
    frame). ``short_side``: resize so the short side has this many pixels (default: original size).
    If ``out_folder`` exists it is assumed complete and only counted (a gap raises). Raises
    :class:`VideoReadError`, also when the video decodes fewer frames than its container declares
    (truncated; nothing is written then).
    """
    video, out_folder = os.fspath(video), os.fspath(out_folder).rstrip("/")
    if os.path.isdir(out_folder):
        return FrameFolder(out_folder, template).verify()
    parent, name = os.path.split(out_folder)
    os.makedirs(parent or ".", exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(parent or "."), f".{glob.escape(name)}.tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
    os.makedirs(tmp)
    try:
        n = _write_frames(video, tmp, fps, short_side, template, quality)
        if n == 0:
            raise VideoReadError(video, "no frame decoded")
        os.rename(tmp, out_folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n


def _write_frames(video: str, folder: str, fps: float | None, short_side: int | None, template: str,
                  quality: int) -> int:
    container = open_video(video)
    n = 0
    try:
        declared = declared_frames(container, video)
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        next_time = 0.0
        k = 0
        try:
            for frame in container.decode(stream):
                if k >= declared:  # frames past the declared count are not part of the video (one definition)
                    break
                k += 1
                if fps is not None:
                    t = frame.time if frame.time is not None else ((k - 1) / rate if rate else None)
                    if t is None:
                        raise VideoReadError(video, "cannot resample: frames have no timestamps")
                    half_src = 0.5 / rate if rate else 0.0
                    if t + half_src < next_time:
                        continue
                    next_time += 1.0 / fps
                img = frame.to_image()
                if short_side is not None:
                    w, h = img.size
                    s = min(w, h)
                    if s != short_side:
                        size = (int(w * short_side / s + 0.5), int(h * short_side / s + 0.5))
                        img = img.resize(size, Image.BILINEAR)
                n += 1
                img.save(os.path.join(folder, template.format(n)), quality=quality)
        except VideoReadError:
            raise
        except Exception as e:
            raise VideoReadError(video, f"decoding failed after {k} of {declared} frames: {e}",
                                 kind="truncated" if k else "unreadable") from e
    finally:
        container.close()
    if k < declared:
        raise VideoReadError(video, f"truncated: the container declares {declared} frames, only {k} decode",
                             kind="truncated")
    return n


def frames_folder_for(record: VideoRecord) -> str:
    """Relative output folder of a video record: its list path without the extension (an absolute
    path gives its base name)."""
    rel = record.id
    if os.path.isabs(rel):
        rel = os.path.basename(rel)
    return rel


def default_out_list(list_file: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``OUT/<stem>_frames.txt``; a stem ending in ``_videos`` becomes ``..._frames`` (``train_videos.txt``
    -> ``train_frames.txt``)."""
    stem = Path(list_file).stem
    stem = stem[: -len("_videos")] + "_frames" if stem.endswith("_videos") else stem + "_frames"
    return Path(out_dir) / f"{stem}.txt"


@dataclass
class ExtractReport:
    """Outcome of :func:`extract_frames`."""

    out_list: str
    extracted: int = 0
    skipped_existing: int = 0
    failed: list[tuple[str, int | None, str]] = field(default_factory=list)  # (list file, line, message)

    def summary(self) -> str:
        s = (f"{self.extracted} videos extracted, {self.skipped_existing} already complete, "
             f"{len(self.failed)} failed; list: {self.out_list}")
        for lf, line, msg in self.failed[:10]:
            s += f"\n  {where(lf, line)}: {msg}"
        if len(self.failed) > 10:
            s += f"\n  ... and {len(self.failed) - 10} more"
        return s


def _extract_job(job: tuple) -> tuple[int, bool, int | str]:
    pos, video, out_folder, fps, short_side, template, quality = job
    existed = os.path.isdir(out_folder)
    try:
        return pos, existed, extract_video(video, out_folder, fps, short_side, template, quality)
    except VideoReadError as e:
        return pos, existed, e.reason if e.source == video else str(e)
    except Exception as e:
        return pos, existed, f"{type(e).__name__}: {e}"


def extract_frames(
    list_file: str | os.PathLike,
    root: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    workers: int = 1,
    fps: float | None = None,
    short_side: int | None = None,
    template: str = DEFAULT_TEMPLATE,
    quality: int = 90,
    out_list: str | os.PathLike | None = None,
    kind: ListKind = "video",
    progress: bool = True,
) -> ExtractReport:
    """Extract every video of ``list_file`` (paths relative to ``root``, default the list's directory)
    into frame folders under ``out_dir`` and write the frame-folder list ``out_list`` (default
    :func:`default_out_list`), paths relative to ``out_dir``. Resumable (see the module docstring)."""
    from tqdm import tqdm

    records = read_list(list_file, kind)
    if root is None:
        root = os.path.dirname(os.path.abspath(list_file))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    out_list = Path(out_list) if out_list is not None else default_out_list(list_file, out)
    report = ExtractReport(str(out_list))
    jobs = []
    for pos, rec in enumerate(records):
        rel = frames_folder_for(rec)
        jobs.append((pos, rec.resolve(root), str(out / rel), fps, short_side, template, quality))
    counts: dict[int, int] = {}
    bar = tqdm(total=len(jobs), desc="extracting frames", unit="video", disable=not progress)
    try:
        if workers <= 1:
            results = map(_extract_job, jobs)
            for r in results:
                _collect(r, records, counts, report)
                bar.update()
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ctx.Pool(workers) as pool:
                for r in pool.imap_unordered(_extract_job, jobs, chunksize=1):
                    _collect(r, records, counts, report)
                    bar.update()
    finally:
        bar.close()
    out_records = [
        VideoRecord(frames_folder_for(rec), rec.label, counts[pos])
        for pos, rec in enumerate(records)
        if pos in counts
    ]
    write_list(out_records, out_list)
    report.failed.sort(key=lambda x: x[1] or 0)
    return report


def _collect(result, records, counts, report) -> None:
    pos, existed, value = result
    rec = records[pos]
    if isinstance(value, str):
        report.failed.append((rec.list_file, rec.line, value))
    elif value == 0:
        report.failed.append((rec.list_file, rec.line, "output folder exists but holds no frames"))
    else:
        counts[pos] = value
        if existed:
            report.skipped_existing += 1
        else:
            report.extracted += 1


__all__ = ["ExtractReport", "default_out_list", "extract_frames", "extract_video"]
