"""Accuracy counting, running meters, and the run's logs (``metrics.jsonl``, TensorBoard, progress bar).

Everything the engine logs goes through :class:`RunLogger` on rank 0; other ranks get a silent one.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor

log = logging.getLogger("adafuse")

T = TypeVar("T")


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the top-k logits, for each k (k capped at the class count).

    ``logits``: ``(N, K)``; ``labels``: ``(N,)``.
    """
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hit = top == labels[:, None]
    return [int(hit[:, : min(k, maxk)].any(dim=1).sum()) for k in ks]


class RunningMeans:
    """Sums of named quantities weighted by sample counts; ``mean(name)`` = sum / count.

    Its state is a plain dict of floats (saved in checkpoints so a resumed epoch logs the whole epoch).
    """

    def __init__(self, state: dict[str, float] | None = None) -> None:
        self.sums: dict[str, float] = dict(state or {})

    def add(self, name: str, value: float, weight: float = 1.0) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(value) * weight

    def get(self, name: str) -> float:
        return self.sums.get(name, 0.0)

    def state_dict(self) -> dict[str, float]:
        return dict(self.sums)


def json_safe(value: Any) -> Any:
    """Floats rounded for logs; NaN/inf written as strings (JSON has no NaN)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return round(value, 6)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class RunLogger:
    """Appends JSON lines to ``metrics.jsonl``, mirrors scalars to TensorBoard (if installed and wanted),
    and prints short summaries through the ``adafuse`` logger. Inactive (no files) when ``enabled`` is False.
    """

    def __init__(self, run_dir: Path | None, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled and run_dir is not None
        self.path = run_dir / "metrics.jsonl" if self.enabled and run_dir is not None else None
        self.writer = None
        if self.enabled and tensorboard and run_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))
            except Exception as err:  # tensorboard missing or broken: optional by design
                log.info("TensorBoard logging off (%s)", err)

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        if not self.enabled or self.path is None:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.path, "a") as f:
            f.write(json.dumps(json_safe(record)) + "\n")
        if self.writer is not None and step is not None:
            kind = record.get("kind", "log")
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "step"):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def progress(iterable: Iterable[T], total: int, desc: str, enabled: bool, initial: int = 0) -> Iterator[T]:
    """tqdm progress with ETA when ``enabled`` and stderr is a terminal; the plain iterable otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield from iterable
        return
    from tqdm import tqdm

    bar = tqdm(iterable, total=total, desc=desc, initial=initial, dynamic_ncols=True, leave=False)
    try:
        yield from bar
    finally:
        bar.close()


def setup_logging(run_dir: Path | None, is_main: bool) -> None:
    """``adafuse`` logger: INFO to stderr and ``run_dir/train.log`` on rank 0, warnings only elsewhere."""
    logger = logging.getLogger("adafuse")
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        if getattr(h, "_adafuse", False):
            logger.removeHandler(h)
            h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    stream._adafuse = True  # type: ignore[attr-defined]
    logger.addHandler(stream)
    if is_main and run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(fmt)
        fh._adafuse = True  # type: ignore[attr-defined]
        logger.addHandler(fh)
