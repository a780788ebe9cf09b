"""Stages of the sparse executor, one module per backbone family.

:mod:`~adafuse.inference.stages.common` holds the gate bookkeeping, the :class:`Stage` interface and the
registry; :mod:`.resnet`, :mod:`.bninception` and :mod:`.efficientnet` each register a stage builder for their
backbone class. A new backbone family adds one module here with a ``@register_stages(MyBackbone)`` builder
(and imports it below).
"""

from adafuse.inference.stages import bninception, efficientnet, resnet  # noqa: F401  (register the families)
from adafuse.inference.stages.common import (
    STAGE_BUILDERS,
    Clip,
    Compact,
    ConvStage,
    Feature,
    Gate,
    GateFactory,
    Stage,
    StageBuilder,
    StepContext,
    as_batch,
    as_frames,
    densify,
    gap,
    max_pool,
    register_stages,
    run_pool,
    stage_builder,
)
from adafuse.inference.stages.resnet import ResidualStage

__all__ = [
    "STAGE_BUILDERS", "Clip", "Compact", "ConvStage", "Feature", "Gate", "GateFactory", "ResidualStage", "Stage",
    "StageBuilder", "StepContext", "as_batch", "as_frames", "densify", "gap", "max_pool", "register_stages",
    "run_pool", "stage_builder",
]
