"""benchmarks/peer_code.py: adapters to the released peer code, the LADA CoreSet fix, the table; smoke runs.

The smoke runs need the peer code, which is not part of the repository: they run only when
ADAKIT_PEER_LADA / ADAKIT_PEER_SDM point to checkouts of tsun/LADA and TencentYoutuResearch/ActiveLearning-SDM
(see the script's docstring) and are skipped otherwise.
"""

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

spec = importlib.util.spec_from_file_location(
    "peer_code", Path(__file__).resolve().parent.parent / "benchmarks" / "peer_code.py")
peer_code = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer_code)


def test_lada_coreset_fix_maps_unlabelled_positions_to_pool_indices():
    labelled = np.array([True, False, True, False, False, True, False])
    # furthest_first returns positions among the unlabelled rows [1, 3, 4, 6]; the released code returns them as
    # they are (its idxs_unlabeled is every index), so position 0 would name sample 0, which is labelled
    picks = np.array([0, 3, 1])
    fixed = peer_code.fix_lada_coreset(picks, labelled)
    assert fixed.tolist() == [1, 6, 3]
    assert not labelled[fixed].any() and labelled[picks].any()


def test_one_batch_dataset_gives_a_peer_loader_one_collated_batch():
    torch.manual_seed(0)
    x, y = torch.randn(50, 8), torch.arange(50)
    head = nn.Linear(8, 3)
    ds = peer_code.OneBatch(x, y, 3)
    idx = np.array([3, 7, 11, 40, 2])
    loader = torch.utils.data.DataLoader(ds, sampler=idx, batch_size=len(idx), num_workers=0)
    batches = list(loader)
    assert len(batches) == 1
    data, target, ids = batches[0]
    assert data.shape == (1, 5, 8) and target.tolist() == [idx.tolist()] and ids.tolist() == [idx.tolist()]
    z, emb = peer_code.FeatureNet(head)(data, with_emb=True)
    assert torch.equal(emb, x[idx]) and torch.allclose(z, head(x[idx]))
    f, z2 = peer_code.FeatureNet(head, "sdm")(data)
    assert torch.equal(f, x[idx]) and torch.allclose(z2, z)
    assert len(ds[4]) == 3 and len(peer_code.OneBatch(x, y, 2)[4]) == 2  # per-item fallback: the field count


def test_render_marks_ratios_below_ten_and_errors():
    base = {"threads": 1, "n": 20000, "b": 200, "load_start": 4.0, "load_end": 4.5}
    fast = {"wall": 0.1, "cpu": 0.05, "reps": 3, "spread": 0.1}
    cells = {
        1: {**base, "strategy": "coreset", "peer": "lada", "adakit": fast,
            "peer_code": {"wall": 2.0, "cpu": 1.0, "reps": 3, "spread": 0.1},
            "agreement": {"overlap": 1.0, "same_order": True, "peer_valid": True}},
        2: {**base, "strategy": "clue", "peer": "clue", "adakit": fast,
            "peer_code": {"wall": 0.12, "cpu": 0.06, "reps": 3, "spread": 0.1},
            "agreement": {"overlap": 0.2, "same_order": False, "peer_valid": True, "adakit_seed_overlap": 0.25}},
        3: {**base, "strategy": "badge", "peer": "skactiveml", "error": "> 900 s (timed out)"},
    }
    rows = {ln.split("|")[4].strip() + "/" + ln.split("|")[5].strip(): ln
            for ln in peer_code.render(cells).splitlines()[2:]}
    assert "| 20.0× | 20.0× | yes |" in rows["coreset/lada"] and "100% (same order)" in rows["coreset/lada"]
    assert "| 1.2× | 1.2× | NO |" in rows["clue/clue"] and "adakit seed 0 vs 1: 25%" in rows["clue/clue"]
    assert "timed out" in rows["badge/skactiveml"]


@pytest.mark.parametrize(("strategy", "peer", "env"), [("coreset", "lada", "ADAKIT_PEER_LADA"),
                                                       ("sdm_g", "sdm", "ADAKIT_PEER_SDM")])
def test_smoke_against_the_released_code(strategy, peer, env):
    path = os.environ.get(env)
    if not path or not Path(path).is_dir():
        pytest.skip(f"{env} does not point to the {peer} code")
    r = peer_code.run_cell(strategy, peer, Path(path), None, 300, 1, 1, 0.0, 120.0)  # one pair of calls
    assert "error" not in r, r.get("error")
    a = r["agreement"]
    assert a["peer_valid"] and a["same_order"]  # deterministic methods: identical picks
    if peer == "lada":
        assert a["unfixed_wrong_picks"] > 0  # the released index bug, on this pool


def test_adakit_side_parameters_reach_the_strategy_and_label_the_cell():
    path = os.environ.get("ADAKIT_PEER_LADA")
    if not path or not Path(path).is_dir():
        pytest.skip("ADAKIT_PEER_LADA does not point to the LADA code")
    pytest.importorskip("faiss")
    r = peer_code.run_cell("las", "lada", Path(path), None, 300, 1, 1, 0.0, 120.0,
                           params={"search": "ivf", "kmeans": "faiss"})
    assert "error" not in r, r.get("error")
    assert r["peer"] == "lada (adakit search=ivf, kmeans=faiss)" and r["agreement"]["peer_valid"]


def test_release_era_kmeans_patches_only_the_peer_modules(monkeypatch):
    from sklearn.cluster import KMeans

    fake = types.ModuleType("sample")  # stands in for the CLUE repo's sample.py
    fake.KMeans = KMeans
    monkeypatch.setitem(sys.modules, "sample", fake)
    assert peer_code.set_peer_kmeans_n_init(10) == ["sample"]
    assert fake.KMeans(5).n_init == 10 and KMeans(5).n_init == "auto"
