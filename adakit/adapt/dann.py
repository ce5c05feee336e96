"""DANN: domain-adversarial training through gradient reversal (Ganin et al., JMLR 2016)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from adakit.adapt._regularizers import domain_adversarial_loss, source_rows
from adakit.adapt.base import Batch, Objective, ObjectiveParams
from adakit.models.discriminators import DomainDiscriminator
from adakit.models.grl import grl_schedule
from adakit.registry import register_objective


class DANNParams(ObjectiveParams):
    trade_off: float = Field(1.0, ge=0, description="weight of the adversarial term (DANN/CDAN code: 1)")
    grl_max: float = Field(1.0, ge=0, description="maximum GRL coefficient λ of the schedule (paper: 1)")
    grl_alpha: float = Field(10.0, ge=0, description="GRL schedule steepness (paper: 10)")
    hidden: int = Field(1024, ge=1, description="discriminator width (paper: 1024; e.g. 256 on small data)")
    dropout: float = Field(0.5, ge=0, lt=1, description="discriminator dropout (DANN/CDAN code: 0.5)")


@register_objective("dann")
class DANN(Objective):
    """DANN: domain discriminator on f through a gradient reversal layer (Ganin et al., JMLR 2016, Eq. 9-10, 18).

    Terms: cross-entropy (base) + ``adversarial`` = trade_off · ½(BCE_S(d(R_λ(f)), 1) + BCE_T(d(R_λ(f)), 0)),
    λ(progress) = grl_max·(2/(1 + exp(−grl_alpha·progress)) − 1) (§5.2.2). The discriminator minimises the BCE,
    the features receive −λ times its gradient. Source rows vs the unlabelled target batch (labelled target
    rows count for the cross-entropy only). Provides ``domain_discriminator`` (f → logit; sigmoid = P(source))
    for AADA.
    """

    Params = DANNParams
    uses_unlabelled = True
    provides = frozenset({"domain_discriminator"})

    def __init__(self, params: DANNParams, feature_dim: int, num_classes: int, pool_size: int = 0):
        super().__init__(params, feature_dim, num_classes, pool_size)
        self.domain_discriminator: nn.Module = DomainDiscriminator(feature_dim, params.hidden,
                                                                   dropout=params.dropout)

    def grl_coeff(self, progress: float) -> float:
        return grl_schedule(progress, self.params.grl_max, self.params.grl_alpha)

    def adversarial_loss(self, batch: Batch, progress: float) -> torch.Tensor:
        fs = batch.fs[source_rows(batch)]
        return domain_adversarial_loss(self.domain_discriminator, fs, batch.fu, self.grl_coeff(progress))

    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        return {"adversarial": self.params.trade_off * self.adversarial_loss(batch, progress)}
