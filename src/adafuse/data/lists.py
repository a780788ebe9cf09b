"""List files (TSM/AdaFuse/mmaction2 convention) and ``classes.txt``.

One line per video, space separated, parsed **from the right** so that paths may contain spaces:

- frame folder: ``<dir> <num_frames> <label>`` (frames ``<dir>/{:05d}.jpg``, 1-based by default)
- video file:   ``<path> <label>`` or ``<path> <num_frames> <label>`` (mp4, webm, avi, mkv, mov)

Paths are relative to a root given separately (``--root``) unless absolute. Empty lines and lines
starting with ``#`` are ignored. ``classes.txt`` holds one class name per line; the class index is the
0-based line number.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adafuse.data.errors import ListFormatError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")

ListKind = Literal["auto", "frames", "video"]


def is_video_path(path: str | os.PathLike) -> bool:
    """True if ``path`` ends with a known video extension (case-insensitive)."""
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def strip_video_extension(path: str) -> str:
    """``"a/b.webm" -> "a/b"``; other paths unchanged."""
    return os.path.splitext(path)[0] if is_video_path(path) else path


@dataclass(frozen=True)
class VideoRecord:
    """One list line.

    ``path`` is as written in the list (relative to the dataset root unless absolute); ``num_frames`` is
    None for a ``<path> <label>`` video line; ``list_file``/``line`` say where the record came from
    (1-based line number), for error messages.
    """

    path: str
    label: int
    num_frames: int | None = None
    list_file: str | None = None
    line: int | None = None

    @property
    def is_video(self) -> bool:
        """True for a video file, False for a frame folder (decided by the extension)."""
        return is_video_path(self.path)

    @property
    def id(self) -> str:
        """The video id: the list path without its video extension (unique within a list)."""
        return strip_video_extension(self.path)

    def resolve(self, root: str | os.PathLike | None) -> str:
        """The file system path: ``root/path`` (``path`` alone when absolute or no root)."""
        if root is None or os.path.isabs(self.path):
            return self.path
        return os.path.join(os.fspath(root), self.path)


def _parse_int(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def parse_list_line(
    text: str, list_file: str | os.PathLike | None = None, line: int | None = None, kind: ListKind = "auto"
) -> VideoRecord:
    """Parse one (non-empty, non-comment) list line into a :class:`VideoRecord`.

    ``kind="frames"`` requires ``<dir> <num_frames> <label>``; ``kind="video"`` accepts ``<path> <label>``
    and ``<path> <num_frames> <label>``; ``kind="auto"`` decides by the path's extension (a video
    extension means a video line). Raises :class:`ListFormatError` naming ``list_file:line``.
    """
    src = None if list_file is None else os.fspath(list_file)
    stripped = text.strip()
    parts = stripped.rsplit(maxsplit=2)
    expected = {
        "frames": "'<dir> <num_frames> <label>'",
        "video": "'<path> <label>' or '<path> <num_frames> <label>'",
        "auto": "'<dir> <num_frames> <label>' or '<video> [<num_frames>] <label>'",
    }[kind]
    if len(parts) < 2:
        raise ListFormatError(src, line, f"expected {expected}, got {stripped!r}")
    label = _parse_int(parts[-1])
    if label is None:
        raise ListFormatError(src, line, f"label {parts[-1]!r} is not an integer (line {stripped!r})")
    count = _parse_int(parts[-2]) if len(parts) == 3 else None

    if kind == "frames" or (kind == "auto" and count is not None and not is_video_path(parts[0])):
        if count is None:
            raise ListFormatError(src, line, f"expected {expected}, got {stripped!r}")
        path = parts[0]
    elif count is not None:
        path = parts[0]
    else:  # "<path> <label>" where the path may itself contain spaces
        path = stripped.rsplit(maxsplit=1)[0]
        if kind == "auto" and not is_video_path(path):
            raise ListFormatError(
                src,
                line,
                f"expected {expected}; {path!r} has no video extension {VIDEO_EXTENSIONS} and no frame count",
            )
    if count is not None and count < 0:
        raise ListFormatError(src, line, f"negative frame count {count}")
    return VideoRecord(path=path, label=label, num_frames=count, list_file=src, line=line)


def text_lines(path: str | os.PathLike) -> Iterable[tuple[int, str]]:
    """``(1-based line number, text)`` of a UTF-8 text file; a line that is not UTF-8 raises
    :class:`ListFormatError` naming ``file:line``, and a missing file ``FileNotFoundError`` naming it."""
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed below
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ListFormatError(path, None, "is a directory, not a text file") from None
    with f:
        for number, raw in enumerate(f, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ListFormatError(path, number, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                                    f"{e.start + 1})") from None


def read_list(list_file: str | os.PathLike, kind: ListKind = "auto") -> list[VideoRecord]:
    """Read a list file into records (see the module docstring for the formats).

    Raises :class:`ListFormatError` (with ``file:line``) on the first malformed or non-UTF-8 line and
    ``FileNotFoundError`` if the file does not exist.
    """
    records = []
    for number, text in text_lines(list_file):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        records.append(parse_list_line(text, list_file, number, kind))
    return records


def iter_list_lines(
    list_file: str | os.PathLike, kind: ListKind = "auto"
) -> Iterable[tuple[int, VideoRecord | ListFormatError]]:
    """Yield ``(line_number, record_or_error)`` for every non-empty line, without stopping at errors
    (used by ``data check`` to report every malformed line; a non-UTF-8 line is reported as malformed)."""
    lines = text_lines(list_file)
    while True:
        try:
            number, text = next(lines)
        except StopIteration:
            return
        except ListFormatError as e:  # undecodable line: the file cannot be read past it
            yield e.line or 0, e
            return
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            yield number, parse_list_line(text, list_file, number, kind)
        except ListFormatError as e:
            yield number, e


def format_list_line(path: str, label: int, num_frames: int | None = None) -> str:
    """``"<path> <num_frames> <label>"`` or, without a count, ``"<path> <label>"`` (no newline)."""
    if "\n" in path or path != path.strip():
        raise ValueError(f"path {path!r} cannot be written to a list file (newline or edge whitespace)")
    return f"{path} {label}" if num_frames is None else f"{path} {num_frames} {label}"


def write_list(records: Iterable[VideoRecord], list_file: str | os.PathLike) -> Path:
    """Write records as list lines (a count is written when the record has one); returns the path."""
    out = Path(list_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [format_list_line(r.path, r.label, r.num_frames) for r in records]
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    os.replace(tmp, out)
    return out


def read_classes(path: str | os.PathLike) -> list[str]:
    """Class names from a ``classes.txt`` (one per line; index = 0-based line number)."""
    names = [x.rstrip("\r\n") for _, x in text_lines(path)]
    while names and not names[-1].strip():
        names.pop()
    for i, name in enumerate(names, start=1):
        if not name.strip():
            raise ListFormatError(path, i, "empty class name")
    return names


def write_classes(names: Iterable[str], path: str | os.PathLike) -> Path:
    """Write ``classes.txt`` (one class name per line)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(names)
    for name in names:
        if "\n" in name or not name.strip():
            raise ValueError(f"bad class name {name!r}")
    out.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return out
