"""SDM query functions (Xie et al., "Learning Distinctive Margin toward Active Domain Adaptation", CVPR 2022)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from adakit.params import Params
from adakit.query._gradients import (
    MarginLossForm,
    head_on,
    logit_grad_to_features,
    margin_loss_logit_grad,
    margin_score_logit_grad,
)
from adakit.query.base import Selection, Strategy, top_k
from adakit.query.margin_sampling import MarginSampling
from adakit.registry import register_strategy


@register_strategy("sdm")
class SDMMarginSampling(MarginSampling):
    """SDM margin sampling (Xie et al. CVPR 2022, Eq. 3): Q = 1 − (p1 − p2); pair with objective ``sdm``/``sdm_a``.

    The query is plain margin sampling (`MarginSampling`, scores in float64); what makes it SDM is the model
    trained with the maximum margin loss (objectives ``sdm`` / ``sdm_a``).
    """


class SDMGParams(Params):
    lam: float = Field(0.01, description="λ of Eq. 8, weight of the gradient-direction cosine (paper: 0.01)")
    block_size: int = Field(8192, gt=0, description="samples per batched gradient block (memory bound)")


def sdm_g_scores(z: torch.Tensor, weight: torch.Tensor | None, lam: float, form: MarginLossForm,
                 head=None, f: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Q̃ = Q + λ·cos(∇_f L̂, ∇_f Q) (SDM Eq. 8–9) for a block of logits z (N, C); returns (Q̃, cos).

    ∇_f L̂ = p1·∇_f L(x, 1*) + p2·∇_f L(x, 2*) (Eq. 9) and ∇_f Q are mapped from closed-form logit
    gradients (see `adakit.query._gradients`), through Wᵀ for a linear head or one batched VJP of ``head``.
    """
    p = torch.softmax(z.double(), dim=1)
    dq, i1, i2 = margin_score_logit_grad(p)
    top = p.gather(1, torch.stack([i1, i2], 1))
    # gradients are linear in the logit gradient: combine in logit space, map to features once
    dl = top[:, :1] * margin_loss_logit_grad(z, i1, form).double() + top[:, 1:] * margin_loss_logit_grad(z, i2, form)
    both = torch.cat([dl, dq]).float()
    g = logit_grad_to_features(both, weight=weight, head=head, f=None if f is None else torch.cat([f, f]))
    gl, gq = g[: len(z)].double(), g[len(z):].double()
    cos = F.cosine_similarity(gl, gq, dim=1, eps=1e-12)
    q = 1.0 - (top[:, 0] - top[:, 1])
    return q + lam * cos, cos


@register_strategy("sdm_g")
class SDMGradientSampling(Strategy):
    """SDM-G (Xie et al. CVPR 2022, Eq. 8–9): margin score Q + λ·cos(∇_f L̂, ∇_f Q), λ = 0.01.

    Eq. 8 as printed adds the inner product ⟨∇_f L, ∇_f Q⟩; the released code, and adakit, use the cosine
    (bounded by 1, so λ caps the term at 0.01 whatever the gradients' scale; docs/methods.md).

    L is the training loss: the objective's own SDM loss when the objective is ``sdm`` / ``sdm_a`` (its
    ``sdm_loss_form``: raw or normalised logits, weights, SDM-A's α_i), otherwise the released code's
    form (CE + multi-margin on L2-normalised logits − max-logit term, docs/methods.md). ∇_f Q is the exact
    gradient of Q (docs/methods.md; not the released code's, which drops a +p1·p2·(W1 − W2) term).
    Per-sample gradients come in closed form for a linear head (∇_f = Wᵀ ∂/∂z), otherwise from one
    batched vector–Jacobian product of the head per block; the labels 1*, 2* and the probabilities are
    held fixed (piecewise differentiation, as in the paper).
    """

    Params = SDMGParams

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        form_dict = getattr(view.objective, "sdm_loss_form", None)
        form = MarginLossForm(**form_dict) if isinstance(form_dict, dict) else MarginLossForm()
        given_head = view.head  # first: a missing head is the error to report (before the logits)
        z_all = view.logits[cand]
        weight, head = head_on(given_head, z_all.device)  # the head's weight (or a copy) beside the logits
        bs = self.params.block_size
        f_all = view.embeddings[cand] if head is not None else None
        scores = torch.cat([
            sdm_g_scores(z_all[s:s + bs], weight, self.params.lam, form, head=head,
                         f=None if f_all is None else f_all[s:s + bs])[0]
            for s in range(0, len(cand), bs)
        ]) if len(cand) else torch.zeros(0, dtype=torch.float64, device=z_all.device)
        return top_k(scores, cand, budget, rng)
