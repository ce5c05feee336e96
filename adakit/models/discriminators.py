"""Discriminators and conditioning maps shared by the adversarial objectives (DANN, CDAN, MSTN, TSF, BIWAA, GSDA).

- `Discriminator`: the MLP of the DANN / CDAN code (``AdversarialNetwork``: in → 1024 → 1024 → out with
  ReLU and dropout 0.5, Xavier-normal weights, zero biases); returns **logits**. ``hidden`` gives a smaller
  width (e.g. 256 on frozen features), ``layers`` the number of hidden layers.
- `DomainDiscriminator`: f (N, m) → logit (N, 1); sigmoid = P(source) (target = 0), docs/architecture.md.
- `ClassDiscriminator`: f (N, m) → logits (N, C); sigmoid_c = d_c(f), the class-level discriminator of the
  transferability loss (SAGE, Eq. 2); also usable as C per-class or G per-group domain discriminators (GSDA).
- `MultilinearMap` / `RandomMultilinearMap` / `conditioning_map`: CDAN's conditioning T(f, p)
  (Long et al., NeurIPS 2018, Eq. 4 and Eq. 5).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ClassDiscriminator", "Discriminator", "DiscriminatorBank", "DomainDiscriminator", "MultilinearMap",
           "RandomMultilinearMap", "conditioning_map", "MULTILINEAR_MAX_DIM"]

#: CDAN uses the exact multilinear map while m·C ≤ 4096 and the randomised one above (§3.2 of the paper)
MULTILINEAR_MAX_DIM = 4096


class Discriminator(nn.Module):
    """MLP discriminator of the DANN / CDAN code: in → hidden (×layers, ReLU, dropout) → out logits.

    Ganin et al., JMLR 2016 (DANN, §5.2.2: 1024-1024 domain classifier); Long et al., NeurIPS 2018 (CDAN code's
    ``AdversarialNetwork``, which ends in a sigmoid: here the sigmoid is left to the loss, for stability).
    """

    def __init__(self, in_dim: int, out_dim: int = 1, hidden: int = 1024, layers: int = 2, dropout: float = 0.5):
        super().__init__()
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers):
            mods += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
            d = hidden
        mods.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*mods)
        self.in_dim, self.out_dim = in_dim, out_dim
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DomainDiscriminator(Discriminator):
    """Domain discriminator d: R^m → R, logit of P(source) (DANN, Ganin et al. JMLR 2016, Eq. 9-10)."""

    def __init__(self, in_dim: int, hidden: int = 1024, layers: int = 2, dropout: float = 0.5):
        super().__init__(in_dim, 1, hidden, layers, dropout)


class ClassDiscriminator(Discriminator):
    """Class-level discriminator d: R^m → [0, 1]^C as C logits (SAGE, Bouvier et al. 2022, Eq. 2)."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 1024, layers: int = 2, dropout: float = 0.5):
        super().__init__(in_dim, num_classes, hidden, layers, dropout)


class MultilinearMap(nn.Module):
    """T⊗(f, p) = f ⊗ p flattened to (N, C·m) (CDAN, Long et al. NeurIPS 2018, Eq. 4).

    Row-major as in the CDAN code (``torch.bmm(p.unsqueeze(2), f.unsqueeze(1))``): entry c·m + j is p_c·f_j.
    """

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.out_dim = feature_dim * num_classes

    def forward(self, f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return (p.unsqueeze(2) * f.unsqueeze(1)).flatten(1)


class RandomMultilinearMap(nn.Module):
    """T⊙(f, p) = (R_f f) ⊙ (R_g p) / √d with fixed Gaussian R_f (d×m), R_g (d×C) (CDAN, Eq. 5).

    As the CDAN code's ``RandomLayer`` (d = 1024, entries N(0, 1), never trained); the matrices are buffers,
    so they are saved with the objective's state_dict and move with ``.to(device)``.
    """

    def __init__(self, feature_dim: int, num_classes: int, output_dim: int = 1024,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("rf", torch.randn(feature_dim, output_dim, generator=generator))
        self.register_buffer("rg", torch.randn(num_classes, output_dim, generator=generator))
        self.out_dim = output_dim

    def forward(self, f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return (f @ self.rf.to(f.dtype)) * (p @ self.rg.to(p.dtype)) / math.sqrt(self.out_dim)


def conditioning_map(feature_dim: int, num_classes: int, max_dim: int = MULTILINEAR_MAX_DIM,
                     random_dim: int = 1024, generator: torch.Generator | None = None) -> nn.Module:
    """CDAN's choice: the exact multilinear map if m·C ≤ ``max_dim``, else the random one of ``random_dim``."""
    if feature_dim * num_classes <= max_dim:
        return MultilinearMap(feature_dim, num_classes)
    return RandomMultilinearMap(feature_dim, num_classes, random_dim, generator)


class DiscriminatorBank(nn.Module):
    """K independent MLP discriminators evaluated in one batched pass (GSDA's class- and group-wise ones).

    Hu et al., CVPR 2020 (GSDA, Eq. 7-8: one discriminator D_k^cls per class, D_q^grp per group, each with its
    own parameters). Each head is the `Discriminator` MLP (in → hidden (×layers, ReLU, dropout) → 1 logit,
    Xavier-normal weights, zero biases), stored as stacked weights (K, d_in, d_out). ``forward`` takes
    x (K, N, m), one input copy per head (or (N, m), shared), and returns logits (K, N); ``heads`` evaluates
    a subset only. Rows never interact (no batch norm), so per-sample input gradients are exact.
    """

    def __init__(self, heads: int, in_dim: int, hidden: int = 256, layers: int = 2, dropout: float = 0.5):
        super().__init__()
        dims = [in_dim] + [hidden] * layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            w = torch.empty(heads, a, b)
            nn.init.normal_(w, 0.0, math.sqrt(2.0 / (a + b)))  # xavier_normal_ of each (b, a) head weight
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(heads, 1, b)))
        self.dropout = nn.Dropout(dropout)
        self.heads, self.in_dim = heads, in_dim

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (K', N) of the heads ``heads`` (indices; default all K) for x (K', N, m) or shared (N, m)."""
        k = self.heads if heads is None else len(heads)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(k, -1, -1)
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if heads is not None:
                w, b = w[heads], b[heads]
            x = torch.baddbmm(b.to(x.dtype), x, w.to(x.dtype))
            if i < n - 1:
                x = self.dropout(torch.relu(x))
        return x.squeeze(-1)

