"""Tiny objectives and batches for the formula tests of the adversarial objectives (not collected: leading _)."""

from __future__ import annotations

import torch

from adakit.adapt.base import Batch
from adakit.registry import OBJECTIVES


def make_objective(name: str, m: int = 3, c: int = 4, **params):
    """Objective ``name`` on ``m``-d features and ``c`` classes, small discriminator (hidden 5), no dropout."""
    cls = OBJECTIVES.get(name)
    return cls(cls.Params.validated({"hidden": 5, "dropout": 0.0, **params}, "objective"), feature_dim=m,
               num_classes=c)


def toy_batch(m: int = 3, c: int = 4, seed: int = 0, ys=(0, 1, 2, 3), target_in: int = 1,
              logit_scale: float = 1.0, logits_grad: bool = False) -> Batch:
    """4 source and 3 target samples whose features are the inputs (``xs is fs``, ``xu is fu``) and require
    grad; source sample ``target_in`` is a labelled target sample (S+T)."""
    g = torch.Generator().manual_seed(seed)
    fs = torch.randn(4, m, generator=g, requires_grad=True)
    fu = torch.randn(3, m, generator=g, requires_grad=True)
    zs = (logit_scale * torch.randn(4, c, generator=g)).requires_grad_(logits_grad)
    zu = (logit_scale * torch.randn(3, c, generator=g)).requires_grad_(logits_grad)
    return Batch(xs=fs, ys=torch.tensor(ys), idx_s=torch.arange(4), fs=fs, zs=zs, xu=fu, fu=fu, zu=zu,
                 target_in_s=torch.arange(4) == target_in)
