"""TSF: the transferability loss with a class-level discriminator, as SAGE trains it (Bouvier et al., 2022)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from adakit.adapt._regularizers import source_rows
from adakit.adapt.base import Batch, Objective, ObjectiveParams
from adakit.models.discriminators import ClassDiscriminator
from adakit.models.grl import grad_reverse, grl_schedule
from adakit.registry import register_objective


class TSFParams(ObjectiveParams):
    trade_off: float = Field(1.0, ge=0, description="weight λ of L_TSF (SAGE Eq. 2)")
    grl_max: float = Field(1.0, ge=0, description="maximum GRL coefficient of the schedule")
    grl_alpha: float = Field(10.0, ge=0, description="GRL schedule steepness")
    hidden: int = Field(1024, ge=1, description="class discriminator width")
    dropout: float = Field(0.5, ge=0, lt=1, description="class discriminator dropout")


def transferability_loss(logits_s: torch.Tensor, ys: torch.Tensor, logits_t: torch.Tensor,
                         pt: torch.Tensor) -> torch.Tensor:
    """−L_TSF = −E_S[y·log(1 − d(f))] − E_T[p·log d(f)] from the discriminator's logits (d = sigmoid).

    Written with log-sigmoids: log d = logσ(l), log(1 − d) = logσ(−l).
    """
    src = -F.logsigmoid(-logits_s.gather(1, ys.unsqueeze(1)).squeeze(1))
    tgt = -(pt * F.logsigmoid(logits_t)).sum(1)
    return src.mean() + tgt.mean()


@register_objective("tsf")
class TSF(Objective):
    """TSF: adversarial transferability loss with a class-level discriminator (SAGE, Bouvier et al. 2022, Eq. 2).

    d: R^m → [0, 1]^C (``class_discriminator``, logits; d_c = sigmoid). ``tsf`` = trade_off ·
    (−E_S[y·log(1 − d(R(f)))] − E_T[p·log d(R(f))]), y one-hot source labels, p = softmax(z) of the
    unlabelled target batch, **detached**; R the gradient reversal with λ(progress): the discriminator minimises
    this BCE form (d_c → 0 on source of class c, → 1 on target weighted by p_c), the features maximise it (SAGE
    Eq. 2: L_S − λ·inf_d L_TSF). Source rows vs unlabelled target (SAGE Alg. 2 computes L_TSF on B_S and B_Tu).
    SAGE's regulariser Ω: S∪T or S+T is ``train.labelled_target``; Ω_MME is ``objective.omega=mme`` (= ``tsf_mme``).
    """

    Params = TSFParams
    uses_unlabelled = True
    provides = frozenset({"class_discriminator"})

    def __init__(self, params: TSFParams, feature_dim: int, num_classes: int, pool_size: int = 0):
        super().__init__(params, feature_dim, num_classes, pool_size)
        self.class_discriminator: nn.Module = ClassDiscriminator(feature_dim, num_classes, params.hidden,
                                                                 dropout=params.dropout)

    def tsf_loss(self, batch: Batch, progress: float) -> torch.Tensor:
        p = self.params
        mask = source_rows(batch)
        fs, ys = batch.fs[mask], batch.ys[mask]
        coeff = grl_schedule(progress, p.grl_max, p.grl_alpha)
        logits = self.class_discriminator(grad_reverse(torch.cat([fs, batch.fu]), coeff)).float()
        pt = F.softmax(batch.zu.detach().float(), dim=1)
        return transferability_loss(logits[: len(fs)], ys, logits[len(fs):], pt)

    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        return {"tsf": self.params.trade_off * self.tsf_loss(batch, progress)}


class TSFMMEParams(TSFParams):
    omega: Literal["mme"] = Field("mme", description="TSF with Ω_MME (always 'mme')")


@register_objective("tsf_mme")
class TSFMME(TSF):
    """TSF + Ω_MME: the transferability loss plus MME's minimax entropy (SAGE §3.5, Eq. 10; Saito et al. 2019).

    The name of SAGE's paper for ``tsf`` with ``objective.omega=mme``: terms ``tsf`` as in ``tsf`` plus
    ``mme_entropy`` = −λ·mean H(softmax(head(R(f_u)))) (``Objective.omega_terms``), with the cosine head.
    """

    Params = TSFMMEParams
    required_head = "cosine"
