"""SAGE query (Bouvier et al., "Stochastic Adversarial Gradient Embedding for Active Domain Adaptation", 2021)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from adakit.params import Params
from adakit.query._algorithms import argmax_random, farthest_first, kmeans_pp
from adakit.query._gradients import class_discriminator_gradients
from adakit.query.base import Selection, Strategy, top_k
from adakit.registry import register_strategy


class SageParams(Params):
    pop: bool = Field(True, description="positive orthogonal projection (Eq. 5); False = 'SAGE without POP'")
    diversity: Literal["farthest_first", "kmeans_pp", "none"] = Field(
        "farthest_first", description="after the largest-norm pick: greedy farthest-first (Alg. 1), k-means++ "
                                      "D² sampling, or none (top-b by ||S||, 'SAGE without diversity')")
    max_embedding_mb: float = Field(1024.0, gt=0, description="largest N×C×m float32 embedding kept in memory; "
                                                              "above it each class block is randomly projected")
    block_size: int = Field(256, gt=0, description="samples per batched discriminator-gradient call")


def positive_orthogonal_projection(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """g̃_c = g_c − λ_c·E, E = Σ_c p_c g_c, λ_c = |g_c·E|/||E||² (SAGE Eq. 4–5); g (N, C, m), p (N, C).

    Where E = 0 (no expected direction) λ = 0 and g̃ = g. Classes with g_c·E ≥ 0 are projected orthogonally
    to E; classes against E (g_c·E < 0) move further from it (g̃_c·E = 2·g_c·E).
    """
    return _pop_(g.clone(), p)


def _pop_(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """`positive_orthogonal_projection` in place on ``g`` (batched products, no (N, C, m) temporaries)."""
    e = torch.bmm(p.to(g.dtype).unsqueeze(1), g)  # (N, 1, m): E
    ee = (e * e).sum(2)  # (N, 1)
    dots = torch.bmm(g, e.transpose(1, 2)).squeeze(2)  # (N, C): g_c·E
    lam = torch.where(ee > 0, dots.abs() / ee.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(dots))
    return g.baddbmm_(lam.unsqueeze(2), e, alpha=-1.0)  # g − λ_c·E


def sage_embedding(g: torch.Tensor, p: torch.Tensor, pop: bool = True) -> torch.Tensor:
    """S(x) = (√p_1·g̃_1, …, √p_C·g̃_C) (SAGE Eq. 6) as (N, C, m); g̃ = g without POP."""
    gt = positive_orthogonal_projection(g, p) if pop else g
    return p.clamp_min(0).sqrt().unsqueeze(2) * gt


def compute_sage(disc: torch.nn.Module, f: torch.Tensor, p: torch.Tensor, *, pop: bool = True,
                 max_bytes: float = 2**30, block_size: int = 256,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """Norms ||S(x)|| (N,) and rows of S (N, C·k) for the features f and predictions p, in blocks.

    k = m (exact) while N·C·m float32 values fit in ``max_bytes``; above, every class block √p_c·g̃_c is
    multiplied by its own Gaussian matrix R_c ∈ R^{m×k}, entries N(0, 1/k), k = ⌊max_bytes/(4·N·C)⌋
    (Johnson–Lindenstrauss: squared distances between embeddings are kept in expectation, with relative
    error O(1/√k)). The norms are always exact. Returns (norms, rows, k if projected else None).
    Each block is computed in place (POP and the √p weights overwrite the gradients); rows are written
    into one preallocated (N, C·k) tensor.
    """
    n, c = p.shape
    m = f.shape[1]
    k = None
    if 4.0 * n * c * m > max_bytes:
        k = max(1, int(max_bytes // (4 * n * c)))
        gen = torch.Generator().manual_seed(int((rng or np.random.default_rng(0)).integers(2**63 - 1)))
        proj = torch.randn(c, m, k, generator=gen) / math.sqrt(k)
    norms = torch.empty(n)
    rows = torch.empty((n, c * (k or m)))
    for s in range(0, n, block_size):
        g, _ = class_discriminator_gradients(disc, f[s:s + block_size])
        g = g.float().cpu().contiguous()
        pb = p[s:s + block_size].float()
        if pop:
            _pop_(g, pb)
        emb = g.mul_(pb.clamp_min(0).sqrt().unsqueeze(2))  # (b, C, m): S
        norms[s:s + block_size] = torch.linalg.vector_norm(emb.flatten(1), dim=1)
        if k is not None:  # per class: (C, b, m) @ (C, m, k) -> (C, b, k)
            emb = torch.bmm(emb.transpose(0, 1), proj).transpose(0, 1)
        rows[s:s + block_size] = emb.reshape(len(emb), -1)
    return norms, rows, k


@register_strategy("sage")
class SageSampling(Strategy):
    """SAGE (Bouvier et al., Eq. 3–6, Alg. 1): stochastic adversarial gradient embedding + farthest-first.

    Per class c, g_c = −∂ log d_c(f)/∂f for the TSF class-level discriminator d (Eq. 3; objective ``tsf``
    provides ``class_discriminator``); E = Σ_c p_c g_c (Eq. 4); POP g̃_c = g_c − λ_c·E,
    λ_c = |g_c·E|/||E||² (Eq. 5); S(x) = (√p_c·g̃_c)_c (Eq. 6). First pick arg-max ||S(x)||, then greedy
    farthest-first on S (Alg. 1 as written, line 4: argmax_u min_a ||S(x_u) − S(x_a)||, the default;
    docs/methods.md), or k-means++ D² sampling (the text's "k-means++", ``diversity: kmeans_pp``), or none.
    The g_c are computed per block in closed form when d is linear, else with one `torch.func`
    vmap(jacrev) call per block. N×C×m is never stored above ``max_embedding_mb``: each class block is then
    randomly projected (see `compute_sage`). Scores are ||S(x)||. Only unlabelled samples are candidates and
    labelled ones are not centres (Alg. 1 runs on U_T').
    """

    Params = SageParams
    needs = frozenset({"class_discriminator"})

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        disc = self.provided(view, "class_discriminator")
        cand = view.unlabelled_indices
        if len(cand) == 0 or budget <= 0:
            return Selection(np.empty(0, dtype=np.int64), np.empty(0))
        prm = self.params
        norms, rows, _ = compute_sage(disc, view.embeddings[cand], view.probs[cand], pop=prm.pop,
                                      max_bytes=prm.max_embedding_mb * 2**20, block_size=prm.block_size, rng=rng)
        if prm.diversity == "none":
            return top_k(norms.numpy(), cand, budget, rng)
        first = argmax_random(norms, rng)
        if prm.diversity == "farthest_first":
            picks, _ = farthest_first(rows, budget, rng=rng, first=first)
        else:
            picks, _ = kmeans_pp(rows, budget, rng, first=first)
        return Selection(cand[picks], norms.numpy()[picks])
