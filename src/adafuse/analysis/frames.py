"""Thumbnails of the sampled frames of a video, for the compute-budget strips of the report.

Decoding is done by :func:`adafuse.data.media.open_source` (frame folders and PyAV); this module only resolves the
``source`` path of a prediction record, shows the frames as the network saw them (the run's
:class:`~adafuse.data.preprocessing.Preprocessing`: the same resize and centre crop, before normalisation),
downsizes them and turns failures into a message for the page (a report must not fail because one video has
moved since evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adafuse.data.decode import DEFAULT_TEMPLATE
from adafuse.data.errors import DataError
from adafuse.data.media import open_source
from adafuse.data.preprocessing import Preprocessing


def resolve_source(source: str, roots: Sequence[str | os.PathLike] = ()) -> Path | None:
    """The existing path of ``source``: as given (absolute, or relative to the working directory), else
    relative to each of ``roots`` in turn; ``None`` when none exists."""
    path = Path(source)
    if path.exists():
        return path
    if not path.is_absolute():
        for root in roots:
            candidate = Path(root) / path
            if candidate.exists():
                return candidate
    return None


def run_preprocessing(run: Any) -> Preprocessing | None:
    """The preprocessing of a run's evaluation: ``metrics.json``'s ``preprocessing`` (written by ``adafuse eval``),
    else derived from the run's ``config.yaml``; None (whole frames) when neither is there or readable."""
    stored = (run.metrics or {}).get("preprocessing")
    try:
        if stored:
            return Preprocessing.from_dict(stored)
        return Preprocessing.from_config(run.config, {}) if run.config else None
    except (TypeError, ValueError):
        return None


def read_thumbnails(
    source: str | None,
    indices: Sequence[int],
    height: int = 96,
    template: str = DEFAULT_TEMPLATE,
    start_index: int = 1,
    roots: Sequence[str | os.PathLike] = (),
    preprocessing: Preprocessing | None = None,
) -> tuple[np.ndarray | None, str | None]:
    """Frames ``indices`` (0-based) of a video file or frame folder, resized to ``height`` pixels; with
    ``preprocessing``, first cropped as the network saw them (:meth:`Preprocessing.crop_frames`).

    Returns ``(frames, None)`` with uint8 ``(T, height, W, 3)`` RGB, or ``(None, reason)`` when the frames
    cannot be read (no source recorded, path not found, decode error); ``reason`` names the file.
    ``template``/``start_index``: frame file names of frame folders (default ``{:05d}.jpg`` from 1).
    """
    if not source:
        return None, "no source recorded for this video"
    if not indices:
        return None, f"{source}: no frame_indices recorded"
    path = resolve_source(source, roots)
    if path is None:
        tried = ", ".join(str(Path(r) / source) for r in roots) if roots and not Path(source).is_absolute() else ""
        return None, f"{source}: not found" + (f" (also tried {tried})" if tried else "")
    try:
        frames = open_source(path, template, start_index).read(indices)
        if preprocessing is not None:
            frames = preprocessing.crop_frames(frames)
    except (DataError, ValueError, OSError) as exc:
        return None, str(exc)
    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        width = max(1, round(w * height / h))
        out.append(np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR)))
    return np.stack(out), None
