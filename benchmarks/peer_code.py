"""Query speed against the released peer code: adakit.select vs the authors' own selection code.

Same synthetic pool as `benchmarks/query_speed.py` (its `SyntheticPool` and `budget_of`: m = 256, C = 65, 1%
labelled, b = 1% of N). Each (threads, N, strategy, peer) cell runs in a fresh subprocess with only that peer's
code on ``sys.path`` and OMP/MKL/OpenBLAS threads and ``torch.set_num_threads`` set to ``--threads``. Inside it,
after a warm-up of both on a 300-sample pool, adakit and the peer are timed *interleaved* (adakit, peer, adakit,
peer, ...): wall time (``time.perf_counter``) and process CPU time (``time.process_time``, all threads), median
of the repetitions (at least ``--reps``; calls under 1 s are repeated until 1 s of adakit calls or 25 pairs;
a first peer call over ``--long`` seconds is not repeated, adakit's calls still are). The 1-minute load
average is recorded at the start and end of every cell. Ratios are peer / adakit, wall and CPU, same process.

The peer code is never copied into this repository: it is loaded from the paths given on the command line.
Getting it (the commits measured)::

    git clone https://github.com/tsun/LADA ../peer/LADA
    git -C ../peer/LADA checkout 5de718ecd0b1eccc337ff54d4cd854ffb580d7e2
    git clone https://github.com/virajprabhu/CLUE ../peer/CLUE
    git -C ../peer/CLUE checkout 87009d564e6b6fff78e0b0cafb069bd554a63a67
    git clone https://github.com/TencentYoutuResearch/ActiveLearning-SDM ../peer/SDM
    git -C ../peer/SDM checkout 0ee700e59451131536b7509ff3d4b266835ac01b
    .venv/bin/pip download scikit-activeml==1.0.1 --no-deps -d /tmp/skal       # the venv is not touched
    .venv/bin/python -m zipfile -e /tmp/skal/scikit_activeml-1.0.1-py3-none-any.whl ../peer/skactiveml-1.0.1
    .venv/bin/pip install --no-deps --target ../peer/_site makefun seaborn   # imports the venv lacks

    .venv/bin/python benchmarks/peer_code.py --lada ../peer/LADA --clue ../peer/CLUE \
        --sdm ../peer/SDM --skactiveml ../peer/skactiveml-1.0.1 --site ../peer/_site
    .venv/bin/python benchmarks/peer_code.py ... --sizes 2000 --threads 1 2 --only las badge
    .venv/bin/python benchmarks/peer_code.py --lada ../peer/LADA --sizes 20000 --only las \
        --adakit-set search=ivf kmeans=faiss          # adakit's approximate paths (a variant row beside the default)
    .venv/bin/python benchmarks/peer_code.py --render                          # the table from the JSON only

``tests/test_peer_code.py`` runs a small cell against LADA and SDM when ADAKIT_PEER_LADA / ADAKIT_PEER_SDM
name the checkouts (skipped otherwise). A peer path that is a git checkout has its commit read with
``git rev-parse HEAD``; otherwise from a file ``COMMIT`` in it. Peers not given are skipped. Results accumulate
in results/peer_code.json (one record per cell, the newest wins); a markdown table is printed. Run time at
N = 2k and 20k, 1 thread: about 17 minutes on 2 loaded cores (≈ 8.5 min of CPU, 3.5 of them scikit-activeml's
BADGE at 20k, one call of ~3 CPU-minutes), so under 10 minutes on an idle machine.
At 2 threads (``--threads 2``, the same sizes): 16 minutes on an idle machine (2026-12-03).

What is timed on the peer side (the smallest adaptation of each released function, on the pool's arrays):

* The peers' ``query()`` methods run a data loader through their network. Here the network is an identity
  backbone on the pool's embeddings plus the pool's own linear head (``FeatureNet``), and the dataset serves
  the requested rows as one pre-collated batch (``OneBatch``: DataLoader ``__getitems__``), so their inference
  loop costs one row gather and one head forward (a few ms), not N Python ``__getitem__`` calls. adakit is
  given the probabilities / logits it reads, already computed.
* LADA ``LAS``, ``BADGE``, ``CLUE``, ``coreset`` and ``margin`` (active/sampler.py, active/LASsampler.py): the
  strategy object built with its own ``__init__`` and ``query(b, 0)`` called, cfg = LADA's defaults (K = 10,
  M = 10, one propagation step, coefficient 1; the same K and M as adakit's defaults). CoreSet's index bug is
  fixed after the call (see `fix_lada_coreset`). Seeds: ``np.random.seed`` (KMeans has no random_state) and
  the module-level RandomState that ``kmeans_plus_plus_opt`` holds as a default argument are reseeded per call.
* CLUE repo ``CLUESampling.query(b)`` (sample.py), T = 0.1. Its ``query`` hard-codes the embedding width (500
  LeNet, 512 ResNet34) and fails for m = 256; the adapter wraps ``utils.get_embedding`` to pass emb_dim = m.
* SDM repo ``SDM.SDM_query(b)`` (sample_strategy/SDM.py, λ = 0.01, SDM-G) on a loader over the unlabelled
  rows (its candidate dataset), and ``SDM.margin_base(probs)[:b]`` for margin sampling.
* scikit-activeml 1.0.1 ``Badge(random_state=seed).query(X, y, clf, fit_clf=False, batch_size=b)`` with X the
  embeddings and ``clf`` a `SkactivemlClassifier` whose ``predict_proba`` is the pool's linear head + softmax.

Agreement: the first call's picks of both, as a set overlap |A ∩ P| / b (and whether the ordered lists are
equal). Deterministic methods (margin, SDM-G, CoreSet) should agree up to ties and float32 rounding; the seeded
ones (LAS, CLUE: k-means; BADGE: k-means++) cannot agree pick for pick, so adakit's own overlap between seeds
0 and 1 is reported beside them as the scale of seed-to-seed variation.

Found in the peer code (read at the commits above):

* LADA CoreSet returns wrong indices whenever anything is labelled (see `fix_lada_coreset`); its
  ``furthest_first`` also updates the N minimum distances in a Python loop per pick (O(N·b) interpreter steps).
* LADA / CLUE ``kmeans_plus_plus_opt`` (BADGE) holds ``random_state=np.random.RandomState(1234)`` as a default
  argument: one generator shared by every call, so a query's picks depend on how many queries ran before it.
* LADA / CLUE call ``KMeans(n)`` without ``n_init``: 10 restarts with the scikit-learn they were released for,
  1 with scikit-learn ≥ 1.4 (``--kmeans-n-init 10`` times the former).
* CLUE repo ``query()``: embedding width hard-coded for LeNet / ResNet34 (other backbones fail) and
  ``num_workers=4``; SDM ``predict_prob2`` hard-codes a 256-wide feature buffer and grows its outputs with
  ``torch.cat`` per batch (quadratic copying; one batch here).
* scikit-activeml 1.0.1 ``Badge``: the D² update ``np.minimum(d_latest, dist²)`` starts from ``d_latest`` =
  ||g||², the distance to the origin, so the origin stays a k-means++ centre for the whole batch
  (upstream issue #588; the fix, PR #590, is not in 1.0.1): samples with small gradients (confident ones) are held down.
  It also materialises the (N, C·m) float64 gradient embeddings (2.6 GB at N = 20k; upstream #589).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import torch
import yaml
from torch import nn

HERE = Path(__file__).resolve().parent
JSON_OUT = HERE / "results" / "peer_code.json"
REPOS = {
    "lada": ("https://github.com/tsun/LADA", "5de718ecd0b1eccc337ff54d4cd854ffb580d7e2"),
    "clue": ("https://github.com/virajprabhu/CLUE", "87009d564e6b6fff78e0b0cafb069bd554a63a67"),
    "sdm": ("https://github.com/TencentYoutuResearch/ActiveLearning-SDM", "0ee700e59451131536b7509ff3d4b266835ac01b"),
    "skactiveml": ("https://pypi.org/project/scikit-activeml/1.0.1/", "1.0.1 (wheel)"),
}
#: (adakit strategy, peer) -> what the peer call is
CELLS: dict[tuple[str, str], str] = {
    ("las", "lada"): "LADA LASSampling.query(b) (N_u×N_u similarity, top-K, sklearn KMeans on b·(1+M) candidates)",
    ("coreset", "lada"): "LADA CoreSetSampling.query(b) (furthest_first), index bug fixed after the call",
    ("badge", "lada"): "LADA BADGESampling.query(b) (kmeans_plus_plus_opt on factorised gradient embeddings)",
    ("clue", "lada"): "LADA CLUESampling.query(b) (weighted sklearn KMeans + b×N_u argsort fill-up)",
    ("margin", "lada"): "LADA MarginSampling.query(b) (its pred() pass + topk + sort)",
    ("clue", "clue"): "CLUE repo CLUESampling.query(b) (weighted sklearn KMeans + b×N_u argsort fill-up)",
    ("margin", "sdm"): "SDM repo SDM.margin_base(probs of the unlabelled)[:b]",
    ("sdm_g", "sdm"): "SDM repo SDM.SDM_query(b) (predict_prob2 pass, pdf gradients, margin − λ·cos)",
    ("badge", "skactiveml"): "scikit-activeml 1.0.1 Badge.query(X, y, clf, fit_clf=False, batch_size=b)",
}
SEEDED = {"las", "clue", "badge"}
KMEANS = {"las", "clue"}  # the peer code calls scikit-learn's KMeans
#: a cell variant whose adakit side ran with strategy parameters (--adakit-set), e.g. "lada (adakit search=ivf)"
ADAKIT_VARIANT = "adakit"


# --------------------------------------------------------------------------------------------- adapters


class FeatureNet(nn.Module):
    """Stands in for a peer's network on precomputed features: identity backbone + the pool's linear head.

    ``style="lada"`` (LADA, CLUE): ``forward(x, with_emb)`` → logits, or (logits, features) with ``with_emb``.
    ``style="sdm"``: ``forward(x)`` → (features, logits), head as ``.fc`` (SDM reads ``model.fc.weight``).
    Batches from `OneBatch` arrive with a leading dimension of 1, which is dropped.
    """

    def __init__(self, head: nn.Module, style: str = "lada"):
        super().__init__()
        self.fc, self.style = head, style

    def forward(self, x: torch.Tensor, with_emb: bool = False):
        x = x.reshape(-1, x.shape[-1])
        z = self.fc(x)
        if self.style == "sdm":
            return x, z
        return (z, x) if with_emb else z


class OneBatch(torch.utils.data.Dataset):
    """Rows of (features, label, index, index)[:fields]; a DataLoader batch comes back as ONE pre-collated item.

    DataLoader (torch ≥ 2.0) fetches a batch with ``__getitems__`` when the dataset has it; returning a
    one-element list makes the default collate stack a single (B, ...) tensor per field (shape (1, B, ...)),
    so a peer's inference loop costs one gather, not B Python calls. `FeatureNet` drops the leading 1.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, fields: int, **attrs):
        self.x, self.y, self.fields = x, y, fields
        self.__dict__.update(attrs)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return (self.x[i], self.y[i], i, i)[: self.fields]

    def __getitems__(self, idx: list[int]):
        t = torch.as_tensor(idx)
        return [(self.x[t], self.y[t], t, t)[: self.fields]]


class _InProcessLoader(torch.utils.data.DataLoader):
    """DataLoader with ``num_workers=0`` whatever the caller asks (see `_clue`)."""

    def __init__(self, *args, **kwargs):
        kwargs["num_workers"] = 0
        super().__init__(*args, **kwargs)


def fix_lada_coreset(picks: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Map LADA CoreSet's returned positions to pool indices (the fix of its index bug).

    ``CoreSetSampling.query`` calls ``self.pred(idxs=np.arange(N))``, so the ``idxs_unlabeled`` it gets back
    is every pool index, while ``furthest_first`` returns positions in ``all_embs[~self.idxs_lb]``, the
    unlabelled rows only. ``idxs_unlabeled[q_idxs]`` therefore returns the positions themselves: as soon as one
    sample is labelled, picks point at the wrong samples (labelled ones included). The fix:
    ``np.flatnonzero(~labelled)[q_idxs]``.
    """
    return np.flatnonzero(~labelled)[np.asarray(picks)]


def peer_commit(path: Path) -> str:
    if (path / ".git").exists():
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip()
    if (path / "COMMIT").exists():
        return (path / "COMMIT").read_text().strip()
    return "unknown (not a git checkout, no COMMIT file)"


def _lada(path: Path, pool, b: int) -> dict[str, Callable[[int], np.ndarray]]:
    sys.path.insert(0, str(path))
    import active  # noqa: F401  (registers the strategies)
    from active import sampler

    n, c = len(pool), pool.probs.shape[1]
    cfg = NS(DATALOADER=NS(NUM_WORKERS=0, BATCH_SIZE=n), MODEL=NS(BACKBONE=NS(NAME="ResNet50")),
             DATASET=NS(NUM_CLASS=c), LADA=NS(S_K=10, S_M=10, S_PROP_ITER=1, S_PROP_COEF=1.0))
    ds = OneBatch(pool.embeddings, torch.as_tensor(pool.labels), 3)
    tgt = NS(train_idx=np.arange(n), get_dsets=lambda: (ds, ds))
    kpp_state = sampler.kmeans_plus_plus_opt.__defaults__[1]  # the shared default RandomState(1234)
    lab = pool.labelled.copy()

    def strategy(name: str):
        s = sampler.get_strategy(name, None, tgt, FeatureNet(pool.head), torch.device("cpu"), c, cfg)
        s.update(lab.copy())
        return s

    def run(s, fix=None):
        def call(seed: int) -> np.ndarray:
            np.random.seed(seed)
            kpp_state.seed(seed)
            out = np.asarray(s.query(b, 0))
            return fix(out, lab) if fix else out
        return call

    return {"las": run(strategy("LAS")), "coreset": run(strategy("coreset"), fix_lada_coreset),
            "badge": run(strategy("BADGE")), "clue": run(strategy("CLUE")), "margin": run(strategy("margin"))}


def _clue(path: Path, pool, b: int) -> dict[str, Callable[[int], np.ndarray]]:
    sys.path.insert(0, str(path))
    import sample
    import utils as cutils

    n, c, m = len(pool), pool.probs.shape[1], pool.embeddings.shape[1]
    original = getattr(cutils.get_embedding, "__wrapped__", cutils.get_embedding)
    # query() sets emb_dim 500 (LeNet) / 512 (ResNet34) only: pass the pool's width instead
    cutils.get_embedding = functools.wraps(original)(
        lambda model, loader, device, num_classes, args, with_emb=False, emb_dim=512:
        original(model, loader, device, num_classes, args, with_emb=with_emb, emb_dim=m))
    # query() hard-codes num_workers=4 for its inference loader: on in-memory features the workers add only
    # process start-up (and their CPU time escapes process_time), so loaders run in-process here. This cell
    # runs in its own subprocess, and adakit.select uses no DataLoader.
    torch.utils.data.DataLoader = _InProcessLoader
    ds = OneBatch(pool.embeddings, torch.as_tensor(pool.labels), 2, name="DomainNet", get_num_classes=lambda: c)
    args = NS(batch_size=n, cnn="ResNet34", clue_softmax_t=0.1)
    s = sample.CLUESampling(ds, np.arange(n), FeatureNet(pool.head), None, torch.device("cpu"), args)
    s.update(pool.labelled.copy())

    def call(seed: int) -> np.ndarray:
        np.random.seed(seed)
        return np.asarray(s.query(b))

    return {"clue": call}


def _sdm(path: Path, pool, b: int) -> dict[str, Callable[[int], np.ndarray]]:
    sys.path.insert(0, str(path))
    from sample_strategy.SDM import SDM

    unl = np.flatnonzero(~pool.labelled)
    unl_t = torch.as_tensor(unl)
    c = pool.probs.shape[1]
    loader = torch.utils.data.DataLoader(OneBatch(pool.embeddings[unl_t], torch.as_tensor(pool.labels)[unl_t], 4),
                                         batch_size=len(unl), shuffle=False, num_workers=0)
    cfg = NS(DEVICE="0", USE_CUDA=False, SDM_LAMBDA=0.01, DATA_CLASS=c, LOG_INTERVAL=50)
    s = SDM(None, loader, None, None, FeatureNet(pool.head, "sdm"), cfg)

    def margin(seed: int) -> np.ndarray:
        return unl[s.margin_base(pool.probs[unl_t])[:b]]

    def sdm_g(seed: int) -> np.ndarray:
        return unl[np.asarray(s.SDM_query(b))]

    return {"margin": margin, "sdm_g": sdm_g}


def _skactiveml(path: Path, pool, b: int) -> dict[str, Callable[[int], np.ndarray]]:
    sys.path.insert(0, str(path))
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import Badge

    w = pool.head.weight.detach().double().numpy()
    bias = pool.head.bias.detach().double().numpy()
    c = w.shape[0]

    class PoolHead(SkactivemlClassifier):
        """The pool's linear head as a fitted scikit-activeml classifier (predict_proba = softmax(xWᵀ + b))."""

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X):
            z = np.asarray(X, dtype=np.float64) @ w.T + bias
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            return p / p.sum(axis=1, keepdims=True)

    x = pool.embeddings.numpy()
    y = np.where(pool.labelled, pool.labels, np.nan).astype(float)
    clf = PoolHead(classes=np.arange(c), missing_label=np.nan)

    def call(seed: int) -> np.ndarray:
        return np.asarray(Badge(random_state=seed).query(x, y, clf, fit_clf=False, batch_size=b))

    return {"badge": call}


LOADERS = {"lada": _lada, "clue": _clue, "sdm": _sdm, "skactiveml": _skactiveml}


# --------------------------------------------------------------------------------------------- measuring


def _timed(fn) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def _stats(ws: list[float], cs: list[float]) -> dict:
    w, c = np.array(ws), np.array(cs)
    return {"wall": float(np.median(w)), "cpu": float(np.median(c)), "reps": len(ws),
            "spread": float(w.max() / max(w.min(), 1e-9) - 1.0),
            "cpu_spread": float(c.max() / max(c.min(), 1e-9) - 1.0)}


def child(strategy: str, peer: str, path: str, site: str | None, n: int, min_reps: int, long_s: float,
          kmeans_n_init: int = 0, params: dict | None = None) -> dict:
    """One cell in this process: adakit (with strategy ``params``, e.g. its approximate paths) and the peer
    interleaved on the same pool."""
    params = params or {}
    import sklearn.cluster  # noqa: F401  (imports outside the timed calls)

    sys.path.insert(0, str(HERE))
    from query_speed import SEED, SyntheticPool, budget_of

    if site:
        sys.path.append(site)
    warm, pool = SyntheticPool(300, seed=1), SyntheticPool(n)
    b = budget_of(n)
    peer_fn = LOADERS[peer](Path(path), pool, b)[strategy]
    warm_fn = LOADERS[peer](Path(path), warm, 3)[strategy]  # second load: modules are cached
    if kmeans_n_init:
        set_peer_kmeans_n_init(kmeans_n_init)
    warm_fn(SEED)
    warm.select(strategy, 3, np.random.default_rng(0), **params)
    fns = {"adakit": lambda: pool.select(strategy, b, np.random.default_rng(SEED), **params).indices,
           "peer_code": lambda: peer_fn(SEED)}
    res: dict = {"b": b, "load_start": os.getloadavg()[0]}
    times: dict = {k: ([], []) for k in fns}
    first: dict = {}
    reps = 0
    while True:
        for k, fn in fns.items():
            w, c, out = _timed(fn)
            times[k][0].append(w)
            times[k][1].append(c)
            first.setdefault(k, np.asarray(out, dtype=np.int64))
        reps += 1
        if reps >= 25 or times["peer_code"][0][0] > long_s:
            break
        short = max(times["adakit"][0][0], times["peer_code"][0][0]) < 1.0
        if reps >= min_reps and not (short and sum(times["adakit"][0]) < 1.0):
            break
    while len(times["adakit"][0]) < min_reps:  # the peer was too long to repeat: adakit still gets its repeats
        w, c, _ = _timed(fns["adakit"])
        times["adakit"][0].append(w)
        times["adakit"][1].append(c)
    for k in fns:
        res[k] = _stats(*times[k])
    res["load_end"] = os.getloadavg()[0]
    a, p = first["adakit"], first["peer_code"]
    ok = len(p) == b and len(np.unique(p)) == b and not pool.labelled[p].any()
    k = min(len(a), len(p))
    agree = {"overlap": len(set(a.tolist()) & set(p.tolist())) / b, "same_order": a.tolist() == p.tolist(),
             "same_position": int((a[:k] == p[:k]).sum()),
             "peer_valid": bool(ok), "peer_labelled_picks": int(pool.labelled[p].sum()),
             "peer_unique": int(len(np.unique(p)))}
    if strategy in SEEDED:
        a1 = pool.select(strategy, b, np.random.default_rng(SEED + 1), **params).indices
        agree["adakit_seed_overlap"] = len(set(a.tolist()) & set(a1.tolist())) / b
    if strategy == "coreset" and peer == "lada":
        agree.update(_lada_coreset_bug(pool, b))
    res["agreement"] = agree
    return res


def set_peer_kmeans_n_init(n_init: int) -> list[str]:
    """Make the peers' ``KMeans(n)`` run ``n_init`` restarts (scikit-learn < 1.4's default was 10; it is 1 now).

    The released code calls ``KMeans(n_clusters=n)`` with no ``n_init``; the versions it was released for
    (LADA: PyTorch 1.8 / Python 3.8; CLUE pins scikit-learn 0.22.2) ran 10 k-means restarts by default, today's
    scikit-learn runs 1. Only the peer modules' own ``KMeans`` name is replaced (adakit's import is untouched).
    """
    from sklearn.cluster import KMeans

    done = []
    for name in ("active.sampler", "active.LASsampler", "sample"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "KMeans", None) is KMeans:
            mod.KMeans = functools.partial(KMeans, n_init=n_init)
            done.append(name)
    return done


def _lada_coreset_bug(pool, b: int) -> dict:
    """What LADA's CoreSet returns WITHOUT the fix: how many of its picks are already-labelled samples."""
    from active import sampler

    n, c = len(pool), pool.probs.shape[1]
    cfg = NS(DATALOADER=NS(NUM_WORKERS=0, BATCH_SIZE=n), MODEL=NS(BACKBONE=NS(NAME="ResNet50")),
             DATASET=NS(NUM_CLASS=c))
    ds = OneBatch(pool.embeddings, torch.as_tensor(pool.labels), 3)
    s = sampler.get_strategy("coreset", None, NS(train_idx=np.arange(n), get_dsets=lambda: (ds, ds)),
                             FeatureNet(pool.head), torch.device("cpu"), c, cfg)
    s.update(pool.labelled.copy())
    raw = np.asarray(s.query(b, 0))
    fixed = fix_lada_coreset(raw, pool.labelled)
    return {"unfixed_labelled_picks": int(pool.labelled[raw].sum()),
            "unfixed_wrong_picks": int((raw != fixed).sum())}


def run_cell(strategy: str, peer: str, path: Path, site: str | None, n: int, threads: int, min_reps: int,
             long_s: float, timeout: float, kmeans_n_init: int = 0, params: dict | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    params = params or {}
    variants = [f"KMeans n_init={kmeans_n_init}"] * bool(kmeans_n_init) + \
        [f"{ADAKIT_VARIANT} {', '.join(f'{k}={v}' for k, v in params.items())}"] * bool(params)
    label = f"{peer} ({'; '.join(variants)})" if variants else peer
    from adakit.provenance import cpu_info

    base = {"strategy": strategy, "peer": label, "n": n, "threads": threads, "timed": CELLS[(strategy, peer)],
            "repo": REPOS[peer][0], "commit": peer_commit(path),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **cpu_info(),  # the CPU of this cell
            "cores": os.cpu_count(), "versions": versions()}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", strategy, peer, str(path), site or "",
           str(n), str(min_reps), str(long_s), str(kmeans_n_init), json.dumps(params)]
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from query_speed import run_child

    return run_child(cmd, env, timeout, base, os.getloadavg()[0], tail_lines=3, tail_chars=300)


# ---------------------------------------------------------------------------------------------- the table


def _key(r: dict) -> tuple:
    return (r["threads"], r["n"], r["strategy"], r["peer"])


def load_records() -> dict:
    if not JSON_OUT.exists():
        return {}
    return {_key(r): r for r in json.loads(JSON_OUT.read_text()).get("cells", [])}


def save_records(cells: dict) -> None:
    for r in cells.values():
        if "adakit" in r and "peer_code" in r:
            a, p = r["adakit"], r["peer_code"]
            r["ratio_wall"], r["ratio_cpu"] = p["wall"] / max(a["wall"], 1e-9), p["cpu"] / max(a["cpu"], 1e-9)
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps({"cells": sorted(cells.values(), key=_key)}, indent=1) + "\n")


def versions() -> str:
    """The library versions a cell records beside its CPU (each cell its own: the JSON accumulates cells measured
    on different days and machines)."""
    import sklearn

    return f"torch {torch.__version__}, numpy {np.__version__}, scikit-learn {sklearn.__version__}"


def _t(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def _reps(m: dict) -> str:
    """(×r) for r repetitions; *noise* when the median is under 5 ms or the max/min spread is over 50%."""
    noise = m["wall"] < 0.005 or (m["reps"] > 1 and m["spread"] > 0.5)
    return (f" (×{m['reps']}" + (", noise)" if noise else ")")) if m["reps"] > 1 or noise else ""


def _agree(r: dict) -> str:
    a = r.get("agreement") or {}
    if not a:
        return "—"
    s = f"{a['overlap']:.0%}" + (" (same order)" if a.get("same_order") else "")
    if not a.get("same_order") and a.get("overlap") == 1.0 and "same_position" in a:
        s += f" ({a['same_position']} of {r.get('b')} at the same rank)"
    if "adakit_seed_overlap" in a:
        s += f"; adakit seed 0 vs 1: {a['adakit_seed_overlap']:.0%}"
    if not a.get("peer_valid", True):
        s += f"; peer picks invalid ({a['peer_labelled_picks']} labelled, {a['peer_unique']} unique)"
    if "unfixed_labelled_picks" in a:
        s += f"; unfixed: {a['unfixed_wrong_picks']} wrong picks, {a['unfixed_labelled_picks']} labelled"
    return s


def render(cells: dict) -> str:
    lines = ["| threads | N | b | strategy | peer | adakit wall | adakit CPU | peer wall | peer CPU | ratio wall | "
             "ratio CPU | ≥ 10× | load | agreement (overlap) |",
             "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in sorted(cells.values(), key=_key):
        head = f"| {r['threads']} | {r['n']:,} | {r.get('b', '—')} | {r['strategy']} | {r['peer']} |"
        load = f"{r['load_start']:.1f}→{r['load_end']:.1f}"
        if "error" in r:
            lines.append(f"{head} {r['error']} | | | | | | | {load} | |")
            continue
        a, p = r["adakit"], r["peer_code"]
        rw, rc = p["wall"] / max(a["wall"], 1e-9), p["cpu"] / max(a["cpu"], 1e-9)
        lines.append(f"{head} {_t(a['wall'])}{_reps(a)} | {_t(a['cpu'])} | {_t(p['wall'])}{_reps(p)} | "
                     f"{_t(p['cpu'])} | {rw:.1f}× | {rc:.1f}× | {'yes' if min(rw, rc) >= 10 else 'NO'} | {load} | "
                     f"{_agree(r)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for peer in LOADERS:
        ap.add_argument(f"--{peer}", type=Path, default=None, help=f"path of the {peer} code ({REPOS[peer][0]})")
    ap.add_argument("--site", default=None, help="extra folder of packages the peers import (appended to sys.path)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--only", nargs="+", default=None, help="adakit strategies to run (default: all with a peer)")
    ap.add_argument("--reps", type=int, default=3, help="minimum interleaved repetitions per cell")
    ap.add_argument("--long", type=float, default=60.0, help="a first peer call longer than this: no repetition")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per cell")
    ap.add_argument("--kmeans-n-init", type=int, default=0,
                    help="run the peers' KMeans with this many restarts (10 = scikit-learn < 1.4, what the peer "
                         "code was released with; default: the installed scikit-learn's default, 1)")
    ap.add_argument("--adakit-set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="strategy parameters for adakit's side (e.g. search=ivf kmeans=faiss: its approximate "
                         "paths, which `auto` uses only on larger pools); recorded as a variant of the cell")
    ap.add_argument("--render", action="store_true", help="only print the table of the JSON")
    ap.add_argument("--child", nargs=9, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        strategy, peer, path, site, n, reps, long_s, n_init, params = args.child
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(child(strategy, peer, path, site or None, int(n), int(reps), float(long_s), int(n_init),
                               json.loads(params))))
        return
    params = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.adakit_set)}
    cells = load_records()
    if not args.render:
        todo = [(s, p) for (s, p) in CELLS if getattr(args, p) is not None and (not args.only or s in args.only)]
        if not todo:
            ap.error("give at least one peer path (--lada, --clue, --sdm, --skactiveml); see the docstring")
        for threads in args.threads:
            for n in args.sizes:
                for strategy, peer in todo:
                    r = run_cell(strategy, peer, getattr(args, peer).resolve(), args.site, n, threads, args.reps,
                                 args.long, args.timeout, args.kmeans_n_init if strategy in KMEANS else 0,
                                 params)
                    cells[_key(r)] = r
                    save_records(cells)
                    print(render({_key(r): r}).splitlines()[-1], flush=True)
    table = render(cells)
    print(table)


if __name__ == "__main__":
    main()
