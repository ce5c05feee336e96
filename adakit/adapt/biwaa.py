"""BIWAA: backprop-induced feature weighting for adversarial DA, with iterative label distribution alignment.

Westfechtel, Yeh, Meng, Mukuta, Harada (WACV 2023); docs/methods.md (BIWAA) lists the
details the paper leaves open and the choices made where paper and code disagree.

- `backprop_feature_weights`: the closed-form per-sample ∇ᵢ = ∂CE(c(fᵢ), ŷᵢ)/∂fᵢ = Wᵀ(pᵢ − onehot(ŷᵢ)) of a
  linear head and the weighting λ·∇ᵢ/‖∇ᵢ‖ of Eq. 6-7 (detached: it only re-weights f).
- `BackpropWeightedDiscriminator`: the domain discriminator on f' = λ·f ∘ ∇/‖∇‖ (Eq. 7-8). Called with
  features only (as strategies do, e.g. AADA), it weights f with its own copy of the head and ŷ = argmax.
- `semantic_separation`: the inter-class cosine terms of the moving semantic loss (Eq. 10).
- `bootstrap_weight`: u(j) of Eq. 14; `class_balanced_pool_weights`: the class-balanced target loader of §3.3.
- `BIWAA` (``biwaa``) and `BIWAAIterative` (``biwaa_i``: the same with ``runs: 10``, BIWAA-I).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from adakit.adapt._regularizers import domain_adversarial_loss, source_rows
from adakit.adapt.base import Batch
from adakit.adapt.mstn import MSTN, MSTNParams
from adakit.models.discriminators import DomainDiscriminator
from adakit.models.grl import grl_schedule
from adakit.registry import register_objective


def backprop_feature_weights(z: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, scale: float = 10.0,
                             eps: float = 1e-12) -> torch.Tensor:
    """λ·∇ᵢ/‖∇ᵢ‖ (N, m) with ∇ᵢ = ∂CE(zᵢ, yᵢ)/∂fᵢ = Wᵀ(softmax(zᵢ) − onehot(yᵢ)) (BIWAA Eq. 6-7).

    ``z`` = W f + b are the logits of a linear head with weight ``weight`` (C, m); the result is detached
    (docs/methods.md: ∇ detached), so the weighting steers the discriminator without a gradient of its own.
    A zero gradient (a one-hot prediction equal to ŷ) gives a zero weight vector.
    """
    with torch.no_grad():
        p = torch.softmax(z.float(), dim=1)
        grad = (p - F.one_hot(y, p.shape[1]).float()) @ weight.float()
        return scale * grad / grad.norm(dim=1, keepdim=True).clamp(min=eps)


class BackpropWeightedDiscriminator(nn.Module):
    """Domain discriminator on backprop-weighted features f' = λ·f ∘ ∇/‖∇‖ (BIWAA Eq. 7-8).

    ``forward(f)`` returns the logit of P(source) (N, 1), like any ``domain_discriminator`` (docs/architecture.md),
    computing ∇ with ŷ = argmax of its copy of the head (``head_weight``, ``head_bias``: buffers the objective
    refreshes every training step, so the module works on its own, e.g. for AADA after a resume). During
    training the objective calls `weigh` with the true labels (source) and bootstrapped pseudo-labels (target).
    """

    def __init__(self, feature_dim: int, num_classes: int, scale: float = 10.0, hidden: int = 1024,
                 dropout: float = 0.5):
        super().__init__()
        self.discriminator = DomainDiscriminator(feature_dim, hidden, dropout=dropout)
        self.scale = scale
        self.register_buffer("head_weight", torch.zeros(num_classes, feature_dim))
        self.register_buffer("head_bias", torch.zeros(num_classes))

    @torch.no_grad()
    def sync_head(self, head: nn.Module) -> None:
        self.head_weight.copy_(head.weight.detach())
        if getattr(head, "bias", None) is not None:
            self.head_bias.copy_(head.bias.detach())

    def weigh(self, f: torch.Tensor, z: torch.Tensor | None = None, y: torch.Tensor | None = None,
              weight: torch.Tensor | None = None) -> torch.Tensor:
        """f' = f ∘ λ∇/‖∇‖; ``z`` defaults to the stored head's logits, ``y`` to argmax z; ``weight``: the head's
        weight to use instead of the stored copy (an evaluation, which leaves the copy as it is)."""
        if z is None:
            z = f.detach().float() @ self.head_weight.float().t() + self.head_bias.float()
        if y is None:
            y = z.argmax(1)
        w = self.head_weight if weight is None else weight.detach().to(self.head_weight)
        return f * backprop_feature_weights(z, y, w, self.scale).to(f.dtype)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.discriminator(self.weigh(f))


def semantic_separation(cs: torch.Tensor, ct: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over ordered pairs k ≠ j of cos(C_s^k, C_s^j) + cos(C_s^k, C_t^j) + cos(C_t^k, C_t^j) (Eq. 10, Θ).

    The paper sums over the K(K − 1) pairs; the mean keeps the term's scale independent of K (documented
    choice). Zero (never updated) centroids have cosine 0 with everything.
    """
    k = cs.shape[0]
    if k < 2:
        return cs.new_zeros(())
    s, t = F.normalize(cs, dim=1, eps=eps), F.normalize(ct, dim=1, eps=eps)
    total = cs.new_zeros(())
    for a, b in ((s, s), (s, t), (t, t)):
        sim = a @ b.t()
        total = total + sim.sum() - sim.diagonal().sum()
    return total / (k * (k - 1))


def bootstrap_weight(step: int, horizon: int = 500) -> float:
    """u(j) = 2/(1 + exp(−10·j/j_t)) − 1 for j ≤ j_t, 1 after (BIWAA Eq. 14; j_t = 500)."""
    if horizon <= 0 or step > horizon:
        return 1.0
    return 2.0 / (1.0 + math.exp(-10.0 * step / horizon)) - 1.0


def class_balanced_pool_weights(probs: torch.Tensor) -> np.ndarray:
    """Sampling weights over the pool that balance the classes of argmax ``probs`` (BIWAA §3.3).

    wᵢ = 1/count(ŷᵢ): every predicted class is drawn equally often (a class nobody is predicted as is never
    drawn); the trainer normalises the weights over the unlabelled candidates.
    """
    pred = probs.argmax(1).cpu().numpy()
    counts = np.bincount(pred, minlength=probs.shape[1])
    return (1.0 / counts[pred]).astype(np.float64)


def last_occurrences(idx: torch.Tensor) -> torch.Tensor:
    """Positions in ``idx`` (1-D) of the last occurrence of each distinct value (all positions when none repeats)."""
    uniq, inverse = torch.unique(idx, return_inverse=True)
    pos = torch.arange(len(idx), device=idx.device)
    return torch.full((len(uniq),), -1, dtype=pos.dtype, device=idx.device).scatter_reduce_(0, inverse, pos, "amax")


class BIWAAParams(MSTNParams):
    scale: float = Field(10.0, gt=0, description="λ of f' = λ·f∘∇/‖∇‖ (paper: 10)")
    separation_weight: float = Field(1.0, ge=0, description="weight of the inter-class cosine terms of Eq. 10")
    aggregate: float = Field(0.9, gt=0, le=1, description="a ← aggregate·p + (1 − aggregate)·a per target sample")
    runs: int = Field(1, ge=1, description="BIWAA-I: warm-up trained from scratch this many times (paper: 10)")
    run_decay: float = Field(0.8, gt=0, le=1, description="weights 1, d, d², … of earlier runs' predictions")
    bootstrap_iters: int = Field(500, ge=0, description="j_t of Eq. 14: iterations the bootstrap fades over")


@register_objective("biwaa")
class BIWAA(MSTN):
    """BIWAA: DANN on backprop-weighted features + moving semantic loss (Westfechtel et al., WACV 2023, Eq. 4-14).

    Terms: cross-entropy (base); ``adversarial`` = trade_off·½(BCE_S + BCE_T) of the domain discriminator on
    f' = λ·f∘∇/‖∇‖ through gradient reversal λ(progress) (Eq. 7-8; ∇ closed form for the linear head, detached;
    ŷ = labels for source rows, bootstrapped pseudo-labels for the unlabelled target); ``semantic`` =
    semantic_weight·λ(progress)·Σ_k‖C_s^k − C_t^k‖²/K (Eq. 9, Φ: the paper's "L2-distance" taken squared, as
    in MSTN, whose loss Eq. 9 extends; moving centroids with decay 0.3 on the unweighted f) and
    ``separation`` = separation_weight·λ(progress)·mean of
    the different-class centroid cosines s–s, s–t, t–t (Eq. 10, Θ). Target centroids also take the labelled
    target rows with their labels (active DA).

    Pseudo-labels (Eq. 11, 13): a per-sample memory a (pool_size, C) starts uniform and is updated each time
    a target sample is drawn, a ← 0.9·p + 0.1·a (docs/methods.md); with earlier runs' averaged predictions p̂ (BIWAA-I)
    the pseudo-label is argmax of p_b = u(j)·a + (1 − u(j))·p̂, u of Eq. 14 over the run's iterations j.
    All of these are convex combinations of probability vectors, so they sum to 1.

    Iterative runs (BIWAA-I, §3.3, Alg. 1; ``runs`` > 1): the loop's warm-up (round 0) trains from scratch
    ``runs`` times; run r ≥ 1 draws the unlabelled target class-balanced by argmax p̂, p̂ = the earlier runs'
    predictions averaged with weights 1, 0.8, 0.64, … (most recent first) and normalised. Active rounds after
    the warm-up continue from the last run's model. Provides ``domain_discriminator`` (the weighted one).
    """

    Params = BIWAAParams
    required_head = "linear"
    per_sample_memory = True

    def __init__(self, params: BIWAAParams, feature_dim: int, num_classes: int, pool_size: int = 0):
        super().__init__(params, feature_dim, num_classes, pool_size)
        self.domain_discriminator = BackpropWeightedDiscriminator(feature_dim, num_classes, params.scale,
                                                                  params.hidden, params.dropout)
        n = max(pool_size, 1)
        self.register_buffer("aggregated", torch.full((n, num_classes), 1.0 / num_classes))
        self.register_buffer("previous", torch.full((n, num_classes), 1.0 / num_classes))
        self.register_buffer("previous_weight", torch.zeros(()))  # Σ of the earlier runs' weights; 0 = none
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # iterations of this run

    # -- pseudo-labels ----------------------------------------------------------------------------
    @property
    def warmup_runs(self) -> int:
        return self.params.runs

    def aggregate_targets(self, idx: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Update a[idx] ← α·softmax(z) + (1 − α)·a[idx] (training only) and return the bootstrapped p_b."""
        idx = idx.to(self.aggregated.device)
        with torch.no_grad():
            p = torch.softmax(z.detach().float(), dim=1)
            a = self.params.aggregate * p + (1 - self.params.aggregate) * self.aggregated[idx]
            if self.training:  # a sample drawn twice in the batch keeps its last row's update (an index_put of
                last = last_occurrences(idx)  # repeated indices has no defined winner on CUDA)
                self.aggregated[idx[last]] = a[last].to(self.aggregated.dtype)
            if float(self.previous_weight) > 0:
                u = bootstrap_weight(int(self.step), self.params.bootstrap_iters)
                a = u * a + (1 - u) * self.previous[idx]
        return a

    def begin_warmup_run(self, run: int, carry: dict | None) -> np.ndarray | None:
        """Hook of `ActiveLoop` (BIWAA-I): takes the earlier runs' averaged predictions; returns sampling
        weights over the pool for the unlabelled target stream (None for the first run)."""
        if run == 0 or carry is None:
            return None
        self.previous.copy_(carry["previous"].to(self.previous))
        self.previous_weight.fill_(float(carry["previous_weight"]))
        return class_balanced_pool_weights(self.previous)

    def end_warmup_run(self, probs: torch.Tensor) -> dict:
        """Fold this run's pool predictions into the weighted average: p̂ ← (p + d·Z·p̂)/(1 + d·Z), Z ← 1 + d·Z."""
        d, z = self.params.run_decay, float(self.previous_weight)
        probs = probs.float().to(self.previous.device)
        probs = probs / probs.sum(1, keepdim=True)
        prev = (probs + d * z * self.previous) / (1 + d * z)
        return {"previous": prev.detach().cpu(), "previous_weight": 1 + d * z}

    # -- terms ------------------------------------------------------------------------------------
    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        disc = self.domain_discriminator
        # training: the copy follows the head; an evaluation (e.g. of an averaged head) weighs with the head given
        # and leaves the copy (and the rest of the state) as it is
        weight = None if self.training else model.head.weight
        if self.training:
            disc.sync_head(model.head)
        mask = source_rows(batch)
        fs, zs, ys = batch.fs[mask], batch.zs[mask], batch.ys[mask]
        p_b = self.aggregate_targets(batch.idx_u, batch.zu)
        yu = p_b.argmax(1).to(batch.fu.device)
        lam = grl_schedule(progress, self.params.grl_max, self.params.grl_alpha)
        adversarial = domain_adversarial_loss(disc.discriminator, disc.weigh(fs, zs, ys, weight),
                                              disc.weigh(batch.fu, batch.zu, yu, weight), lam)
        # target centroids: unlabelled (pseudo-labels) + labelled target rows (labels)
        ft, yt = [batch.fu], [yu]
        if batch.fl is not None and len(batch.fl):
            ft.append(batch.fl)
            yt.append(batch.yl)
        if not bool(mask.all()):
            ft.append(batch.fs[~mask])
            yt.append(batch.ys[~mask])
        cs = self.moving_centroids(self.source_centroids, fs, ys)
        ct = self.moving_centroids(self.target_centroids, torch.cat(ft), torch.cat(yt))
        if self.training:
            with torch.no_grad():
                self.source_centroids.copy_(cs)
                self.target_centroids.copy_(ct)
                self.step += 1
        return {"adversarial": self.params.trade_off * adversarial,
                "semantic": self.params.semantic_weight * lam * ((cs - ct) ** 2).sum(1).mean(),
                "separation": self.params.separation_weight * lam * semantic_separation(cs, ct)}


class BIWAAIterativeParams(BIWAAParams):
    runs: int = Field(10, ge=1, description="warm-up trained from scratch this many times (paper: 10)")


@register_objective("biwaa_i")
class BIWAAIterative(BIWAA):
    """BIWAA-I: BIWAA with iterative label distribution alignment, 10 runs (Westfechtel et al., WACV 2023, §3.3).

    Same as ``biwaa`` with ``runs: 10`` by default (``biwaa`` with ``objective.runs: R`` is the same thing).
    """

    Params = BIWAAIterativeParams
