"""Gradient reversal (Ganin & Lempitsky, ICML 2015) and the field's schedule of its coefficient."""

from __future__ import annotations

import math

import torch


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.scale * grad, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``scale`` backward."""
    return _ScaleGrad.apply(x, scale)


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coeff`` backward."""
    return _ScaleGrad.apply(x, -coeff)


def grl_schedule(progress: float, high: float = 1.0, alpha: float = 10.0) -> float:
    """λ(p) = high · (2 / (1 + exp(-alpha·p)) − 1), p ∈ [0, 1] (DANN, Ganin et al. 2016, §5.2.2)."""
    return float(high * (2.0 / (1.0 + math.exp(-alpha * progress)) - 1.0))
