"""Model names -> builders: a plain dict filled by the :func:`register_model` decorator.

This module imports nothing of the model families; each family module (``resnet``, ``bninception``,
``efficientnet``, ``baselines``) registers its own builders when it is imported, and
``adafuse.models`` imports every family. A new family is one new module that calls :func:`register_model`
plus one import line in ``adafuse/models/__init__.py``.

A registered entry is strict: an argument the builder does not take raises ``TypeError`` naming the valid
ones, and the model's ``build_config`` records every argument of the builder (defaults included, fixed
registration arguments excluded), so ``MODELS[model.arch](**model.build_config)`` rebuilds it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

Builder = Callable[..., nn.Module]


def _plain(value: Any) -> Any:
    """Tuples -> lists (recursively), so a build_config compares equal after a checkpoint round trip."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class RegisteredModel:
    """A builder with some arguments fixed at registration (``depth="resnet18"``), called with keywords only.

    ``arguments``: the keywords a caller may pass, with their defaults. A fixed argument may be passed
    again only with its fixed value (checkpoints written before it was fixed carry it).
    """

    def __init__(self, name: str, builder: Builder, fixed: dict[str, Any]) -> None:
        params = inspect.signature(builder).parameters
        unknown = set(fixed) - set(params)
        if unknown:
            raise TypeError(f"{name}: fixed arguments {sorted(unknown)} are not parameters of {builder.__name__}")
        if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values()):
            raise TypeError(f"{name}: builder {builder.__name__} must not take *args/**kwargs (unknown keywords "
                            "would be silently accepted)")
        self.name, self.builder, self.fixed = name, builder, dict(fixed)
        self.arguments = {k: p.default for k, p in params.items() if k not in fixed}
        required = [k for k, v in self.arguments.items() if v is inspect.Parameter.empty]
        if required:
            raise TypeError(f"{name}: builder arguments {required} need defaults")
        self.__doc__ = builder.__doc__

    def __repr__(self) -> str:
        fixed = ", ".join(f"{k}={v!r}" for k, v in self.fixed.items())
        return f"RegisteredModel({self.name!r}: {self.builder.__name__}({fixed}))"

    def __call__(self, **kwargs: Any) -> nn.Module:
        unknown = sorted(set(kwargs) - set(self.arguments) - set(self.fixed))
        if unknown:
            raise TypeError(f"model {self.name!r} got unexpected arguments {unknown}; "
                            f"valid arguments: {', '.join(sorted(self.arguments))}")
        for key in set(kwargs) & set(self.fixed):
            if _plain(kwargs.pop(key)) != _plain(self.fixed[key]):
                raise TypeError(f"model {self.name!r} fixes {key}={self.fixed[key]!r}; use another model name "
                                "to change it")
        config = {k: _plain(kwargs.get(k, default)) for k, default in self.arguments.items()}
        model = self.builder(**self.fixed, **kwargs)
        model.arch = self.name
        model.build_config = config
        return model


MODELS: dict[str, RegisteredModel] = {}


def register_model(name: str, builder: Builder | None = None, **fixed: Any) -> Any:
    """Register ``builder`` (keyword arguments with defaults, no ``**kwargs``) under ``name``.

    ``@register_model("my_net")`` decorates a builder; ``register_model("tsn_r18", tsn_resnet,
    depth="resnet18")`` registers an existing one with some arguments fixed. Returns the builder.
    """

    def add(fn: Builder) -> Builder:
        if name in MODELS:
            raise RuntimeError(f"model name {name!r} is registered twice ({MODELS[name]!r} and {fn.__name__})")
        MODELS[name] = RegisteredModel(name, fn, fixed)
        return fn

    return add(builder) if builder is not None else add


def builder_arguments(name: str) -> dict[str, Any]:
    """The keywords model ``name`` accepts, with their defaults (``KeyError`` for an unknown name)."""
    return dict(_entry(name).arguments)


def _entry(name: str) -> RegisteredModel:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(
    name: str,
    num_classes: int = 174,
    num_frames: int = 8,
    policy_hidden: int | None = None,
    pretrained: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model by name (see ``model_names()``); unknown keywords raise ``TypeError``.

    ``policy_hidden=None`` leaves the model's default (and is accepted by models without a policy
    network). ``pretrained``: path of an ImageNet state-dict file for the backbone (which file for which
    backbone: docs/pretrained.md; loaded by :func:`adafuse.models.pretrained.load_backbone_weights`, which logs
    what it loaded); the classifier and policy layers always start from scratch.
    """
    entry = _entry(name)
    if policy_hidden is not None:
        kwargs["policy_hidden"] = policy_hidden
    model = entry(num_classes=num_classes, num_frames=num_frames, **kwargs)
    if pretrained:
        from adafuse.models.pretrained import load_backbone_weights

        load_backbone_weights(model, pretrained)
    return model


def model_names() -> list[str]:
    return sorted(MODELS)

