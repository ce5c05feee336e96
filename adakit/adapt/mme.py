"""MME: minimax entropy for semi-supervised domain adaptation (Saito et al., ICCV 2019)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adakit.adapt.base import Objective, ObjectiveParams
from adakit.registry import register_objective


class MMEParams(ObjectiveParams):
    omega: Literal["mme"] = Field("mme", description="MME is fine-tuning with Ω_MME (always 'mme')")


@register_objective("mme")
class MME(Objective):
    """MME: the cosine head maximises, the features minimise the target entropy (Saito et al., ICCV 2019, Eq. 4-6).

    Fine-tuning with the Ω_MME regulariser that every objective can add (``objective.omega=mme``, see
    ``Objective.omega_terms``): the cosine head (L2-normalised features and weights, temperature
    ``model.temperature`` = 0.05) and ``mme_entropy`` = −λ·mean H(softmax(head(R(f_u)))) on the unlabelled target
    batch, R the gradient reversal (constant coefficient, as the MME code's ``adentropy``). λ =
    ``entropy_weight`` = 0.1. The cross-entropy terms are S+T or S∪T by ``train.labelled_target``.
    """

    Params = MMEParams
    uses_unlabelled = True
    required_head = "cosine"
