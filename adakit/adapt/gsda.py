"""GSDA: domain adaptation with hierarchical gradient synchronization (Hu, Kan, Shan, Chen; CVPR 2020).

docs/methods.md (GSDA) describes the details; this module follows it:

- a global domain discriminator, one discriminator per class (sample weight p_k; one-hot for source) and one
  per group of classes (weight Σ_{k∈q} p_k), groups a fixed random partition into ≈ C/5 groups (Eq. 6-9);
- target cross-entropy replaced by α·entropy (Eq. 4-5, α = 0.02);
- the synchronisation loss of Eq. 10-12 on the per-sample norms of each discriminator loss's gradient w.r.t. the
  features (`GradientSynchronization`), with discriminators minimising L_g + L_l + β·L_syn and the encoder
  L_c + β·L_syn − λ(L_g + L_l) (Eq. 13-17, β = 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from adakit.adapt._regularizers import entropy, source_rows
from adakit.adapt.base import Batch, Objective, ObjectiveParams
from adakit.models.discriminators import DiscriminatorBank, DomainDiscriminator
from adakit.models.grl import grad_reverse, grl_schedule
from adakit.registry import register_objective


def default_group_count(num_classes: int) -> int:
    """≈ C/5 groups, as the paper's 6 for 31 classes and 13 for 65 (at least 1)."""
    return max(1, round(num_classes / 5))


def random_partition(num_classes: int, groups: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Group index of each class (C,): a random permutation cut into ``groups`` near-equal, disjoint parts."""
    perm = torch.randperm(num_classes, generator=generator)
    group_of = torch.empty(num_classes, dtype=torch.long)
    for q, part in enumerate(torch.tensor_split(perm, groups)):
        group_of[part] = q
    return group_of


class GradientSynchronization:
    """Hierarchical gradient synchronization L_syn (GSDA Eq. 10-12) from per-sample feature gradients.

    n_j = Σ_i ‖∂L_j/∂f_i‖₂ for each discriminator j. With global g, groups q and classes k:
    L_syn = (1/b)·Σ_q |n_q − Σ_{k∈q} n_k| + |n_g − Σ_q n_q| over the b groups q (Eq. 12). With one local level
    only (ablations), the single term |n_g − Σ_j n_j| over that level. `GSDA` sums n_g over the rows the local
    level sees (source rows and confident targets of the classes active in the batch): unconfident targets have no
    local counterpart, and counting them would turn L_syn into a gradient penalty on the global discriminator.
    """

    @staticmethod
    def norms(grads: torch.Tensor) -> torch.Tensor:
        """Σ over samples of the per-sample gradient norms: (..., N, m) -> (...)."""
        return torch.linalg.vector_norm(grads, dim=-1).sum(-1)

    @staticmethod
    def loss(n_global: torch.Tensor, n_groups: torch.Tensor | None, n_classes: torch.Tensor | None,
             group_of: torch.Tensor) -> torch.Tensor:
        if n_groups is not None and n_classes is not None:
            per_group = torch.zeros_like(n_groups).index_add(0, group_of, n_classes)
            return (n_groups - per_group).abs().mean() + (n_global - n_groups.sum()).abs()
        local = n_groups if n_groups is not None else n_classes
        if local is None:
            return n_global.new_zeros(())
        return (n_global - local.sum()).abs()


class GSDAParams(ObjectiveParams):
    alpha: float = Field(0.02, ge=0, description="weight α of the target entropy (paper: 0.02 on Office)")
    beta: float = Field(1.0, ge=0, description="weight β of the synchronisation loss (paper: 1)")
    groups: int | None = Field(None, ge=1, description="number of class groups (default ≈ C/5: 6 for 31 classes)")
    threshold: float = Field(0.9, ge=0, le=1, description="target rows count in class/group terms if max p ≥ this")
    use_class: bool = Field(True, description="class-wise discriminators (ablation)")
    use_group: bool = Field(True, description="group-wise discriminators (ablation)")
    use_sync: bool = Field(True, description="gradient synchronisation loss (ablation)")
    grl_max: float = Field(1.0, ge=0, description="maximum GRL coefficient λ of the schedule")
    grl_alpha: float = Field(10.0, ge=0, description="GRL schedule steepness")
    hidden: int = Field(1024, ge=1, description="global discriminator width (DANN: 1024)")
    local_hidden: int = Field(256, ge=1, description="width of each class / group discriminator")
    dropout: float = Field(0.5, ge=0, lt=1, description="discriminator dropout")


@register_objective("gsda")
class GSDA(Objective):
    """GSDA: global + class-wise + group-wise discriminators with gradient synchronization (Hu et al., CVPR 2020,
    Eq. 4-17).

    Terms: cross-entropy (base; source and labelled target); ``entropy`` = α·mean H(p) over the unlabelled
    target (Eq. 4-5); ``adversarial`` = L_g + L_l: per discriminator j, ½(mean_S w_ij·BCE + mean_T w_ij·BCE)
    (source = 1, target = 0; the batch-size-normalised form of the paper's sums) with w = 1 for the global one,
    p_k for class k, Σ_{k∈q} p_k for group q; source rows one-hot in their label, unlabelled target rows their
    (detached) predictions where max p ≥ ``threshold`` and 0 elsewhere (paper §3.1: confident pseudo-labels
    only); a local discriminator is skipped in a step whose batch lacks a source row of its class (group) or a
    confident target row predicted in it (documented addition: otherwise it learns a constant from one domain
    and its reversed gradient only harms the features); labelled target rows count for the cross-entropy only,
    as in DANN here. ``sync`` = β·L_syn (`GradientSynchronization`; n_g over the rows the local level sees).

    Gradient routing (Eq. 14-17): the discriminators receive ∇(L_g + L_l + β·L_syn); the encoder receives
    −λ(progress)·∇_f(L_g + L_l) + β·∇_f L_syn (λ the GRL schedule; L_syn is *not* reversed); the classifier
    only ∇L_c (the weights p are detached). With ``use_sync`` the discriminators see f itself: the
    per-discriminator feature gradients G_j come from one ``torch.autograd.grad(..., create_graph=True)`` and
    the ``reversal`` term −(1 + λ)·⟨f, stopgrad(Σ_j G_j)⟩ (value 0) turns the +∇_f(L_g + L_l) that reaches f
    into −λ·∇_f(L_g + L_l). Without sync the discriminators see a gradient reversal layer, as in DANN.

    Per-sample gradients: each L_j = Σ_i c_i·w_ij·ℓ_j(f_i) is a sum of terms that each depend on one row f_i
    only (the discriminators are row-wise MLPs, no batch norm; w, c do not depend on f), so row i of
    ∂L_j/∂f is exactly ∂(c_i·w_ij·ℓ_j(f_i))/∂f_i: one gradient of the summed loss gives all per-sample gradients.
    Each discriminator gets its own copy of f (the bank's input is (K, N, m)), so one call separates them.

    Class-balanced source sampling is the paper's setting (§3.1): set ``train.class_balanced_source: true``.
    Provides ``domain_discriminator`` (the global one, on f) for AADA.
    """

    Params = GSDAParams
    uses_unlabelled = True
    provides = frozenset({"domain_discriminator"})

    def __init__(self, params: GSDAParams, feature_dim: int, num_classes: int, pool_size: int = 0):
        super().__init__(params, feature_dim, num_classes, pool_size)
        self.domain_discriminator = DomainDiscriminator(feature_dim, params.hidden, dropout=params.dropout)
        self.num_groups = min(params.groups or default_group_count(num_classes), num_classes)
        self.register_buffer("group_of", random_partition(num_classes, self.num_groups))
        heads = num_classes * params.use_class + self.num_groups * params.use_group
        self.local_discriminators = (DiscriminatorBank(heads, feature_dim, params.local_hidden,
                                                       dropout=params.dropout) if heads else None)

    def grl_coeff(self, progress: float) -> float:
        return grl_schedule(progress, self.params.grl_max, self.params.grl_alpha)

    def local_weights(self, ys: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
        """Sample weights (N_s + N_t, K) of the local discriminators: classes then groups (detached).

        Source rows: one-hot labels; target rows: p where max p ≥ threshold, else 0. A class is skipped (its
        column zeroed) when the batch holds no source row of it or no confident target row predicted as it:
        its discriminator would see one domain only and learn a constant (early in training few targets reach
        the threshold, and a class discriminator trained on source rows alone only degrades the features).
        Group weights are the sums of their classes' (masked) weights, so a group covers exactly the samples
        of its classes and Eq. 10 compares like with like; without class discriminators, groups are masked
        the same way at group level.
        """
        c, ns = self.num_classes, len(ys)
        ps = F.one_hot(ys, c).float()
        pt = torch.softmax(zt.detach().float(), dim=1)
        confident = (pt.max(1, keepdim=True).values >= self.params.threshold).float()
        soft = torch.cat([ps, pt * confident])
        hard = torch.cat([ps, F.one_hot(pt.argmax(1), c).float() * confident])
        member = F.one_hot(self.group_of, self.num_groups).float()
        if not self.params.use_class:
            soft, hard = soft @ member, hard @ member
        soft = soft * ((hard[:ns].sum(0) > 0) & (hard[ns:].sum(0) > 0))
        if not self.params.use_class:
            return soft if self.params.use_group else soft[:, :0]
        return torch.cat([soft, soft @ member], 1) if self.params.use_group else soft

    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        p = self.params
        mask = source_rows(batch)
        fs, ys, ft = batch.fs[mask], batch.ys[mask], batch.fu
        ns, nt = len(fs), len(ft)
        h = torch.cat([fs, ft])
        kw = {"dtype": torch.float32, "device": h.device}
        d = torch.cat([torch.ones(ns, **kw), torch.zeros(nt, **kw)])
        c = torch.cat([torch.full((ns,), 0.5 / ns, **kw), torch.full((nt,), 0.5 / nt, **kw)])  # ½·mean per domain
        w = self.local_weights(ys, batch.zu)
        lam = self.grl_coeff(progress)
        terms = {"entropy": p.alpha * entropy(batch.zu).mean()} if p.alpha > 0 else {}
        # the synchronisation is made of feature gradients: without them (a no-grad validation pass, frozen
        # features) it is left out and the discriminators see the reversal layer, as without sync
        sync = p.use_sync and self.local_discriminators is not None and torch.is_grad_enabled() and h.requires_grad
        hin = h if sync else grad_reverse(h, lam)
        hg = hin.clone()
        lg = (c * F.binary_cross_entropy_with_logits(self.domain_discriminator(hg).float().squeeze(1), d,
                                                     reduction="none")).sum()
        adversarial = lg
        if self.local_discriminators is not None:
            # only the discriminators with weight in this batch (the others contribute exactly 0)
            active = torch.nonzero(w.sum(0) > 0).flatten()
            hl = hin.unsqueeze(0).expand(len(active), -1, -1).clone()
            logits = self.local_discriminators(hl, active).float()  # (K', N)
            bce = F.binary_cross_entropy_with_logits(logits, d.expand_as(logits), reduction="none")
            adversarial = lg + (c * w.t()[active] * bce).sum()
        terms["adversarial"] = adversarial
        if sync:
            gg, gl = torch.autograd.grad(adversarial, [hg, hl], create_graph=True, allow_unused=True)
            gl = torch.zeros_like(hl) if gl is None else gl  # no active local discriminator in this batch
            # the global term counts the rows the local level sees (source rows, confident targets of
            # active classes); with no such rows the synchronisation is 0
            rows = (w.sum(1) > 0).to(gg.dtype).unsqueeze(1)
            n_g = GradientSynchronization.norms(gg * rows)
            n_l = torch.zeros(w.shape[1], dtype=gl.dtype, device=gl.device).index_put(
                (active,), GradientSynchronization.norms(gl))
            n_cls = n_l[: self.num_classes] if p.use_class else None
            n_grp = n_l[self.num_classes * p.use_class:] if p.use_group else None
            terms["sync"] = p.beta * GradientSynchronization.loss(n_g, n_grp, n_cls, self.group_of)
            g_adv = (gg + gl.sum(0)).detach()
            inner = (h * g_adv).sum()
            terms["reversal"] = -(1.0 + lam) * (inner - inner.detach())
        return terms
