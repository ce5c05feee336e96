import math

import pytest
import torch

from adakit.models.grl import grad_reverse, grl_schedule


def test_forward_is_identity_and_backward_negates_and_scales():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = grad_reverse(x, 0.7)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.7 * w)


def test_coefficient_zero_blocks_the_gradient():
    x = torch.randn(5, requires_grad=True)
    (grad_reverse(x, 0.0) ** 2).sum().backward()
    assert torch.equal(x.grad, torch.zeros(5))


def test_reversal_inside_a_chain():
    # d/dx of a(R(b·x)) = −coeff · a'(b x) · b
    x = torch.tensor([0.3, -1.2], requires_grad=True)
    torch.sin(grad_reverse(2.0 * x, 0.5)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.cos(2.0 * x.detach()) * 2.0)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_schedule_matches_dann_formula(p):
    assert grl_schedule(p) == pytest.approx(2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)
    assert grl_schedule(p, high=0.3, alpha=5.0) == pytest.approx(0.3 * (2.0 / (1.0 + math.exp(-5.0 * p)) - 1.0))


def test_schedule_runs_from_zero_towards_high():
    values = [grl_schedule(p / 10) for p in range(11)]
    assert values[0] == 0.0
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.9999092, abs=1e-6)
