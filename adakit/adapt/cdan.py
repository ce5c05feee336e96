"""CDAN and CDAN+E: conditional adversarial domain adaptation (Long et al., NeurIPS 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from adakit.adapt._regularizers import domain_adversarial_loss, entropy, source_rows
from adakit.adapt.base import Batch, Objective, ObjectiveParams
from adakit.models.discriminators import MULTILINEAR_MAX_DIM, DomainDiscriminator, conditioning_map
from adakit.models.grl import grl_schedule
from adakit.registry import register_objective


class CDANParams(ObjectiveParams):
    trade_off: float = Field(1.0, ge=0, description="weight of the adversarial term (CDAN code: 1)")
    grl_max: float = Field(1.0, ge=0, description="maximum GRL coefficient of the schedule (CDAN code: 1)")
    grl_alpha: float = Field(10.0, ge=0, description="GRL schedule steepness (CDAN code: 10)")
    hidden: int = Field(1024, ge=1, description="discriminator width (CDAN code: 1024)")
    dropout: float = Field(0.5, ge=0, lt=1, description="discriminator dropout (CDAN code: 0.5)")
    max_multilinear_dim: int = Field(MULTILINEAR_MAX_DIM, ge=1,
                                     description="use the random multilinear map when m·C exceeds this (4096)")
    random_dim: int = Field(1024, ge=1, description="output size d of the random multilinear map (CDAN: 1024)")


@register_objective("cdan")
class CDAN(Objective):
    """CDAN: domain discriminator on the multilinear conditioning f ⊗ p (Long et al., NeurIPS 2018, Eq. 4-7).

    T(f, p) = f ⊗ p flattened (Eq. 4) while m·C ≤ 4096, else (R_f f ⊙ R_g p)/√d with fixed Gaussian
    R_f, R_g and d = 1024 (Eq. 5). As in the released CDAN code (``loss.CDAN``: ``input_list[1].detach()``)
    p = softmax(z) is **detached**: the adversarial gradient reaches the features through f only. The reversal
    sits on T(f, p) with coefficient λ(progress) (the code's ``grl_hook`` on the discriminator input);
    ``adversarial`` = trade_off · ½(BCE_S + BCE_T), source = 1, target = 0; source rows vs unlabelled target.
    """

    Params = CDANParams
    uses_unlabelled = True
    #: CDAN+E's entropy conditioning
    entropy_weighting = False

    def __init__(self, params: CDANParams, feature_dim: int, num_classes: int, pool_size: int = 0):
        super().__init__(params, feature_dim, num_classes, pool_size)
        self.map = conditioning_map(feature_dim, num_classes, params.max_multilinear_dim, params.random_dim)
        self.discriminator = DomainDiscriminator(self.map.out_dim, params.hidden, dropout=params.dropout)

    def entropy_weights(self, z: torch.Tensor) -> torch.Tensor:
        """CDAN+E's w = 1 + exp(−H(p)) (Eq. 8), detached (the weights are constants of the loss)."""
        return 1.0 + torch.exp(-entropy(z.detach()))

    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        p = self.params
        mask = source_rows(batch)
        fs, zs = batch.fs[mask], batch.zs[mask]
        hs = self.map(fs, F.softmax(zs.detach().float(), dim=1).to(fs.dtype))
        ht = self.map(batch.fu, F.softmax(batch.zu.detach().float(), dim=1).to(batch.fu.dtype))
        ws = wt = None
        if self.entropy_weighting:
            ws, wt = self.entropy_weights(zs), self.entropy_weights(batch.zu)
        coeff = grl_schedule(progress, p.grl_max, p.grl_alpha)
        return {"adversarial": p.trade_off * domain_adversarial_loss(self.discriminator, hs, ht, coeff, ws, wt)}


@register_objective("cdan_e")
class CDANE(CDAN):
    """CDAN+E: CDAN with entropy conditioning w = 1 + e^{−H(p)} (Long et al., NeurIPS 2018, Eq. 8).

    Each sample's BCE is weighted by w, normalised within each domain so that each domain's weights sum to 1
    (the CDAN code). The weights are detached: the CDAN code also back-propagates a reversed gradient through
    H(p) via the weights, a side effect the paper's Eq. 8 does not state; adakit (as Transfer-Learning-Library)
    treats them as constants.
    """

    entropy_weighting = True
