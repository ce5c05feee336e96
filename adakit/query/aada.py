"""AADA query (Su et al., "Active Adversarial Domain Adaptation", WACV 2020)."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from adakit.params import Params
from adakit.query.base import Selection, Strategy, top_k
from adakit.query.uncertainty import entropy
from adakit.registry import register_strategy


class AADAParams(Params):
    block_size: int = Field(8192, gt=0, description="samples per discriminator forward pass")


def domain_discriminator_logits(disc: torch.nn.Module, f: torch.Tensor, block_size: int = 8192) -> torch.Tensor:
    """Logits l (N,) of the domain discriminator on features f, eval mode, no grad (sigmoid(l) = P(source)).

    The discriminator runs on its own device (f is copied there block by block); the logits come back on f's.
    """
    was_training = disc.training
    disc.eval()
    try:
        prm = next(disc.parameters(), None)
        dev = prm.device if prm is not None else torch.device("cpu")
        with torch.no_grad():
            dtype = prm.dtype if prm is not None and prm.is_floating_point() else f.dtype  # a float64 discriminator
            out = [disc(f[s:s + block_size].to(dev, dtype)).float().to(f.device).reshape(-1)
                   for s in range(0, len(f), block_size)]
    finally:
        disc.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, device=f.device)


def aada_scores(p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """s(x) = H(p)·(1 − d)/d with d = sigmoid(l) (Su et al. §3.2; SAGE §5.1 "Baselines").

    (1 − d)/d = exp(−l) exactly; it is evaluated that way, in float64, so a confident discriminator
    (d → 0 or 1) never divides by zero. The weight is the importance weight p_T(f)/p_S(f) of an
    optimal discriminator (source = 1, target = 0).
    """
    w = torch.exp(-logits.double().clamp(-700.0, 700.0))
    return entropy(p.double()) * w


@register_strategy("aada")
class AADASampling(Strategy):
    """AADA (Su et al. WACV 2020): top-b by H(p)·(1 − d(f))/d(f), d the domain discriminator's P(source).

    Needs an objective that provides ``domain_discriminator`` (e.g. DANN, as AADA trains; or any objective with
    ``probe_domain: true``, which trains one on detached features): a module f (N, m) → logits (N, 1) whose
    sigmoid is the probability of source (target = 0), as docs/architecture.md fixes.

    A discriminator that is not trained adversarially (the probe) separates the domains almost perfectly: the
    weight then spans orders of magnitude, more than H(p), and decides most picks (the most target-like samples
    among the uncertain ones). That is the method's score as published; it is kept unchanged.
    """

    Params = AADAParams
    needs = frozenset({"domain_discriminator"})

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        given = getattr(view, "domain_logits", None)  # per-sample logits given with arrays (adakit.select)
        if given is None:
            disc = self.provided(view, "domain_discriminator")
        cand = view.unlabelled_indices
        p = view.probs[cand]
        if given is not None:
            logits = given[torch.as_tensor(cand, device=given.device)].float().to(p.device)
        else:
            logits = domain_discriminator_logits(disc, view.embeddings[cand], self.params.block_size).to(p.device)
        return top_k(aada_scores(p, logits), cand, budget, rng)  # ranked on the pool outputs' device
