"""Training checkpoints: atomic writes, RNG state capture/restore, and the file layout of a run.

A checkpoint is :func:`adafuse.models.serialization.model_payload` plus the training state::

    optimizer, scheduler, scaler (state dicts), epoch (epochs completed before the current one),
    step_in_epoch (batches of ``epoch`` already consumed), step (global optimizer steps), rng, config,
    best_top1, metrics (last validation), train_meter (running sums of the unfinished epoch)

Everything is a tensor, number, string, list or dict so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import io
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


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions); the previous file is untouched."""


def save_atomic(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` with ``torch.save`` to a temporary file next to ``path``, then ``os.replace`` it,
    so a reader (or a crash) never sees a half-written checkpoint.

    The payload is serialised in memory first, so a full disk is a plain :class:`CheckpointWriteError`
    naming the file (``[Errno 28] No space left on device``), not an error from inside the serialiser.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise CheckpointWriteError(err.errno, f"cannot write checkpoint {path}: {err.strerror or err}") from None
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
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


# ------------------------------------------------------------------------------------ run-directory lock

LOCK_FILE = ".lock"


class RunDirLocked(RuntimeError):
    """Another live process trains in this run directory (the message names it)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory: ``<run>/.lock`` locked with ``fcntl.flock`` and holding
    ``{"pid", "host", "started"}`` of its holder.

    The kernel drops the lock when its holder dies (even ``kill -9``), so the lock of a dead process is
    taken over (and said so in :attr:`took_over`). Where ``flock`` is not supported (some network file
    systems) the recorded pid decides: a live process on this host holds the directory.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        self.took_over: dict[str, Any] | None = None

    def _holder(self) -> dict[str, Any]:
        import json

        try:
            data = json.loads(self.path.read_text() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _describe(holder: dict[str, Any]) -> str:
        if not holder:
            return "an unknown process"
        return f"pid {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')})"

    def acquire(self) -> RunLock:
        import fcntl
        import json
        import socket
        import time

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        previous = self._holder()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirLocked(f"run directory {self.path.parent} is in use by {self._describe(previous)} "
                               f"(lock {self.path}); wait for it to finish or choose another run.name") from None
        except OSError:  # flock unsupported here: fall back to the recorded pid
            pid = previous.get("pid")
            if (previous.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid()
                    and _pid_alive(pid)):
                os.close(fd)
                raise RunDirLocked(f"run directory {self.path.parent} is in use by {self._describe(previous)} "
                                   f"(lock {self.path})") from None
        if previous.get("pid") not in (None, os.getpid()):
            self.took_over = previous
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Unlock (the file stays; its content says who held it last)."""
        if self.fd is not None:
            import fcntl

            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_orphans(folder: str | Path) -> list[Path]:
    """Delete the temporary files :func:`save_atomic` and the evaluation writer leave behind when a process is
    killed mid-write (``.<name>.*.tmp``, ``.<name>.tmp``); call it only while holding the run's lock."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def all_finite(module: torch.nn.Module) -> tuple[bool, str | None]:
    """``(True, None)`` if every floating parameter **and buffer** (BatchNorm statistics) is finite, else
    ``(False, name of the first bad tensor)``."""
    for name, t in module.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return False, name
    return True, None
