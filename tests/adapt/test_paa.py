import numpy as np
import torch
from torch import nn

from adakit.adapt.paa import AnchorParams, AnchorSet, _knn
from adakit.data.domain import TensorDomain


class _Fixed(nn.Module):
    """Predicts class = sign of the first feature (confident), features = inputs."""

    def forward(self, x):
        z = torch.stack([-10 * x[:, 0], 10 * x[:, 0]], dim=1)
        return x, z


def _pool(n=20):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return TensorDomain(name="t", classes=["a", "b"], ids=[f"t{i}" for i in range(n)], y=(x[:, 0] > 0).long().numpy(),
                        x=x)


def _anchors(kind, labelled=(0, 1), y=(0, 0), tau=0.9, seed=0):
    pool = _pool()
    return AnchorSet(AnchorParams(kind=kind, tau=tau, k=3), _Fixed(), pool, np.array(labelled), np.array(y), 4,
                     np.random.default_rng(seed), "cpu", 2), pool


def test_rejection_probability_eq4():
    a, _ = _anchors("raa", labelled=(0, 1, 2, 3), y=(0, 0, 0, 1))
    # counts + 1 = [4, 2]: q = ([4, 2] - 2) / 4
    np.testing.assert_allclose(a.rejection(), [0.5, 0.0])


def test_mix_is_a_per_sample_convex_combination():
    a, _ = _anchors("raa")
    x, s = torch.zeros(64, 3), torch.ones(64, 3)
    m = a.mix(x, s)
    assert ((m >= 0) & (m <= 1)).all() and torch.allclose(m, m[:, :1].expand_as(m))
    assert len(torch.unique(m[:, 0])) > 32  # β drawn per sample


def test_accepted_candidates_wait_for_the_end_of_a_pass():
    a, pool = _anchors("raa", tau=0.5)
    first, _ = a.next_batch()  # |A| = 2 < batch: one pass = one batch
    assert sorted(first.tolist()) == [0, 1]
    added = a.propose(first)
    assert len(a) == 2 and added == sum(len(p) for p in a.pending_idx)
    a.next_batch()
    assert len(a) == 2 + added
    new = a.idx[2:]
    assert not set(new.tolist()) & {0, 1}
    # pseudo-labels are the model's predictions
    assert a.y[2:].tolist() == (pool.x[torch.as_tensor(new), 0] > 0).long().tolist()


def test_nothing_passes_an_impossible_threshold():
    a, _ = _anchors("raa", tau=1.0)
    a.model = nn.Module()
    a.model.forward = lambda x: (x, torch.zeros(len(x), 2))  # p = 0.5 everywhere
    assert a.propose(np.array([0, 1])) == 0


def test_laa_candidates_are_nearest_neighbours():
    a, pool = _anchors("laa", tau=0.0)
    a.rejection = lambda: np.zeros(2)  # accept every candidate
    a.propose(np.array([0, 1]))
    emb = torch.nn.functional.normalize(pool.x, dim=1)
    for anchor in (0, 1):
        sims = (emb @ emb[anchor]).numpy()
        sims[anchor] = -np.inf
        assert set(_knn(emb, np.array([anchor]), 3)[0].tolist()) == set(np.argsort(-sims)[:3].tolist())
    nbrs = set(_knn(emb, np.array([0, 1]), 3).flatten().tolist())
    assert set(np.concatenate(a.pending_idx).tolist()) <= nbrs


def test_strong_view_of_features_is_noisy_but_close():
    pool = _pool(200)
    torch.manual_seed(0)
    s = pool.load_strong(np.arange(200))
    diff = (s - pool.x).abs()
    dropped = diff > 3 * 0.1 * pool.x.std(0)  # far beyond the noise: a dropped feature
    assert diff.mean() > 0.01 and 0.03 < dropped.float().mean() < 0.2
    assert torch.corrcoef(torch.stack([s.flatten(), pool.x.flatten()]))[0, 1] > 0.8


def test_anchor_augmentation_runs_in_the_loop_and_grows_the_set(tmp_path):
    from adakit.config import build_config
    from adakit.loop import ActiveLoop

    cfg = build_config({"data": {"format": "demo"}, "model": {"hidden_dim": 32, "bottleneck_dim": 16},
                        "query": {"strategy": "margin"}, "budget": {"total": 0.05, "rounds": 2},
                        "train": {"warmup_iters": 150, "round_iters": 60, "threads": 1},
                        "anchor": {"kind": "laa", "tau": 0.5}})
    loop = ActiveLoop(cfg, tmp_path, show_progress=False)
    loop.run()
    stats = loop.ledger.get_meta("train/2")
    labelled = len(loop.ledger.current_labels())
    assert labelled == 45 and stats["anchor_set"] > labelled
