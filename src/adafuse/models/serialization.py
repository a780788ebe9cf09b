"""Model <-> checkpoint payload: the checkpoint carries what is needed to rebuild and run the model.

Payload keys written by :func:`model_payload` (the engine adds optimizer/scheduler/RNG state etc.)::

    {"format": "adafuse.checkpoint/1", "arch": str, "build_config": dict, "input_spec": dict,
     "class_names": list[str] | None, "model": state_dict,
     "preprocessing": dict}   # when given: adafuse.data.preprocessing.Preprocessing.to_dict() (the trainer does)

Everything in it is a tensor, number, string, list or dict, so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from adafuse.models.recognizer import InputSpec, VideoRecognizer, unwrap
from adafuse.models.registry import build_model

CHECKPOINT_FORMAT = "adafuse.checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a readable adafuse checkpoint, or whose weights do not fit its model (one line,
    naming the file)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def model_payload(model: VideoRecognizer, class_names: list[str] | None = None,
                  preprocessing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model part of a checkpoint (unwraps DDP / torch.compile wrappers). ``preprocessing``: the
    ``to_dict()`` of the run's :class:`~adafuse.data.preprocessing.Preprocessing` (stored under
    ``"preprocessing"``; a payload without it derives it from its ``config``)."""
    model = unwrap(model)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch,
        "build_config": dict(model.build_config),
        "input_spec": model.input_spec.to_dict(),
        "class_names": list(class_names) if class_names is not None else None,
        "model": model.state_dict(),
    }
    if preprocessing is not None:
        payload["preprocessing"] = dict(preprocessing)
    return payload


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file safely (``weights_only=True``) with a clear error if it is not ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "GLOBAL" not in text:  # not a pickle at all (junk, truncated): name the unpickler's reason only
            detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
            reason = detail[0][:200] if detail and "WeightsUnpickler" in text else _first_line(err)
            raise CheckpointError(f"{path} is not a readable checkpoint file ({reason})") from None
        # the safe loader refused an object: never suggest retrying unsafely
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"{path}: refused: it holds a pickled Python object{what} that a checkpoint must not "
                              "contain; only tensors, numbers, strings, lists and dicts are loaded") from None
    except Exception as err:  # not a torch file, truncated, ...
        raise CheckpointError(f"{path} is not a readable checkpoint file ({type(err).__name__}: "
                              f"{_first_line(err)})") from None
    if not isinstance(payload, dict) or "model" not in payload or "arch" not in payload:
        raise CheckpointError(f"{path} is not an adafuse checkpoint (expected keys 'arch' and 'model'); "
                              "for the authors' released checkpoints run `adafuse convert` first")
    return payload


def model_from_checkpoint(source: str | Path | dict[str, Any],
                          name: str | None = None) -> tuple[VideoRecognizer, dict[str, Any]]:
    """Rebuild the model of a checkpoint (file path or payload dict) and load its weights.

    Returns ``(model in eval mode, payload)``. A ``build_config`` key the model's builder does not take is
    an error (``ValueError`` naming the valid keys), not silently dropped.
    """
    payload = source if isinstance(source, dict) else load_checkpoint_file(source)
    name = name or ("checkpoint" if isinstance(source, dict) else str(source))
    config = dict(payload.get("build_config") or {})
    try:
        model = build_model(payload["arch"], **config)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{name}: its build_config does not fit model {payload['arch']!r}: "
                              f"{_first_line(err)}") from None
    from adafuse.models.budget_conditioning import EMBED_KEY, enable_budget_conditioning

    if any(EMBED_KEY in k for k in payload["model"]):  # a budget-conditioned policy
        enable_budget_conditioning(model)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError) as err:
        lines = [x.strip() for x in str(err).splitlines()[1:] if x.strip()]
        detail = lines[0].rstrip(".") + (f"; and {len(lines) - 1} more" if len(lines) > 1 else "") if lines else ""
        raise CheckpointError(f"{name}: its weights do not fit the model {payload['arch']!r} "
                              f"({detail or _first_line(err)})") from None
    if payload.get("input_spec"):
        model.input_spec = InputSpec.from_dict(payload["input_spec"])
    return model.eval(), payload
