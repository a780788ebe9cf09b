"""Loading run directories written by the engine (see docs/ARCHITECTURE.md, "Run directories and files").

::

    runs/<name>/config.yaml  metrics.jsonl  checkpoints/  eval/predictions.jsonl  eval/metrics.json

Only ``eval/predictions.jsonl`` and ``eval/metrics.json`` are required; ``config.yaml`` is read when present.
Every error names the file (and the line of ``predictions.jsonl``) and the key at fault.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREDICTIONS_FILE = Path("eval") / "predictions.jsonl"
METRICS_FILE = Path("eval") / "metrics.json"
CONFIG_FILE = Path("config.yaml")

# key -> accepted Python types; required in every prediction record
REQUIRED_PREDICTION_KEYS: dict[str, tuple[type, ...]] = {
    "id": (str, int),
    "label": (int,),
    "pred": (int,),
    "gflops": (int, float),
}
# optional keys (the contract lists them all, but analysis degrades gracefully without them)
OPTIONAL_PREDICTION_KEYS: dict[str, tuple[type, ...]] = {
    "correct": (bool,),
    "top5": (list,),
    "scores": (list,),
    "frame_gflops": (list,),
    "block_ratios": (list,),
    "block_constant": (list,),
    "source": (str,),
    "frame_indices": (list,),
}


class RunFormatError(ValueError):
    """A run-directory file that does not follow the contract. The message names the file, line and key."""


@dataclass
class RunData:
    """One run directory, loaded.

    ``metrics``: the dict of ``eval/metrics.json``; ``predictions``: one dict per video from
    ``eval/predictions.jsonl`` (file order); ``config``: ``config.yaml`` as a dict (``None`` when absent).
    """

    name: str
    path: Path
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]
    config: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def arch(self) -> str:
        return str(self.metrics.get("arch") or "?")

    @property
    def has_policy(self) -> bool:
        """True when the predictions carry per-block policy data (an AdaFuse-like model)."""
        return any(p.get("block_ratios") for p in self.predictions)


def _check_type(value: Any, types: tuple[type, ...], where: str, key: str) -> None:
    # bool is an int subclass: do not accept True as a label
    if isinstance(value, bool) and bool not in types:
        raise RunFormatError(f"{where}: key {key!r} must be {'/'.join(t.__name__ for t in types)}, got bool")
    if not isinstance(value, types):
        raise RunFormatError(
            f"{where}: key {key!r} must be {'/'.join(t.__name__ for t in types)}, got {type(value).__name__}"
        )


def read_predictions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and validate ``predictions.jsonl`` (one JSON object per line; blank lines are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found (expected RUN_DIR/{PREDICTIONS_FILE})")
    records: list[dict[str, Any]] = []
    num_blocks: int | None = None
    first_block_line = 0
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunFormatError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise RunFormatError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            for key, types in REQUIRED_PREDICTION_KEYS.items():
                if key not in rec:
                    raise RunFormatError(f"{where}: missing key {key!r}")
                _check_type(rec[key], types, where, key)
            for key, types in OPTIONAL_PREDICTION_KEYS.items():
                if key in rec and rec[key] is not None:
                    _check_type(rec[key], types, where, key)
            rec["id"] = str(rec["id"])
            if not math.isfinite(float(rec["gflops"])):
                raise RunFormatError(f"{where}: key 'gflops' is not finite ({rec['gflops']})")
            if "correct" in rec and rec["correct"] != (rec["pred"] == rec["label"]):
                raise RunFormatError(
                    f"{where}: 'correct' is {rec['correct']} but pred {rec['pred']} vs label {rec['label']}"
                )
            rec["correct"] = rec["pred"] == rec["label"]
            blocks = rec.get("block_ratios") or []
            for b, triple in enumerate(blocks):
                if not isinstance(triple, list) or len(triple) != 3:
                    raise RunFormatError(f"{where}: block_ratios[{b}] must be [skip, reuse, keep], got {triple!r}")
            constant = rec.get("block_constant") or []
            if constant and len(constant) != len(blocks):
                raise RunFormatError(
                    f"{where}: block_constant has {len(constant)} entries but block_ratios has {len(blocks)}"
                )
            if num_blocks is None:
                num_blocks, first_block_line = len(blocks), lineno
            elif len(blocks) != num_blocks:
                raise RunFormatError(
                    f"{where}: {len(blocks)} gated blocks in block_ratios, but line {first_block_line} has "
                    f"{num_blocks}"
                )
            frames = rec.get("frame_gflops")
            indices = rec.get("frame_indices")
            if frames and indices and len(frames) != len(indices):
                raise RunFormatError(
                    f"{where}: frame_gflops has {len(frames)} entries but frame_indices has {len(indices)}"
                )
            records.append(rec)
    if not records:
        raise RunFormatError(f"{path}: no predictions (empty file)")
    return records


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``eval/metrics.json`` (a JSON object)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metrics file not found (expected RUN_DIR/{METRICS_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise RunFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    names = data.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise RunFormatError(f"{path}: key 'class_names' must be a list of strings")
    return data


def read_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """``config.yaml`` as a dict, or ``None`` when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RunFormatError(f"{path}: not valid YAML ({exc})") from None
    return data if isinstance(data, dict) else None


def load_run(run_dir: str | os.PathLike, name: str | None = None) -> RunData:
    """Load one run directory. ``name`` defaults to ``metrics.json``'s ``run``, else the folder name."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    metrics = read_metrics(run_dir / METRICS_FILE)
    predictions = read_predictions(run_dir / PREDICTIONS_FILE)
    config = read_config(run_dir / CONFIG_FILE)
    run_name = name or str(metrics.get("run") or run_dir.resolve().name)
    run = RunData(name=run_name, path=run_dir, metrics=metrics, predictions=predictions, config=config)
    names = metrics.get("class_names") or []
    largest = max(max(p["label"], p["pred"]) for p in predictions)
    if names and largest >= len(names):
        raise RunFormatError(
            f"{run_dir / PREDICTIONS_FILE}: class index {largest} but {run_dir / METRICS_FILE} lists only "
            f"{len(names)} class_names"
        )
    block_names = metrics.get("block_names") or []
    num_blocks = len(predictions[0].get("block_ratios") or [])
    if block_names and num_blocks and len(block_names) != num_blocks:
        run.warnings.append(
            f"metrics.json names {len(block_names)} blocks but predictions carry {num_blocks}; block names ignored"
        )
    channels = metrics.get("block_channels")
    if num_blocks and not (isinstance(channels, list) and len(channels) == num_blocks):
        run.warnings.append(
            f"metrics.json has no channel count for each of the {num_blocks} gated blocks (block_channels; it was "
            "written by an older evaluation): the skip/reuse/keep mix of this run weights every gated block "
            "equally instead of by its channels. Evaluate again (adafuse eval) for the channel-weighted mix."
        )
    return run
