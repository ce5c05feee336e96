"""Source-only training and fine-tuning on source + labelled target (docs/methods.md, Objectives)."""

from __future__ import annotations

from adakit.adapt.base import Objective
from adakit.registry import register_objective


@register_objective("finetune")
class FineTune(Objective):
    """Cross-entropy on source and labelled target (S∪T or S+T by train.labelled_target)."""


@register_objective("source_only")
class SourceOnly(Objective):
    """Cross-entropy on source only; target labels are never used (the no-adaptation baseline)."""

    uses_labelled = False
