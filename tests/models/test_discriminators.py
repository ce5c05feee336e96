import math

import pytest
import torch
from torch import nn

from adakit.models.discriminators import (
    ClassDiscriminator,
    Discriminator,
    DomainDiscriminator,
    MultilinearMap,
    RandomMultilinearMap,
    conditioning_map,
)


def _linears(m: nn.Module) -> list[nn.Linear]:
    return [x for x in m.modules() if isinstance(x, nn.Linear)]


def test_default_architecture_is_the_cdan_codes_1024_1024():
    d = DomainDiscriminator(256)
    shapes = [(lin.in_features, lin.out_features) for lin in _linears(d)]
    assert shapes == [(256, 1024), (1024, 1024), (1024, 1)]
    assert sum(isinstance(x, nn.Dropout) and x.p == 0.5 for x in d.modules()) == 2
    assert all(torch.equal(lin.bias, torch.zeros_like(lin.bias)) for lin in _linears(d))


def test_smaller_width_and_output_shapes():
    f = torch.randn(7, 12)
    d = DomainDiscriminator(12, hidden=16)
    assert [lin.out_features for lin in _linears(d)] == [16, 16, 1]
    assert d(f).shape == (7, 1)
    c = ClassDiscriminator(12, 5, hidden=8, layers=1)
    assert [(lin.in_features, lin.out_features) for lin in _linears(c)] == [(12, 8), (8, 5)]
    assert c(f).shape == (7, 5)
    assert Discriminator(12, 3, hidden=4, layers=0)(f).shape == (7, 3)


def test_outputs_are_logits_not_probabilities():
    d = Discriminator(3, 1, hidden=4, dropout=0.0)
    with torch.no_grad():
        d.net[-1].bias.fill_(10.0)
    assert (d(torch.zeros(2, 3)) == 10.0).all()


def test_multilinear_map_is_the_flattened_outer_product():
    f, p = torch.randn(4, 3), torch.softmax(torch.randn(4, 2), 1)
    mm = MultilinearMap(3, 2)
    out = mm(f, p)
    assert out.shape == (4, 6) and mm.out_dim == 6
    assert torch.allclose(out, torch.bmm(p.unsqueeze(2), f.unsqueeze(1)).view(4, -1))  # the CDAN code
    assert out[2, 1 * 3 + 2] == pytest.approx(float(p[2, 1] * f[2, 2]))  # entry c·m + j = p_c·f_j


def test_random_multilinear_map():
    gen = torch.Generator().manual_seed(0)
    rm = RandomMultilinearMap(5, 3, output_dim=16, generator=gen)
    f, p = torch.randn(4, 5), torch.softmax(torch.randn(4, 3), 1)
    out = rm(f, p)
    assert out.shape == (4, 16) and rm.out_dim == 16
    assert rm.rf.shape == (5, 16) and rm.rg.shape == (3, 16)
    assert torch.allclose(out, (f @ rm.rf) * (p @ rm.rg) / math.sqrt(16))
    i, k = 1, 7  # one entry by hand
    hand = sum(f[i, a] * rm.rf[a, k] for a in range(5)) * sum(p[i, c] * rm.rg[c, k] for c in range(3)) / 4.0
    assert out[i, k] == pytest.approx(float(hand), rel=1e-5)
    # fixed: buffers (saved, never trained), reproducible from the generator
    assert list(rm.parameters()) == []
    assert set(rm.state_dict()) == {"rf", "rg"}
    again = RandomMultilinearMap(5, 3, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.rf, rm.rf) and torch.equal(again.rg, rm.rg)


def test_random_map_preserves_inner_products_in_expectation():
    # E[<T(f,p), T(f',p')>] = <f,f'>·<p,p'> (CDAN Theorem 1); check on average over many random maps
    f, p = torch.randn(2, 4), torch.softmax(torch.randn(2, 3), 1)
    gen = torch.Generator().manual_seed(1)
    vals = []
    for _ in range(400):
        t = RandomMultilinearMap(4, 3, 64, generator=gen)(f, p)
        vals.append(float(t[0] @ t[1]))
    exact = float((f[0] @ f[1]) * (p[0] @ p[1]))
    assert sum(vals) / len(vals) == pytest.approx(exact, abs=0.1 * abs(exact) + 0.05)


def test_conditioning_map_switches_above_4096():
    assert isinstance(conditioning_map(64, 64), MultilinearMap)  # 4096: exact
    m = conditioning_map(65, 64)
    assert isinstance(m, RandomMultilinearMap) and m.out_dim == 1024
    assert isinstance(conditioning_map(256, 31), RandomMultilinearMap)  # Office-31 with a 256-d bottleneck
    assert conditioning_map(256, 31, random_dim=32).out_dim == 32
