"""Loss pieces shared by the adversarial objectives (DANN, CDAN, MSTN, MME, TSF).

Conventions (docs/methods.md, Protocols): the adversarial terms compare the **source** rows of the source
batch (labelled target rows folded in under S∪T are left out: they count for the cross-entropy only) with
the **unlabelled target** batch, as SAGE's Algorithm 2 computes L_TSF on B_S and B_Tu. Domain labels:
source = 1, target = 0 (docs/architecture.md: sigmoid of a domain discriminator = P(source)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from adakit.models.grl import grad_reverse

if TYPE_CHECKING:
    from adakit.adapt.base import Batch


def source_rows(batch: Batch) -> torch.Tensor:
    """Boolean mask of the rows of ``batch.fs`` that are source samples (not labelled target under S∪T)."""
    if batch.target_in_s is None:
        return torch.ones(len(batch.fs), dtype=torch.bool, device=batch.fs.device)
    return ~batch.target_in_s.to(batch.fs.device)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-row Shannon entropy H(softmax(z)) = −Σ_c p_c log p_c in nats, (N,), with 0·log 0 = 0 (a −inf logit,
    e.g. a masked class, gave NaN)."""
    logp = F.log_softmax(logits.float(), dim=1)
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(1)  # (masked before the product: no NaN
    # gradient either)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    return (weights * values).sum() / weights.sum()


def domain_adversarial_loss(discriminator: nn.Module, hs: torch.Tensor, ht: torch.Tensor, coeff: float,
                            ws: torch.Tensor | None = None, wt: torch.Tensor | None = None) -> torch.Tensor:
    """½·(mean_S BCE(d(R(h)), 1) + mean_T BCE(d(R(h)), 0)), R = gradient reversal with ``coeff``.

    Equals the DANN / CDAN codes' BCE mean over cat(source, target) when both batches have the same size.
    Optional per-sample weights (CDAN+E) are normalised within each domain, as in the CDAN code
    (``source_weight / sum(source_weight) + target_weight / sum(target_weight)``, then divided by the sum of
    all weights, i.e. 2). The discriminator minimises this loss; the features, through the reversal, maximise
    it scaled by ``coeff``.
    """
    h = grad_reverse(torch.cat([hs, ht]), coeff)
    logits = discriminator(h).float().squeeze(1)
    ls, lt = logits[: len(hs)], logits[len(hs):]
    bce_s = F.binary_cross_entropy_with_logits(ls, torch.ones_like(ls), reduction="none")
    bce_t = F.binary_cross_entropy_with_logits(lt, torch.zeros_like(lt), reduction="none")
    return 0.5 * (_weighted_mean(bce_s, ws) + _weighted_mean(bce_t, wt))


def adversarial_entropy(head: nn.Module, f: torch.Tensor, weight: float, coeff: float = 1.0) -> torch.Tensor:
    """MME's minimax entropy term −λ·mean H(softmax(head(R(f)))) (Saito et al., ICCV 2019, Eq. 4-5).

    Minimising it moves the head towards **higher** entropy; the reversal R (``coeff``) hands the features
    the gradient of +λ·coeff·H, so they move towards **lower** entropy (the MME code's ``adentropy``:
    ``lamda * mean(sum(p * log p))`` on ``F1(feat, reverse=True)``).
    """
    return -weight * entropy(head(grad_reverse(f, coeff))).mean()


def class_means(f: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of the rows of f (C, m) and a mask of the classes present in ``y`` (C,)."""
    onehot = F.one_hot(y, num_classes).to(f.dtype)
    counts = onehot.sum(0)
    means = (onehot.t() @ f) / counts.clamp(min=1).unsqueeze(1)
    return means, counts > 0
