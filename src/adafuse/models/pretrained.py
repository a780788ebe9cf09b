"""ImageNet weights for a model's backbone, from a state-dict file the user already has.

This library never downloads weights. Which file to fetch for each backbone, where it is published, its
checksum and the training command are in docs/pretrained.md. (The backbone modules document the exact key
names they expect.)

Matching is generic: after unwrapping (``{"state_dict": ...}`` / ``{"model": ...}``) and stripping prefixes
(``module.`` of DataParallel; ``backbone.`` when the file is one of our own checkpoints), the file's keys must
be exactly the keys of ``model.backbone.state_dict()``, except

- the ImageNet classifier (``fc.*``, ``last_linear.*``, ``classifier.*``) which is ignored,
- the policy/fusion parameters (anything inside an ``AdaptiveFusion``), which start from scratch,
- ``num_batches_tracked`` buffers, absent from older torchvision files.

A backbone may translate another published layout first (``convert_pretrained_keys``: the BN-Inception port's
names, lukemelas' EfficientNet-PyTorch names of the EfficientNet-Lite0 file).

Every load logs to the ``adafuse`` logger one INFO line ``loaded N of M backbone tensors from FILE`` (what
starts from scratch, what of the file was ignored), and a WARNING naming missing and unexpected keys (at most
``MAX_LISTED`` names each) when ``strict=False`` lets some through.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from adafuse.models.fusion import AdaptiveFusion

CLASSIFIER_PREFIXES = ("fc.", "last_linear.", "classifier.")
WRAPPER_KEYS = ("state_dict", "model")
MAX_LISTED = 20
log = logging.getLogger("adafuse")


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did (key names are the backbone's)."""

    path: str
    total: int = 0  # tensors of the backbone's state dict (policy ones included)
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # keys of the file not meant for the backbone (classifier)
    policy_from_scratch: list[str] = field(default_factory=list)  # fusion/policy keys absent from the file
    buffers_from_scratch: list[str] = field(default_factory=list)  # num_batches_tracked absent from the file
    missing: list[str] = field(default_factory=list)  # only filled with strict=False
    unexpected: list[str] = field(default_factory=list)  # only filled with strict=False

    def summary(self) -> str:
        """One line: ``loaded N of M backbone tensors from FILE; ...`` (counts only; names in :meth:`problems`)."""
        parts = [f"loaded {len(self.loaded)} of {self.total} backbone tensors from {self.path}"]
        if self.policy_from_scratch:
            parts.append(f"{len(self.policy_from_scratch)} policy tensors start from scratch")
        if self.buffers_from_scratch:
            parts.append(f"{len(self.buffers_from_scratch)} num_batches_tracked buffers absent from the file")
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)} keys of the file not meant for the backbone "
                         f"({_listing(self.ignored, 4)})")
        if self.missing:
            parts.append(f"{len(self.missing)} backbone tensors MISSING")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys")
        return "; ".join(parts)

    def problems(self) -> str | None:
        """Missing and unexpected keys by name (at most ``MAX_LISTED`` each), or None when there are none."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} backbone tensors missing from the file keep their initial values: "
                         f"{_listing(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} keys of the file do not exist in the backbone and were not "
                         f"loaded: {_listing(self.unexpected)}")
        return f"{self.path}: " + "; ".join(parts) if parts else None


def _listing(keys: list[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Load a state dict from ``path`` with ``weights_only=True``, unwrapped and with ``module.`` stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused, truncated file, not a torch file
        raise ValueError(f"cannot read {path} as a PyTorch state dict (torch.load(weights_only=True) failed: "
                         f"{type(e).__name__}: {e})") from e
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj: object, source: str = "state dict") -> dict[str, Tensor]:
    """``{"state_dict": sd}`` / ``{"model": sd}`` -> ``sd``; strips ``module.`` prefixes; checks every value is
    a tensor."""
    for _ in range(3):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{source} is not a state dict (a mapping of names to tensors); got {type(obj).__name__}")
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{source} is not a state dict: key {key!r} holds a {type(value).__name__}, not a tensor")
        name = str(key)
        while name.startswith("module."):
            name = name[len("module."):]
        out[name] = value
    return out


def fusion_keys(module: nn.Module) -> set[str]:
    """State-dict keys of ``module`` that belong to its fusion modules (policy parameters and buffers)."""
    prefixes = tuple(f"{name}." for name, m in module.named_modules() if isinstance(m, AdaptiveFusion))
    return {k for k in module.state_dict() if prefixes and k.startswith(prefixes)}


def load_backbone_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load an ImageNet state-dict file into ``model.backbone`` (or ``model`` itself if it has no backbone).

    Weights cannot be downloaded by this library: pass a file you fetched (docs/pretrained.md names them).
    Accepts plain state dicts and ``{"state_dict"|"model": ...}`` wrappers, with
    ``module.`` prefixes; a file whose keys start with ``backbone.`` (our checkpoints) contributes those keys.

    Raises ``FileNotFoundError`` (no file), ``ValueError`` (not a state dict; a shape mismatch, naming the key
    and both shapes; with ``strict``: backbone keys missing from the file or file keys the backbone does not
    have, listed). Policy/fusion parameters are expected to be absent and start from scratch. Logs the
    report's :meth:`LoadReport.summary` (INFO) and :meth:`LoadReport.problems` (WARNING) to ``adafuse``.
    """
    backbone = getattr(model, "backbone", model)
    source = read_state_dict(path)
    report = LoadReport(path=str(path))
    if any(k.startswith("backbone.") for k in source):
        report.ignored += sorted(k for k in source if not k.startswith("backbone."))
        source = {k[len("backbone."):]: v for k, v in source.items() if k.startswith("backbone.")}
    elif hasattr(backbone, "convert_pretrained_keys"):
        source = backbone.convert_pretrained_keys(source)  # e.g. BN-Inception port names -> ours

    target = backbone.state_dict()
    report.total = len(target)
    policy = fusion_keys(backbone)
    for key in sorted(set(source) - set(target)):
        if key.startswith(CLASSIFIER_PREFIXES):
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    for key in target:
        if key in source:
            continue
        if key in policy:
            report.policy_from_scratch.append(key)
        elif key.endswith("num_batches_tracked"):
            report.buffers_from_scratch.append(key)
        else:
            report.missing.append(key)

    if strict and report.missing:
        raise ValueError(f"{path}: {len(report.missing)} backbone tensors are missing from the file: "
                         f"{_listing(report.missing)}")
    if strict and report.unexpected:
        raise ValueError(f"{path}: {len(report.unexpected)} keys of the file do not exist in the backbone "
                         f"({type(backbone).__name__}): {_listing(report.unexpected)}")

    load = {}
    for key, value in source.items():
        if key not in target:
            continue
        if value.shape != target[key].shape:
            raise ValueError(f"{path}: shape mismatch for {key!r}: the model expects {tuple(target[key].shape)}, "
                             f"the file has {tuple(value.shape)}")
        load[key] = value
    backbone.load_state_dict(load, strict=False)
    report.loaded = list(load)
    log.info("%s", report.summary())
    problems = report.problems()
    if problems:
        log.warning("%s", problems)
    return report
