"""SDM's maximum margin loss (Xie et al., CVPR 2022): Eq. 1 and the adaptive SDM-A form, Eq. 7.

Both are classification losses: they replace cross-entropy on source and on labelled target samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from adakit.adapt.base import Objective, ObjectiveParams
from adakit.registry import register_objective


class MarginLossParams(ObjectiveParams):
    margin: float = Field(1.0, gt=0, description="margin m of Eq. 1 (the paper's and the released code's 1)")
    raw_logits: bool = Field(False, description="hinge and max-logit terms on raw logits z (Eq. 1 as written) "
                                                "instead of L2-normalised logits z/||z|| (released code)")
    ce_weight: float = Field(1.0, ge=0, description="weight of the auxiliary cross-entropy (code: 1)")
    margin_weight: float = Field(1.0, ge=0, description="weight of the hinge term (code: 1)")
    max_logit_weight: float = Field(1.0, ge=0, description="weight of the max-logit term −ẑ_y (code: 1)")
    class_mean: bool = Field(True, description="divide the hinge sum by C, as F.multi_margin_loss and the "
                                               "released code do; False gives Eq. 1's plain sum")


class AdaptiveMarginLossParams(MarginLossParams):
    detach_alpha: bool = Field(True, description="treat α_i of Eq. 7 as a constant modulation factor "
                                                 "(gradient α_i·∂h_i); False differentiates through it")


@register_objective("sdm")
class MarginLoss(Objective):
    """SDM maximum margin loss (Xie et al. CVPR 2022, Eq. 1), released-code form: CE + hinge on normalised logits.

    Per sample, with ẑ = z/||z|| (``raw_logits=False``, default) or ẑ = z (``raw_logits=True``)::

        L(z, y) = w_ce·CE(z, y) + w_m·(1/C)·Σ_{i≠y} [m − ẑ_y + ẑ_i]_+ − w_max·ẑ_y

    averaged over the batch, applied to source and labelled target samples (it overrides
    `classification_loss`). adakit uses this form, not the paper's Eq. 1 (docs/methods.md): the released code
    (util/losses.py ``Margin_loss`` on ``F.normalize(logit)``, SDM.py ``train_SDM``) trains with
    CE + margin − 1·mean(ẑ_y), all weights 1, m = 1, and the hinge mean over the C classes (it equals
    ``F.multi_margin_loss(normalize(z), y)``); those are the defaults. Eq. 1 alone is
    ``raw_logits=True, ce_weight=0, max_logit_weight=0, class_mean=False``.
    """

    Params = MarginLossParams
    adaptive = False

    @property
    def sdm_loss_form(self) -> dict:
        """The loss's settings, so SDM-G can take the gradient of the training loss (SDM Eq. 8)."""
        p = self.params
        return {"margin": p.margin, "raw_logits": p.raw_logits, "ce_weight": p.ce_weight,
                "margin_weight": p.margin_weight, "max_logit_weight": p.max_logit_weight,
                "class_mean": p.class_mean, "adaptive": self.adaptive,
                "detach_alpha": getattr(p, "detach_alpha", True), "label_smoothing": p.label_smoothing}

    def _normalised(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.params.raw_logits else F.normalize(z, dim=1)

    def hinge_terms(self, zh: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ_{i≠y} [m − ẑ_y + ẑ_i]_+ per sample (N,), divided by C when ``class_mean``."""
        wide = zh if zh.dtype in (torch.float32, torch.float64) else zh.float()  # (no half kernel on the CPU)
        h = F.multi_margin_loss(wide, y, margin=self.params.margin, reduction="none").to(zh.dtype)  # already / C
        return h if self.params.class_mean else h * zh.shape[1]

    def per_sample_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        zh = self._normalised(z)
        loss = p.margin_weight * self.hinge_terms(zh, y) - p.max_logit_weight * zh.gather(1, y[:, None])[:, 0]
        if p.ce_weight:
            loss = loss + p.ce_weight * F.cross_entropy(z, y, reduction="none", label_smoothing=p.label_smoothing)
        return loss

    def classification_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_sample_loss(z, y).mean()


@register_objective("sdm_a")
class AdaptiveMarginLoss(MarginLoss):
    """SDM-A dynamically adjusted margin loss (Xie et al. CVPR 2022, Eq. 7): α_i-weighted hinge + max-logit term.

    Per sample, with ẑ as in ``sdm`` (normalised logits by default, ``raw_logits`` for Eq. 7 as written)::

        L(z, y) = w_ce·CE(z, y) + w_m·(1/C)·Σ_{i≠y} α_i·[m − ẑ_y + ẑ_i]_+ − w_max·ẑ_y,
        α_i = 1 − (ẑ_y − ẑ_i)/m

    The released code computes α_i (``smooth_marginloss``) and then overwrites it with ones inside
    ``Margin_loss``; adakit applies the paper's α_i (docs/methods.md). α_i > 0 exactly where the
    hinge is active, so the product is never negative. α_i is detached by default: the paper presents it
    as a "modulation factor" that "adaptively adjusts the backward gradient in proportion to the margin
    size", i.e. ∂L/∂ẑ = α_i·∂h_i; ``detach_alpha=False`` differentiates through it (gradient 2·α_i·∂h_i,
    since α_i·h_i = h_i²/m). Weights, m and the 1/C follow ``sdm``.
    """

    Params = AdaptiveMarginLossParams
    adaptive = True

    def hinge_terms(self, zh: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        m = self.params.margin
        onehot = F.one_hot(y, zh.shape[1]).to(zh.dtype)
        zy = (zh * onehot).sum(1, keepdim=True)
        off = 1.0 - onehot
        hinge = (m - zy + zh).clamp_min(0.0) * off
        alpha = 1.0 - (zy - zh) / m
        if self.params.detach_alpha:
            alpha = alpha.detach()
        h = (alpha * hinge).sum(1)
        return h / zh.shape[1] if self.params.class_mean else h
