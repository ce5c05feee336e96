"""MSTN: moving semantic transfer network (Xie et al., ICML 2018)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from adakit.adapt._regularizers import class_means, source_rows
from adakit.adapt.base import Batch
from adakit.adapt.dann import DANN, DANNParams
from adakit.models.grl import grl_schedule
from adakit.registry import register_objective


class MSTNParams(DANNParams):
    semantic_weight: float = Field(1.0, ge=0, description="weight γ of the semantic loss (paper: γ = λ schedule)")
    decay: float = Field(0.3, gt=0, le=1, description="centroid update rate θ: C ← (1−θ)·C + θ·batch mean")


@register_objective("mstn")
class MSTN(DANN):
    """MSTN: DANN plus moving semantic alignment of class centroids (Xie et al., ICML 2018, Eq. 5-6, Alg. 1).

    Per domain, centroids C_k ← (1 − θ)·C_k + θ·mean(f of class k in the batch), θ = 0.3, updated only for the
    classes present in the batch (source: labels; target: pseudo-labels argmax z of the unlabelled batch).
    The old centroids are detached, so the gradient flows through the current batch's contribution
    (θ·batch mean), as in the paper's Algorithm 1. ``semantic`` = semantic_weight·λ(progress)·Σ_k ||C_S,k −
    C_T,k||² / K (docs/methods.md; the released TF code takes the mean over K·m entries instead, and moves absent
    classes towards zero). ``adversarial`` is the DANN term. Centroids are buffers (``source_centroids``,
    ``target_centroids``, (C, m)), updated in training mode only, saved with the state_dict and carried across rounds.
    """

    Params = MSTNParams

    def __init__(self, params: MSTNParams, feature_dim: int, num_classes: int, pool_size: int = 0):
        super().__init__(params, feature_dim, num_classes, pool_size)
        self.register_buffer("source_centroids", torch.zeros(num_classes, feature_dim))
        self.register_buffer("target_centroids", torch.zeros(num_classes, feature_dim))

    def moving_centroids(self, old: torch.Tensor, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """New centroids (C, m): (1 − θ)·old + θ·batch mean for present classes, old elsewhere (differentiable)."""
        means, present = class_means(f.float(), y, self.num_classes)
        theta = self.params.decay
        return torch.where(present.unsqueeze(1), (1 - theta) * old.detach() + theta * means, old.detach())

    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        mask = source_rows(batch)
        cs = self.moving_centroids(self.source_centroids, batch.fs[mask], batch.ys[mask])
        ct = self.moving_centroids(self.target_centroids, batch.fu, batch.zu.detach().argmax(1))
        semantic = ((cs - ct) ** 2).sum(1).mean()
        if self.training:  # (an objective in eval mode, e.g. a validation loss in your own loop, keeps them)
            with torch.no_grad():
                self.source_centroids.copy_(cs)
                self.target_centroids.copy_(ct)
        lam = grl_schedule(progress, self.params.grl_max, self.params.grl_alpha)
        return {"adversarial": self.params.trade_off * self.adversarial_loss(batch, progress),
                "semantic": self.params.semantic_weight * lam * semantic}
