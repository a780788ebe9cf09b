"""Training checkpoints: atomic writes, RNG state capture/restore, and the file layout of a run.

A checkpoint is :func:`adafuse.models.serialization.model_payload` plus the training state::

    optimizer, scheduler, scaler (state dicts), epoch (epochs completed before the current one),
    step_in_epoch (batches of ``epoch`` already consumed), step (global optimizer steps), rng, config,
    best_top1, metrics (last validation), train_meter (running sums of the unfinished epoch)

Everything is a tensor, number, string, list or dict so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def save_atomic(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` with ``torch.save`` to a temporary file next to ``path``, then ``os.replace`` it,
    so a reader (or a crash) never sees a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _numpy_state_to_safe(state: tuple[Any, ...]) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_safe(d: dict[str, Any]) -> tuple[Any, ...]:
    keys = d["keys"].numpy().astype(np.uint32)
    return (d["name"], keys, d["pos"], d["has_gauss"], d["cached_gaussian"])


def _python_state_to_safe(state: tuple[Any, ...]) -> dict[str, Any]:
    version, internal, gauss = state
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss": None if gauss is None else float(gauss)}


def _python_state_from_safe(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["version"], tuple(int(x) for x in d["internal"].tolist()), d["gauss"])


def rng_state() -> dict[str, Any]:
    """The global RNG states (python, numpy, torch, CUDA if present) in ``weights_only``-safe form."""
    state = {
        "python": _python_state_to_safe(random.getstate()),
        "numpy": _numpy_state_to_safe(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(_python_state_from_safe(state["python"]))
    np.random.set_state(_numpy_state_from_safe(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (see :func:`adafuse.models.serialization.load_checkpoint_file`)."""
    from adafuse.models.serialization import load_checkpoint_file

    return load_checkpoint_file(path)
