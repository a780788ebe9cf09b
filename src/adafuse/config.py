"""The configuration schema: every option of `adafuse train` / `adafuse eval`, with its default and meaning.

A config has six sections — ``model``, ``data``, ``optim``, ``train``, ``eval``, ``run`` — each a dataclass
below; ``configs/defaults.yaml`` is this schema rendered to YAML with the help text as comments
(:func:`defaults_yaml`; a test keeps them in sync). A preset YAML file sets only what differs and may start
from other files with ``_base_: other.yaml`` (or a list of files, merged in order; paths relative to the
file). Command-line overrides are dotted ``key=value`` pairs whose value is parsed as YAML
(``optim.lr=0.01 optim.lr_steps=[20,40] model.name=tsn_r18``).

Unknown keys (in a file or an override) and values of the wrong type are errors that name the key, the
file, and the closest valid key.

Usage::

    cfg = load_config("configs/sthv1/adafuse_tsn_r50_8x1x1_50e_sthv1.yaml", ["optim.lr=0.01"])
    cfg.optim.lr, cfg.to_dict(), Config.from_dict(d)
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Union

import yaml

BASE_KEY = "_base_"


class ConfigError(ValueError):
    """A bad config file, key or value; the message names the key (and file) at fault."""


def opt(default: Any, help: str, choices: tuple[Any, ...] | None = None) -> Any:
    """A config field: ``default`` (lists/dicts are copied per instance), one-line ``help``, allowed ``choices``."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


@dataclass
class ModelConfig:
    """The network (see `adafuse models` for names and costs)."""

    name: str = opt("adafuse_tsn_r50", "registered model name, e.g. tsn_r18, adafuse_tsn_r50, adafuse_tsm_last_r50")
    num_classes: int | None = opt(None, "classifier size; null = number of lines of data.classes (must agree "
                                        "with the data when both are given)")
    num_frames: int = opt(8, "frames per clip T (TSN segments)")
    policy_hidden: int | None = opt(None, "hidden units of each policy MLP; null = the paper's rule for the model "
                                          "(R50 quota 196608/C shared, R18 512, TSM+Last 1024)")
    dropout: float = opt(0.5, "dropout before the classifier")
    pretrained: str | None = opt(None, "ImageNet state-dict file for the backbone (files and commands: "
                                       "docs/pretrained.md); null = from scratch. Classifier and policy always "
                                       "start from scratch")
    kwargs: dict[str, Any] = opt({}, "extra builder arguments of this model (e.g. tau: 0.67, width: 32); a key "
                                     "the builder does not take is an error")


@dataclass
class DataConfig:
    """Datasets, clip sampling and augmentation (TSN segment sampling, docs/paper-and-code.md#data)."""

    root: str = opt("", "directory that relative paths in the list files are relative to; empty = the list "
                        "file's directory")
    train_list: str = opt("", "training list file: '<dir> <num_frames> <label>' or '<video> <label>' per line")
    val_list: str = opt("", "validation list file (same format); what `adafuse eval` evaluates")
    classes: str | None = opt(None, "classes.txt (one class name per line, line number = label); null = "
                                    "classes.txt next to train_list if present, else numbered classes")
    list_kind: str = opt("auto", "list lines are frame folders, video files, or auto (by file extension)",
                         choices=("auto", "frames", "video"))
    frame_template: str = opt("{:05d}.jpg", "frame file names inside a frame folder (str.format of the index)")
    frame_start: int = opt(1, "index of the first frame file (1 for {:05d}.jpg TSM-style folders)")
    sampling: str = opt("tsn", "frame sampling: tsn (one frame per segment) or dense (stride apart)",
                        choices=("tsn", "dense"))
    dense_stride: int = opt(2, "frame stride of dense sampling")
    input_size: int = opt(224, "crop side in pixels (train and eval)")
    scale_size: int = opt(256, "eval, predict, export: resize the short side to this before the centre crop "
                               "(stored in the checkpoint's preprocessing)")
    scales: list[float] = opt([1.0, 0.875, 0.75, 0.66], "train multi-scale crop: crop sides as fractions of "
                                                        "the short side")
    flip: bool = opt(False, "random horizontal flip in training (Kinetics-like data only, never Something/Jester)")
    flip_label_pairs: list[list[int]] = opt([], "with flip: label pairs swapped by a flip, e.g. [[86, 87], [93, 94]]")
    batch_size: int = opt(64, "training clips per step over all processes (divided by the world size)")
    num_workers: int = opt(4, "data-loading processes per training process (0 = in the main process)")
    on_error: str = opt("raise", "unreadable video: raise (stop, naming file:line) or skip (drop and count)",
                        choices=("raise", "skip"))


@dataclass
class OptimConfig:
    """SGD with step learning-rate schedule (docs/paper-and-code.md#training-recipe)."""

    epochs: int = opt(50, "training epochs")
    name: str = opt("sgd", "optimizer: sgd (the paper) or adamw (decoupled weight decay; for training from scratch, "
                           "as the synthetic demo does)", choices=("sgd", "adamw"))
    lr: float = opt(0.02, "initial learning rate (released scripts 0.02 at batch 64; the paper text says 0.002); "
                          "scale it linearly with data.batch_size")
    momentum: float = opt(0.9, "SGD momentum (adamw: beta1)")
    weight_decay: float = opt(5e-4, "L2 weight decay (not applied to biases and normalisation layers)")
    bias_lr_mult: float = opt(2.0, "learning-rate multiplier of biases")
    schedule: str = opt("step", "learning-rate schedule: step (x lr_gamma at lr_steps, the paper) or cosine (to 0 at "
                                "the last epoch)", choices=("step", "cosine"))
    lr_steps: list[int] = opt([20, 40], "epochs at which the learning rate is multiplied by lr_gamma")
    lr_gamma: float = opt(0.1, "step factor of the learning rate")
    warmup_epochs: float = opt(0.0, "linear learning-rate warm-up from 0 over this many epochs (0 = none)")
    clip_grad_norm: float | None = opt(20.0, "clip gradients at this global L2 norm; null = no clipping")


@dataclass
class TrainConfig:
    """Loss and training loop."""

    flops_weight: float = opt(0.1, "lambda of the loss CE + lambda * G, G = batch-mean per-frame GFLOPs "
                                   "(released scripts: 0.125 SthV1, 0.075 SthV2; paper text 0.1)")
    flops_convention: str = opt("exact", "how G counts the masks: exact (what the sparse executor runs), "
                                         "released_real or released_upb (the released code's two formulas: "
                                         "SthV1 scripts train with upb, SthV2 with real); logs say which",
                                choices=("exact", "released_real", "released_upb"))
    flops_start_epoch: float = opt(0.0, "lambda is 0 before this epoch (lets a network trained from scratch learn "
                                        "features before the FLOPs term pushes the policy towards skipping)")
    flops_warmup_epochs: float = opt(0.0, "then ramp lambda linearly from 0 over this many epochs (0 = full at once)")
    budget_range: list[float] | None = opt(None, "budget-conditioned training: [lo, hi] fractions of the all-keep "
                                                 "GFLOPs; a target F is drawn per batch, given to the policy, and "
                                                 "budget_weight * |spent fraction - F| replaces lambda * G "
                                                 "(flops_start_epoch/flops_warmup_epochs ramp it; null = off)")
    budget_weight: float = opt(1.0, "weight of the distance to the target budget (with budget_range)")
    label_smoothing: float = opt(0.0, "label smoothing of the cross-entropy (0 = off, as the paper)")
    amp: str = opt("auto", "mixed precision: auto (bf16 if the GPU supports it, else fp16; off on CPU), bf16, fp16, "
                           "off", choices=("auto", "bf16", "fp16", "off"))
    checkpoint_every: int = opt(0, "also write last.pt every this many training steps inside an epoch (0 = only "
                                   "at epoch ends); resume continues from the exact step")
    eval_every: int = opt(1, "validate every this many epochs (and always after the last)")
    find_unused_parameters: str = opt("auto", "DDP find_unused_parameters: auto (probe the model once), true, false",
                                      choices=("auto", "true", "false"))


@dataclass
class EvalConfig:
    """Evaluation (`adafuse eval` and the validation inside training)."""

    decision: str = opt("argmax", "policy at test time: argmax (deterministic) or sample (seeded Gumbel, as the "
                                  "released code)", choices=("argmax", "sample"))
    seed: int = opt(0, "seed of decision=sample")
    num_clips: int = opt(1, "temporal views per video (logits averaged; GFLOPs counted for every view)")
    three_crop: bool = opt(False, "three spatial crops per clip (logits averaged) instead of one centre crop")
    batch_size: int = opt(16, "evaluation clips per step per process")
    checkpoint: str = opt("best", "which checkpoint of the run `adafuse eval` uses without --checkpoint: best or "
                                  "last", choices=("best", "last"))


@dataclass
class RunConfig:
    """Where and how the run executes."""

    name: str | None = opt(None, "run name; null = the config file name without .yaml")
    out_dir: str = opt("runs", "parent directory of run directories (the run writes to out_dir/name)")
    seed: int = opt(0, "seed of everything: model init, data order (per epoch), augmentation, Gumbel noise")
    device: str = opt("auto", "auto (cuda if available), cpu, cuda, or cuda:N")
    deterministic: bool = opt(False, "torch.use_deterministic_algorithms (bit-exact resume on CPU; slower on GPU)")
    resume: bool = opt(True, "continue from out_dir/name/checkpoints/last.pt when it exists")
    log_every: int = opt(20, "write a training line to metrics.jsonl every this many steps (0 = epoch ends only)")
    tensorboard: bool = opt(True, "also log to out_dir/name/tb when tensorboard is installed")
    progress: bool = opt(True, "tqdm progress bar with ETA (only on a TTY and on rank 0)")
    threads: int | None = opt(None, "torch CPU threads per process; null = torch's default")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "run": RunConfig,
}


@dataclass
class Config:
    """The whole configuration (one dataclass per section)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (YAML/JSON/``torch.load(weights_only=True)``-safe)."""
        return {name: {f.name: _copy(getattr(getattr(self, name), f.name)) for f in fields(cls)}
                for name, cls in SECTIONS.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Config:
        """Build and validate from a (partial) nested dict; missing keys take their defaults."""
        return _build(data, source)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# --------------------------------------------------------------------------------------------- loading


def all_keys() -> list[str]:
    """Every valid dotted key, ``section.option``."""
    return [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in fields(cls)]


def _suggest(key: str, candidates: list[str]) -> str:
    close = []
    if "." in key:  # the right option under the wrong section
        tail = key.rsplit(".", 1)[-1]
        close = [c for c in candidates if c.rsplit(".", 1)[-1] == tail][:1]
    close = close or difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a preset, resolving ``_base_`` files (relative to ``path``) recursively."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: circular _base_ chain: {' -> '.join(str(p) for p in (*chain, path))}")
    if not path.is_file():
        where = f" (named as _base_ in {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as err:  # position and problem only: never echo the file's text
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or type(err).__name__})") from None
    if not isinstance(data, dict):
        via = f" (named as _base_ in {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}{via}: a config file must be a mapping of sections, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return _check_keys(data, str(path))
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _merge(merged, _read_yaml(path.parent / base, (*chain, path)))
    return _merge(merged, _check_keys(data, str(path)))


def _check_keys(data: dict[str, Any], source: str) -> dict[str, Any]:
    keys = all_keys()
    for section, values in data.items():
        if section not in SECTIONS:
            name = str(section)[:40] + ("..." if len(str(section)) > 40 else "")
            raise ConfigError(f"{source}: unknown section '{name}'{_suggest(str(section), list(SECTIONS))}; "
                              f"sections are {', '.join(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping, got {type(values).__name__}")
        for key in values:
            dotted = f"{section}.{key}"
            if dotted not in keys:
                raise ConfigError(f"{source}: unknown key '{dotted}'{_suggest(dotted, keys)}")
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Section-wise merge: options of ``top`` replace those of ``base`` (lists and dicts replaced whole)."""
    out = {k: dict(v or {}) for k, v in base.items()}
    for section, values in top.items():
        out.setdefault(section, {}).update(values or {})
    return out


def parse_overrides(overrides: list[str]) -> dict[str, dict[str, Any]]:
    """``["optim.lr=0.01", "model.name=tsn_r18"]`` -> nested dict; values parsed as YAML."""
    keys = all_keys()
    out: dict[str, dict[str, Any]] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, _, raw = item.partition("=")
        key = key.strip()
        if key not in keys:
            raise ConfigError(f"unknown key '{key}' in command-line override {item!r}{_suggest(key, keys)}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> Config:
    """Defaults <- ``base`` dict (e.g. a checkpoint's config) <- YAML file (with ``_base_``) <- overrides.

    ``run.name`` defaults to the config file's stem.
    """
    data: dict[str, Any] = _check_keys(dict(base), "<checkpoint config>") if base else {}
    source = "<overrides>"
    if path is not None:
        source = str(path)
        data = _merge(data, _read_yaml(Path(path)))
    data = _merge(data, parse_overrides(list(overrides or [])))
    cfg = _build(data, source)
    if cfg.run.name is None and path is not None:
        cfg.run.name = Path(path).stem
    return cfg


def _build(data: dict[str, Any], source: str) -> Config:
    data = _check_keys(data, source)
    sections = {}
    for name, cls in SECTIONS.items():
        values = data.get(name) or {}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in fields(cls):
            if f.name in values:
                kwargs[f.name] = _coerce(values[f.name], hints[f.name], f"{name}.{f.name}", source,
                                         f.metadata.get("choices"))
        sections[name] = cls(**kwargs)
    return Config(**sections)


def _coerce(value: Any, tp: Any, key: str, source: str, choices: tuple[Any, ...] | None = None) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; errors name the key."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {key} must be {expected}, got {value!r}")

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, source, choices)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise fail("a number")
    if tp is str:
        if not isinstance(value, str):
            raise fail("a string")
        if choices and value not in choices:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(map(str, choices))}, got {value!r}"
                              f"{_suggest(value, list(choices))}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        return [_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail("a mapping")
        return dict(value)
    raise TypeError(f"unsupported config type {tp} for {key}")  # a schema bug, not a user error


# ------------------------------------------------------------------------------------ defaults file


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value) if "e" not in repr(value) else f"{value:.1e}".replace("e-0", "e-")
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def defaults_yaml() -> str:
    """``configs/defaults.yaml``: every option with its default and a comment (the schema rendered)."""
    lines = [
        "# Every option of `adafuse train` / `adafuse eval`, with its default. GENERATED from",
        "# src/adafuse/config.py (a test checks that they agree); regenerate with",
        "#   python -m adafuse.config > configs/defaults.yaml",
        "# Presets under configs/ set only what differs (and may start from other files with `_base_:`);",
        "# the command line overrides any option as section.key=value, e.g. optim.lr=0.01.",
    ]
    for name, cls in SECTIONS.items():
        lines += ["", f"{name}:  # {(cls.__doc__ or '').strip()}"]
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            help_text = f.metadata.get("help", "")
            choices = f.metadata.get("choices")
            if choices:
                help_text += f" [{' | '.join(map(str, choices))}]"
            lines.append(f"  # {help_text}")
            lines.append(f"  {f.name}: {_yaml_value(default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(defaults_yaml(), end="")
