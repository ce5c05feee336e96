"""SAGE query (Bouvier et al., "Stochastic Adversarial Gradient Embedding for Active Domain Adaptation", 2021)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from adakit.params import Params
from adakit.query._algorithms import argmax_random, farthest_first, kmeans_pp
from adakit.query._gradients import class_discriminator_gradients, piecewise_linear_layers
from adakit.query.base import Selection, Strategy, top_k
from adakit.registry import register_strategy

#: rows (classes × block samples) of the (C, B, h) work done at once in `_SageMLP.block` (≈ 2 MiB at h = 256)
CHUNK_ROWS = 2048


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

    For a linear / ReLU-MLP discriminator (see `_SageMLP`) every block costs two matrix products of size
    C·h² per sample and the (N, C, m) gradients are never formed; any other module goes through
    `class_discriminator_gradients` (`torch.func`) block by block.

    Norms and rows are on the device of ``p`` (the pool outputs); the discriminator computes on its own
    device. The random projection is drawn on the CPU (the same on every device) and moved.
    """
    n, c = p.shape
    m = f.shape[1]
    dev = p.device
    k = None
    proj = None
    if 4.0 * n * c * m > max_bytes:
        k = max(1, int(max_bytes // (4 * n * c)))
        gen = torch.Generator(device="cpu").manual_seed(int((rng or np.random.default_rng(0)).integers(2**63 - 1)))
        proj = (torch.randn(c, m, k, generator=gen, device="cpu") / math.sqrt(k)).to(dev)
    norms = torch.empty(n, device=dev)
    rows = torch.empty((n, c * (k or m)), device=dev)
    mlp = _SageMLP.of(disc, proj)
    for s in range(0, n, block_size):
        fb, pb = f[s:s + block_size], p[s:s + block_size]
        if mlp is not None:
            norms[s:s + block_size] = mlp.block(fb, pb, pop, rows[s:s + block_size])
        else:
            norms[s:s + block_size], rows[s:s + block_size] = _generic_block(disc, fb, pb, pop, proj)
    return norms, rows, k


def _generic_block(disc: torch.nn.Module, f: torch.Tensor, p: torch.Tensor, pop: bool,
                   proj: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Norms and rows of one block from the explicit gradients (B, C, m) of any discriminator."""
    g, _ = class_discriminator_gradients(disc, f)
    g = g.float().to(p.device).contiguous()
    pb = p.float()
    if pop:
        _pop_(g, pb)
    emb = g.mul_(pb.clamp_min(0).sqrt().unsqueeze(2))  # (B, C, m): S
    norms = torch.linalg.vector_norm(emb.flatten(1), dim=1)
    if proj is not None:  # per class: (C, B, m) @ (C, m, k) -> (C, B, k)
        emb = torch.bmm(emb.transpose(0, 1), proj).transpose(0, 1)
    return norms, emb.reshape(len(emb), -1)


class _SageMLP:
    """S(x) of a piecewise-linear discriminator without the (B, C, m) gradients (SAGE Eq. 3–6).

    The logits' Jacobian factors as J = Q·V₁ with V₁ (h×m) the first layer's weight and
    Q = V_L·D_{L−1}·…·V₂·D₁ (C×h per sample, D the ReLU slopes), so every term of S is a product with V₁:
    g_c = −(1 − d_c)·Q_c·V₁; E = Σ_c p_c g_c = ε·V₁ with ε = −Σ_c p_c(1 − d_c)Q_c (one vector–Jacobian
    product); g_c·E = −(1 − d_c)·(J·E)_c (one Jacobian–vector product); hence
    √p_c·g̃_c = (√p_c·(−(1 − d_c))·Q_c − √p_c·λ_c·ε)·V₁ =: Q̃_c·V₁. The norm is ||Q̃·V₁|| (one product, exact)
    and the projected rows are Q̃_c·(V₁R_c) with V₁R_c (h×k) formed once, so the projection costs C·h·k
    per sample instead of C·m·k after C·h·m; when m > h the norms use G = V₁V₁ᵀ instead (C·h² per sample).
    Everything runs class-major, (C, B, h) a few classes at a time (CHUNK_ROWS rows: in cache), on the device and
    in the dtype of the discriminator's weights;
    results come back as float32 on the device of ``out`` (the pool outputs').
    """

    def __init__(self, layers: list[nn.Module], proj: torch.Tensor | None):
        self.layers = layers
        self.first = layers[0]
        w = self.first.weight.detach()
        self.v1 = w  # (h, m)
        # exact rows: Q̃·V₁ (C, B, m); projected: Q̃_c·(V₁R_c), (C, h, k)
        self.right = None if proj is None else torch.matmul(w.unsqueeze(0), proj.to(w.device, w.dtype))
        # projected rows and m > h: ||Q̃_c·V₁||² = Q̃_c·G·Q̃_cᵀ with G = V₁V₁ᵀ (h×h) costs C·h² instead of C·h·m
        self.gram = None
        if proj is not None and w.shape[1] > w.shape[0]:
            self.gram = (w.double() @ w.double().T).to(w.dtype)
        self._bufs: dict[str, torch.Tensor] = {}

    def _buf(self, name: str, *shape: int) -> torch.Tensor:
        """A reused work buffer of this shape (fresh (C, B, h) allocations per block cost as much as a pass)."""
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n:
            buf = self._bufs[name] = torch.empty(n, dtype=self.v1.dtype, device=self.v1.device)
        return buf[:n].view(shape)

    @classmethod
    def of(cls, disc: nn.Module, proj: torch.Tensor | None) -> _SageMLP | None:
        """The fast path for ``disc`` if it is a plain MLP starting with a linear layer, else None."""
        layers = piecewise_linear_layers(disc)
        if not layers or not isinstance(layers[0], nn.Linear):
            return None
        return cls(layers, proj)

    @torch.no_grad()
    def block(self, f: torch.Tensor, p: torch.Tensor, pop: bool, out: torch.Tensor) -> torch.Tensor:
        """Norms (B,) of one block; its rows are written into ``out`` (B, C·k or C·m).

        The (C, B, h) work runs a few classes at a time (`_class_chunk`), so its intermediates stay in the
        cache; every entry is computed by the same operations as over all C at once (identical values).
        """
        w = self.v1
        f = f.detach().to(w.device, w.dtype)
        p = p.detach().to(w.device, w.dtype)
        z = self.first(f)
        slopes: list[torch.Tensor | None] = []  # per layer after the first: ReLU slopes, None for Linear
        for layer in self.layers[1:]:
            if isinstance(layer, nn.Linear):
                slopes.append(None)
            elif isinstance(layer, nn.LeakyReLU):
                slopes.append(torch.where(z > 0, torch.ones_like(z), torch.full_like(z, layer.negative_slope)))
            else:
                slopes.append((z > 0).to(z.dtype))  # ReLU: 1 / 0
            z = layer(z)
        d = torch.sigmoid(z)  # (B, C)
        bsz = len(d)
        sq = p.clamp_min(0).sqrt()
        coef = (d - 1.0).mul_(sq).T.contiguous()  # (C, B): √p_c·(−(1 − d_c))
        if pop:
            eps = self._vjp(p * (d - 1.0), slopes)  # (B, h): E = ε·V₁
            e = eps @ w
            ee = (e * e).sum(1, keepdim=True)
            x = (d - 1.0) * self._jvp(e @ w.T, slopes)  # (B, C): g_c·E
            lam = torch.where(ee > 0, x.abs() / ee.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))
            lam_coef = (sq * lam).T.contiguous()  # (C, B): √p_c·λ_c
        c = len(coef)
        step = self._class_chunk(c, bsz)
        per_class = self._buf("per_class", c, bsz)  # ||√p_c·g̃_c||² (Gram) or ||√p_c·g̃_c||
        rows = out.view(bsz, c, -1)
        for s in range(0, c, step):
            cs = slice(s, min(c, s + step))
            q = self._q(coef[cs], slopes, cs)  # (c', B, h): √p_c·(−(1 − d_c))·Q_c
            if pop:
                q.addcmul_(lam_coef[cs].unsqueeze(2), eps.unsqueeze(0), value=-1.0)  # Q̃_c = … − √p_c·λ_c·ε
            cc, _, h = q.shape
            if self.gram is not None:
                qg = torch.mm(q.view(-1, h), self.gram, out=self._buf("full", cc * bsz, h)).view(cc, bsz, h)
                torch.sum(qg.mul_(q), 2, out=per_class[cs])
            else:
                full = torch.mm(q.view(-1, h), w, out=self._buf("full", cc * bsz, w.shape[1])).view(cc, bsz, -1)
                torch.linalg.vector_norm(full, dim=2, out=per_class[cs])  # contiguous reductions
            if self.right is not None:
                full = torch.bmm(q, self.right[cs], out=self._buf("rows", cc, bsz, self.right.shape[2]))  # (c', B, k)
            rows[:, cs].copy_(full.transpose(0, 1))
        if self.gram is not None:
            norms = per_class.sum(0).clamp_min_(0.0).sqrt_()
        else:
            norms = torch.linalg.vector_norm(per_class, dim=0)
        return norms.float().to(out.device)

    def _class_chunk(self, c: int, bsz: int) -> int:
        """Classes per chunk of `block`: about CHUNK_ROWS rows of (C, B, h) on a CPU; all C on other devices (few
        large kernels) or unless the last layer is Linear (then ∂l_c/∂z₁ only needs its rows c)."""
        if self.v1.device.type != "cpu" or len(self.layers) < 2 or not isinstance(self.layers[-1], nn.Linear):
            return c
        return max(1, min(c, CHUNK_ROWS // max(bsz, 1)))

    def _q(self, coef: torch.Tensor, slopes: list[torch.Tensor | None], cs: slice = slice(None)) -> torch.Tensor:
        """coef[c, b]·∂l_c/∂z₁ (c', B, h) for the classes ``cs`` (coef: their rows): reverse accumulation from the
        logits down to the first layer's output."""
        acc: torch.Tensor | None = None  # None: the identity at the logits; 2-D: shared by the block; 3-D: (C, B, ·)
        c, bsz = coef.shape
        slot = 0  # 3-D results alternate between two work buffers
        for layer, slope in zip(reversed(self.layers[1:]), reversed(slopes)):
            if slope is None and acc is not None and acc.dim() == 3:
                wt = layer.weight
                slot ^= 1
                acc = torch.mm(acc.view(-1, wt.shape[0]), wt, out=self._buf(f"q{slot}", c * bsz, wt.shape[1]))
                acc = acc.view(c, bsz, -1)
            elif slope is None:
                acc = layer.weight[cs] if acc is None else torch.matmul(acc, layer.weight)
            elif acc is None:  # an activation on the logits themselves
                acc = self._eye(coef * slope.T)
            elif acc.dim() == 2:
                acc = torch.mul(acc.unsqueeze(1), slope.unsqueeze(0), out=self._buf(f"q{slot}", c, bsz, acc.shape[1]))
                acc.mul_(coef.unsqueeze(2))
            else:
                acc.mul_(slope.unsqueeze(0))
        if acc is None:  # a single linear layer: ∂l_c/∂z₁ = e_c
            acc = self._eye(coef)
        elif acc.dim() == 2:
            acc = coef.unsqueeze(2) * acc.unsqueeze(1)
        return acc

    @staticmethod
    def _eye(v: torch.Tensor) -> torch.Tensor:
        """(C, B, C) with entry [c, b, c] = v[c, b], zero elsewhere."""
        c = v.shape[0]
        return torch.eye(c, dtype=v.dtype, device=v.device).unsqueeze(1) * v.unsqueeze(2)

    def _vjp(self, v: torch.Tensor, slopes: list[torch.Tensor | None]) -> torch.Tensor:
        """v·∂l/∂z₁ (B, h) for v (B, C)."""
        for layer, slope in zip(reversed(self.layers[1:]), reversed(slopes)):
            v = v @ layer.weight if slope is None else v * slope
        return v

    def _jvp(self, u: torch.Tensor, slopes: list[torch.Tensor | None]) -> torch.Tensor:
        """∂l/∂z₁·u (B, C) for u (B, h) (a direction at the first layer's output)."""
        for layer, slope in zip(self.layers[1:], slopes):
            u = u @ layer.weight.T if slope is None else u * slope
        return u


@register_strategy("sage")
class SageSampling(Strategy):
    """SAGE (Bouvier et al., Eq. 3–6, Alg. 1): stochastic adversarial gradient embedding + farthest-first.

    Per class c, g_c = −∂ log d_c(f)/∂f for the TSF class-level discriminator d (Eq. 3; objective ``tsf``
    provides ``class_discriminator``); E = Σ_c p_c g_c (Eq. 4); POP g̃_c = g_c − λ_c·E,
    λ_c = |g_c·E|/||E||² (Eq. 5); S(x) = (√p_c·g̃_c)_c (Eq. 6). First pick arg-max ||S(x)||, then greedy
    farthest-first on S (Alg. 1 as written, line 4: argmax_u min_a ||S(x_u) − S(x_a)||, the default;
    docs/methods.md), or k-means++ D² sampling (the text's "k-means++", ``diversity: kmeans_pp``), or none.
    For a linear / ReLU-MLP d, S is computed per block from the factorisation J = Q·V₁ of the Jacobian
    without forming the (B, C, m) gradients (`_SageMLP`: two matrix products of C·h² per sample); any other
    d goes through one `torch.func` vmap(jacrev) call per block. N×C×m is never stored above
    ``max_embedding_mb``: each class block is then randomly projected (see `compute_sage`). Scores are
    ||S(x)||. Only unlabelled samples are candidates and labelled ones are not centres (Alg. 1 runs on U_T').
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
            return top_k(norms, cand, budget, rng)
        first = argmax_random(norms, rng)
        if prm.diversity == "farthest_first":
            picks, _ = farthest_first(rows, budget, rng=rng, first=first)
        else:
            picks, _ = kmeans_pp(rows, budget, rng, first=first)
        return Selection(cand[picks], norms[torch.as_tensor(picks, device=norms.device)])
