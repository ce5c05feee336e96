"""``objective.label_smoothing``: the cross-entropy on labelled samples against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from adakit.errors import ConfigError
from adakit.registry import OBJECTIVES

Z = torch.tensor([[3.0, 0.0, 4.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
Y = torch.tensor([0, 1])


def make(name: str, **params):
    cls = OBJECTIVES.get(name)
    return cls(cls.Params.validated(params, "objective"), feature_dim=4, num_classes=3)


def _smoothed_ce(z: list[float], y: int, eps: float) -> float:
    """(1 − ε)·(−log p_y) + ε·(1/C)·Σ_c (−log p_c), with log p_c = z_c − log Σ exp z."""
    lse = math.log(sum(math.exp(v) for v in z))
    return (1 - eps) * (lse - z[y]) + eps * sum(lse - v for v in z) / len(z)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_finetune_cross_entropy_by_hand(eps):
    want = (_smoothed_ce([3, 0, 4], 0, eps) + _smoothed_ce([1, 2, 2], 1, eps)) / 2
    assert make("finetune", label_smoothing=eps).classification_loss(Z, Y).item() == pytest.approx(want, abs=1e-12)


def test_sdm_smooths_only_its_cross_entropy_term():
    plain, smooth = make("sdm"), make("sdm", label_smoothing=0.1)
    diff = smooth.per_sample_loss(Z, Y) - plain.per_sample_loss(Z, Y)
    want = [_smoothed_ce(z, y, 0.1) - _smoothed_ce(z, y, 0.0) for z, y in ([[3, 0, 4], 0], [[1, 2, 2], 1])]
    assert torch.allclose(diff, torch.tensor(want, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("eps", [-0.1, 1.0])
def test_out_of_range_is_a_config_error(eps):
    with pytest.raises(ConfigError, match="label_smoothing"):
        make("finetune", label_smoothing=eps)
