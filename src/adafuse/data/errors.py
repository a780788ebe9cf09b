"""Errors of the data package. Each names the file and, when there is one, the list line.

Both error classes pickle with their attributes (multiprocessing pools), and can also be built from one
preformatted message (``VideoReadError(msg)``), which is how the DataLoader re-raises a worker's error (its
"Caught ... in DataLoader worker" traceback text is reduced to the error's own one-line message).
"""

from __future__ import annotations

from pathlib import Path


def where(path: str | Path | None, line: int | None = None) -> str:
    """``"file:line"`` (or just ``"file"``) for messages; ``"<unknown>"`` when there is no file."""
    if path is None:
        return "<unknown>"
    return f"{path}:{line}" if line is not None else str(path)


def worker_message(text: str) -> str:
    """The error's own message out of a DataLoader worker's re-raise (``"Caught VideoReadError in DataLoader worker
    process 0. Original Traceback ... adafuse.data.errors.VideoReadError: <message>"``): the ``<message>``
    line, so that a data error from a worker is one line like one from the main process. Other text unchanged."""
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return text
    last = text.rstrip().splitlines()[-1]
    name, sep, message = last.partition(": ")
    return message if sep and name.replace(".", "").replace("_", "").isalnum() else text


READ_ERROR_KINDS = ("missing", "unreadable", "truncated", "gap", "short", "empty", "size")


class DataError(Exception):
    """Base class of data errors."""


class ListFormatError(DataError, ValueError):
    """A malformed line in a list or annotation file.

    Attributes: ``path`` (the list file), ``line`` (1-based line number or None), ``reason``.
    """

    def __init__(self, path: str | Path | None, line: int | None = None, reason: str | None = None) -> None:
        if reason is None and line is None:  # a preformatted message (pickle / DataLoader re-raise)
            self.path, self.line, self.reason = None, None, worker_message(str(path))
            super().__init__(self.reason)
            return
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = reason or "malformed line"
        super().__init__(f"{where(path, line)}: {self.reason}")

    def __reduce__(self):
        if self.path is None and self.line is None:
            return type(self), (self.reason,)
        return type(self), (self.path, self.line, self.reason)


class VideoReadError(DataError):
    """A video file or frame folder that cannot be read as the list says.

    Attributes: ``source`` (the video file or frame folder), ``list_file``/``line`` (the list line that
    names it, when known), ``reason``, and ``kind``: what is wrong, one of :data:`READ_ERROR_KINDS`
    (``missing``, ``unreadable``, ``truncated``: a video ends before its declared frame count, ``gap``: a
    frame file is missing below the folder's highest frame, ``short``: fewer frames than asked for,
    ``empty``, ``size``: frames of different sizes).
    """

    def __init__(
        self,
        source: str | Path,
        reason: str | None = None,
        list_file: str | Path | None = None,
        line: int | None = None,
        kind: str = "unreadable",
    ) -> None:
        self.kind = kind
        if reason is None:  # a preformatted message (pickle / DataLoader re-raise)
            self.source, self.reason, self.list_file, self.line = "", worker_message(str(source)), None, None
            super().__init__(self.reason)
            return
        self.source = str(source)
        self.reason = reason
        self.list_file = None if list_file is None else str(list_file)
        self.line = line
        listed = f" (listed at {where(list_file, line)})" if list_file is not None else ""
        super().__init__(f"{source}{listed}: {reason}")

    def __reduce__(self):
        if not self.source:
            return type(self), (self.reason, None, None, None, self.kind)
        return type(self), (self.source, self.reason, self.list_file, self.line, self.kind)
