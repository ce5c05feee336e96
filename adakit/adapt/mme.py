"""MME: minimax entropy for semi-supervised domain adaptation (Saito et al., ICCV 2019)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from adakit.adapt._regularizers import adversarial_entropy
from adakit.adapt.base import Batch, Objective
from adakit.params import Params
from adakit.registry import register_objective


class MMEParams(Params):
    entropy_weight: float = Field(0.1, ge=0, description="weight λ of the entropy term (paper: 0.1)")
    grl_coeff: float = Field(1.0, ge=0, description="gradient reversal coefficient (MME code: eta = 1, constant)")


@register_objective("mme")
class MME(Objective):
    """MME: the cosine head maximises, the features minimise the target entropy (Saito et al., ICCV 2019, Eq. 4-6).

    Needs the cosine head (``required_head = "cosine"``: L2-normalised features and weights, temperature
    ``model.temperature`` = 0.05). ``entropy`` = −λ·mean H(softmax(head(R(f_u)))) on the unlabelled target batch,
    R the gradient reversal (constant coefficient, as the MME code's ``adentropy``): descending it raises H
    through the head and lowers H through the features. λ = ``entropy_weight`` = 0.1. The cross-entropy terms
    are the base class's (S+T or S∪T by ``train.labelled_target``).
    """

    Params = MMEParams
    uses_unlabelled = True
    required_head = "cosine"

    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        return {"entropy": adversarial_entropy(model.head, batch.fu, self.params.entropy_weight, self.params.grl_coeff)}
