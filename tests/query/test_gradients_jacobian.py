"""The closed-form discriminator Jacobian (`_mlp_log_sigmoid_jacobian`) with an activation at either end."""

import pytest
import torch
from torch import nn

from adakit.query._gradients import class_discriminator_gradients, piecewise_linear_layers


def _autograd_reference(disc: nn.Module, f: torch.Tensor) -> torch.Tensor:
    """−∂ log sigmoid(disc(f))_c / ∂f for every sample and class by autograd: (N, C, m)."""
    def log_d(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.logsigmoid(disc(x.unsqueeze(0))).squeeze(0)

    return -torch.func.vmap(torch.func.jacrev(log_d))(f)


@pytest.mark.parametrize("make", [
    # last layer an activation, C <= m: the reverse (output-side) accumulation starts at a slope
    lambda: nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU()),
    lambda: nn.Sequential(nn.Linear(6, 3), nn.LeakyReLU(0.2)),
    lambda: nn.Sequential(nn.Linear(6, 3), nn.LeakyReLU(0.2), nn.Dropout(0.5)),
    # first layer an activation, m < C: the forward (input-side) accumulation starts at a slope
    lambda: nn.Sequential(nn.LeakyReLU(0.1), nn.Linear(2, 5)),
    lambda: nn.Sequential(nn.ReLU(), nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 5), nn.LeakyReLU(0.3)),
    # activations only (C = m)
    lambda: nn.Sequential(nn.LeakyReLU(0.1)),
], ids=["relu-last", "leaky-last", "leaky-then-dropout", "leaky-first", "act-first-and-last", "act-only"])
def test_closed_form_jacobian_with_an_activation_at_either_end(make):
    torch.manual_seed(0)
    disc = make().double()
    assert piecewise_linear_layers(disc) is not None  # the closed form is the path under test
    m = next((layer.in_features for layer in disc if isinstance(layer, nn.Linear)), 4)
    f = torch.randn(7, m, dtype=torch.float64)
    g, d = class_discriminator_gradients(disc, f)
    ref = _autograd_reference(disc.eval(), f)
    assert g.shape == ref.shape
    torch.testing.assert_close(g, ref)
    torch.testing.assert_close(d, torch.sigmoid(disc(f)))
