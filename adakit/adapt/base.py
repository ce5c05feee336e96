"""Objective: turns one step's source / labelled-target / unlabelled-target outputs into loss terms.

The `Trainer` draws the batches, runs the model once over their concatenation and hands the
`Batch` (inputs, labels, sample indices, features f and logits z of each part) to the objective,
which returns named terms, e.g. ``{"ce_source": ..., "ce_target": ..., "transfer": ...}``; their sum
is minimised. An objective owns its extra modules (discriminators, centroid memories); their
parameters are trained at the new-layer learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adakit.params import Params


@dataclass
class Batch:
    """One training step. ``s``: source (+ labelled target under S∪T), ``l``: labelled target (S+T),
    ``u``: unlabelled target. Indices refer to the source domain / target pool."""

    xs: torch.Tensor
    ys: torch.Tensor
    idx_s: torch.Tensor
    xl: torch.Tensor | None = None
    yl: torch.Tensor | None = None
    idx_l: torch.Tensor | None = None
    xu: torch.Tensor | None = None
    idx_u: torch.Tensor | None = None
    # filled by the trainer's forward pass
    fs: torch.Tensor | None = None
    zs: torch.Tensor | None = None
    fl: torch.Tensor | None = None
    zl: torch.Tensor | None = None
    fu: torch.Tensor | None = None
    zu: torch.Tensor | None = None
    # True where a row of xs is a labelled target sample (S∪T)
    target_in_s: torch.Tensor | None = None


class Objective(nn.Module):
    """Base objective: cross-entropy on source and labelled target (fine-tuning)."""

    Params = Params
    #: the trainer draws unlabelled target batches only for objectives that use them
    uses_unlabelled: bool = False
    #: labelled target samples are trained on (False: source only)
    uses_labelled: bool = True
    #: what strategies may ask of this objective (e.g. "domain_discriminator")
    provides: frozenset[str] = frozenset()
    #: head the model must have ("cosine" for MME); None leaves model.head as configured
    required_head: str | None = None

    def __init__(self, params: Params, feature_dim: int, num_classes: int, pool_size: int = 0):
        super().__init__()
        self.params = params
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.pool_size = pool_size  # target pool size, for per-sample memories (BIWAA)

    def classification_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z, y)

    def supervised_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        terms = {"ce_source": self.classification_loss(batch.zs, batch.ys)}
        if batch.zl is not None and len(batch.zl):
            terms["ce_target"] = self.classification_loss(batch.zl, batch.yl)
        return terms

    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        """Adaptation terms; ``progress`` runs from 0 to 1 over the current fit."""
        return {}

    def forward(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        return {**self.supervised_terms(batch), **self.transfer_terms(model, batch, progress)}

    def on_round_start(self, round_index: int) -> None:
        """Hook called before each fit (warm-up is round 0)."""
