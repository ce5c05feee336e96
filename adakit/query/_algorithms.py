"""Selection algorithms shared by the strategies, written once.

- Point sets with a *distance-to-set* abstraction (`PointSet`): strategies hand the algorithms an object
  that knows squared norms and inner products with a few of its own points, so no algorithm ever holds an
  N×N matrix. `DensePoints` wraps an (N, m) tensor; `OuterProductPoints` represents the rows a_i ⊗ x_i
  (BADGE's gradient embeddings) without materialising them:
  ||a⊗x − b⊗y||² = |a|²|x|² + |b|²|y|² − 2(a·b)(x·y), memory O(N·(C + m)).
- `farthest_first`: k-center greedy (Sener & Savarese, ICLR 2018, Alg. 1; SAGE's Alg. 1).
- `kmeans_pp`: k-means++ D² sampling without replacement (Arthur & Vassilvitskii 2007; BADGE, Ash et al.
  ICLR 2020, §3).
- `knn`: top-k cosine neighbours, blocked in torch (never more than ``block × N`` similarities at once) or
  with faiss when importable.
- `weighted_kmeans` + `nearest_to_centroids`: scikit-learn's (weighted) k-means and a picker of the sample
  nearest each centroid without duplicates (CLUE, LAS).

Every random choice takes an explicit ``numpy.random.Generator``; ties in arg-max are broken by it.
Indices are positions in the point set (strategies map them back to pool indices).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PointSet", "DensePoints", "OuterProductPoints", "as_points", "sq_dist_to", "min_sq_dist_to",
    "min_sq_dist", "farthest_first", "kmeans_pp", "knn", "weighted_kmeans", "nearest_to_centroids",
    "kmeans_select", "argmax_random", "MAX_BLOCK_ELEMENTS",
]

#: largest number of pairwise entries (distances, similarities) a blocked computation holds at once (64 MiB f32)
MAX_BLOCK_ELEMENTS = 1 << 24


def _block_size(n: int, block: int | None) -> int:
    """Rows per block such that block × n ≤ MAX_BLOCK_ELEMENTS (at least 1), unless given."""
    if block is not None:
        if block < 1:
            raise ValueError(f"block must be ≥ 1, got {block}")
        return int(block)
    return max(1, MAX_BLOCK_ELEMENTS // max(n, 1))


# ----------------------------------------------------------------------------------------------- point sets


@runtime_checkable
class PointSet(Protocol):
    """N points known through squared norms and inner products with some of their own members.

    ``sq_norms``: (N,) tensor |p_i|². ``inner(idx)``: (N, len(idx)) tensor of <p_i, p_j> for j in ``idx``
    (a LongTensor). Anything implementing these two works with `farthest_first` and `kmeans_pp`.
    """

    sq_norms: torch.Tensor

    def __len__(self) -> int: ...

    def inner(self, idx: torch.Tensor) -> torch.Tensor: ...


class DensePoints:
    """Rows of an (N, m) tensor."""

    def __init__(self, x: torch.Tensor):
        if x.dim() != 2:
            raise ValueError(f"expected an (N, m) tensor, got shape {tuple(x.shape)}")
        self.x = x
        self.sq_norms = (x * x).sum(dim=1)

    def __len__(self) -> int:
        return len(self.x)

    def inner(self, idx: torch.Tensor) -> torch.Tensor:
        return self.x @ self.x[idx].T


class OuterProductPoints:
    """Rows a_i ⊗ x_i (flattened C·m vectors) held as the factors a (N, C) and x (N, m).

    <a⊗x, b⊗y> = (a·b)(x·y) and |a⊗x|² = |a|²|x|², so distances cost O(C + m) per pair and the
    N × C·m matrix never exists (BADGE gradient embeddings, Ash et al. ICLR 2020, §3).
    """

    def __init__(self, a: torch.Tensor, x: torch.Tensor):
        if a.dim() != 2 or x.dim() != 2 or len(a) != len(x):
            raise ValueError(f"expected (N, C) and (N, m) factors, got {tuple(a.shape)} and {tuple(x.shape)}")
        self.a, self.x = a, x
        self.sq_norms = (a * a).sum(dim=1) * (x * x).sum(dim=1)

    def __len__(self) -> int:
        return len(self.a)

    def inner(self, idx: torch.Tensor) -> torch.Tensor:
        return (self.a @ self.a[idx].T) * (self.x @ self.x[idx].T)

    def materialise(self) -> torch.Tensor:
        """The explicit (N, C·m) rows, entry c·m + j = a_c·x_j (for tests and small references only)."""
        return (self.a.unsqueeze(2) * self.x.unsqueeze(1)).reshape(len(self.a), -1)


def as_points(points: PointSet | torch.Tensor | np.ndarray) -> PointSet:
    """A `PointSet` from a tensor / array (rows) or a point set as is."""
    if isinstance(points, (torch.Tensor, np.ndarray)):
        return DensePoints(torch.as_tensor(points))
    return points


def _long(idx) -> torch.Tensor:
    return torch.as_tensor(np.asarray(idx, dtype=np.int64).reshape(-1))


def sq_dist_to(points: PointSet, idx) -> torch.Tensor:
    """(N, len(idx)) squared distances from every point to the points ``idx`` (clamped at 0)."""
    idx = _long(idx)
    d = points.sq_norms[:, None] + points.sq_norms[idx][None, :] - 2.0 * points.inner(idx)
    return d.clamp_min_(0.0)


def min_sq_dist_to(points: PointSet, idx, block: int | None = None) -> torch.Tensor:
    """(N,) squared distance of every point to its nearest point among ``idx`` (+inf when idx is empty).

    Processes ``block`` centres at a time (default: MAX_BLOCK_ELEMENTS / N).
    """
    idx = _long(idx)
    out = torch.full((len(points),), math.inf, dtype=points.sq_norms.dtype)
    step = _block_size(len(points), block)
    for s in range(0, len(idx), step):
        out = torch.minimum(out, sq_dist_to(points, idx[s:s + step]).min(dim=1).values)
    return out


def min_sq_dist(x: torch.Tensor, centres: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """(N,) squared Euclidean distance of each row of ``x`` to its nearest row of ``centres`` (another set).

    Blocked over centres: at most ``block × N`` distances at once (+inf when there are no centres).
    """
    x = torch.as_tensor(x)
    centres = torch.as_tensor(centres).to(x.dtype)
    out = torch.full((len(x),), math.inf, dtype=x.dtype)
    xn = (x * x).sum(dim=1)
    step = _block_size(len(x), block)
    for s in range(0, len(centres), step):
        c = centres[s:s + step]
        d = xn[:, None] + (c * c).sum(dim=1)[None, :] - 2.0 * (x @ c.T)
        out = torch.minimum(out, d.clamp_min_(0.0).min(dim=1).values)
    return out


# ------------------------------------------------------------------------------------------ greedy pickers


def argmax_random(values: torch.Tensor | np.ndarray, rng: np.random.Generator) -> int:
    """Index of the largest value, ties broken uniformly by ``rng``."""
    v = torch.as_tensor(values)
    best = v.max()
    ties = torch.nonzero(v == best).flatten()
    if len(ties) == 1:
        return int(ties[0])
    return int(ties[int(rng.integers(len(ties)))])


def _candidate_mask(n: int, candidates) -> torch.Tensor:
    if candidates is None:
        return torch.ones(n, dtype=torch.bool)
    c = torch.as_tensor(np.asarray(candidates))
    if c.dtype == torch.bool:
        if len(c) != n:
            raise ValueError(f"candidate mask has {len(c)} entries for {n} points")
        return c.clone()
    mask = torch.zeros(n, dtype=torch.bool)
    mask[c.long()] = True
    return mask


def farthest_first(points: PointSet | torch.Tensor, k: int, *, rng: np.random.Generator,
                   initial=None, centre_sq_dist: torch.Tensor | None = None, candidates=None,
                   first: int | None = None, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k-center greedy: repeatedly pick the candidate farthest from every centre so far.

    Sener & Savarese, ICLR 2018, Alg. 1 (u = argmax_i min_j Δ(x_i, x_j)); SAGE's Alg. 1.

    - ``points``: a `PointSet` or an (N, m) tensor.
    - ``initial``: indices into ``points`` that are centres from the start (e.g. labelled samples); they are
      never picked.
    - ``centre_sq_dist``: (N,) squared distances to centres outside the point set (e.g. source embeddings,
      from `min_sq_dist`), combined with ``initial``.
    - ``candidates``: indices or a boolean mask of the points that may be picked (default all).
    - ``first``: force the first pick (e.g. the largest norm); otherwise, with no centre at all, the first
      pick is uniform among candidates, and every later pick is the arg-max (ties broken by ``rng``).

    Returns (picked indices, squared distance of each pick to its nearest earlier centre at pick time;
    +inf for a first pick made without any centre). Picks ``min(k, #candidates)`` distinct points.
    """
    pts = as_points(points)
    n = len(pts)
    cand = _candidate_mask(n, candidates)
    if initial is not None and len(np.asarray(initial)) > 0:
        cand[_long(initial)] = False
    k = int(min(k, int(cand.sum())))
    d = torch.full((n,), math.inf, dtype=pts.sq_norms.dtype)
    if centre_sq_dist is not None:
        d = torch.minimum(d, torch.as_tensor(centre_sq_dist, dtype=d.dtype))
    if initial is not None and len(np.asarray(initial)) > 0:
        d = torch.minimum(d, min_sq_dist_to(pts, initial, block))
    neg_inf = torch.tensor(-math.inf, dtype=d.dtype)
    picks = np.empty(k, dtype=np.int64)
    dists = np.empty(k, dtype=np.float64)
    for t in range(k):
        if t == 0 and first is not None:
            j = int(first)
            if not bool(cand[j]):
                raise ValueError(f"first={j} is not a candidate")
        elif t == 0 and bool(torch.isinf(d[cand]).all()):
            pool = torch.nonzero(cand).flatten()
            j = int(pool[int(rng.integers(len(pool)))])
        else:
            j = argmax_random(torch.where(cand, d, neg_inf), rng)
        picks[t], dists[t] = j, float(d[j])
        cand[j] = False
        d = torch.minimum(d, sq_dist_to(pts, [j])[:, 0])
    return picks, dists


def kmeans_pp(points: PointSet | torch.Tensor, k: int, rng: np.random.Generator, *, first: int | None = None,
              candidates=None) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding (D² sampling) without replacement.

    Arthur & Vassilvitskii, SODA 2007; BADGE (Ash et al., ICLR 2020, §3, k-MEANS++ on gradient embeddings).
    After the first pick (``first``, or uniform among candidates), each next point is drawn with probability
    ∝ D(x)², D the distance to the nearest pick so far, among candidates not yet picked; when every remaining
    D² is 0 (duplicates of picked points) the draw is uniform over the remaining candidates.

    Returns (picked indices, D² of each pick at pick time; +inf for the first). ``min(k, #candidates)`` picks.
    """
    pts = as_points(points)
    n = len(pts)
    cand = _candidate_mask(n, candidates)
    k = int(min(k, int(cand.sum())))
    picks = np.empty(k, dtype=np.int64)
    dists = np.empty(k, dtype=np.float64)
    if k == 0:
        return picks, dists
    if first is None:
        pool = torch.nonzero(cand).flatten()
        first = int(pool[int(rng.integers(len(pool)))])
    elif not bool(cand[int(first)]):
        raise ValueError(f"first={first} is not a candidate")
    open_ = cand.numpy().copy()
    picks[0], dists[0] = int(first), math.inf
    open_[int(first)] = False
    d = sq_dist_to(pts, [int(first)])[:, 0].double().numpy()
    for t in range(1, k):
        w = np.where(open_, d, 0.0)
        cs = np.cumsum(w)
        if not (cs[-1] > 0 and np.isfinite(cs[-1])):
            w = open_.astype(np.float64)
            cs = np.cumsum(w)
        j = int(np.searchsorted(cs, rng.random() * cs[-1], side="right"))
        j = min(j, n - 1)
        while not open_[j]:  # guard against round-off at the upper edge
            j -= 1
        picks[t], dists[t] = j, d[j]
        open_[j] = False
        d = np.minimum(d, sq_dist_to(pts, [j])[:, 0].double().numpy())
    return picks, dists


# ---------------------------------------------------------------------------------------------- neighbours


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def knn(x: torch.Tensor, k: int, *, exclude_self: bool = True, normalize: bool = True, block: int | None = None,
        backend: Literal["auto", "torch", "faiss"] = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest neighbours of every row of ``x`` by cosine similarity (inner product if not ``normalize``).

    Returns (similarities (N, k), indices (N, k)), most similar first. ``exclude_self`` drops each row itself
    (by index, so exact duplicates of a row are still neighbours). ``backend``: "faiss" (exact
    ``IndexFlatIP``), "torch" (blocked matmul + topk, ``block`` query rows at a time, default
    MAX_BLOCK_ELEMENTS / N, so never an N×N matrix above a block), or "auto" (faiss when importable).
    """
    x = torch.as_tensor(x).float()
    n = len(x)
    if k < 1 or k > n - int(exclude_self):
        raise ValueError(f"knn: k={k} neighbours asked among {n} points (exclude_self={exclude_self})")
    if normalize:
        x = F.normalize(x, dim=1)
    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise ImportError("knn(backend='faiss') needs faiss: pip install 'adakit[faiss]'")
    kk = k + int(exclude_self)
    if faiss is not None:
        xs = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        index = faiss.IndexFlatIP(xs.shape[1])
        index.add(xs)
        sims, idx = index.search(xs, kk)
        sims, idx = torch.from_numpy(sims), torch.from_numpy(idx).long()
        if exclude_self:
            is_self = idx == torch.arange(n)[:, None]
            missing = ~is_self.any(dim=1)
            is_self[missing, -1] = True  # self fell outside the top k+1 (ties): drop the last instead
            keep = ~is_self
            sims, idx = sims[keep].reshape(n, k), idx[keep].reshape(n, k)
        return sims, idx
    step = _block_size(n, block)
    out_s = torch.empty((n, k), dtype=x.dtype)
    out_i = torch.empty((n, k), dtype=torch.long)
    for s in range(0, n, step):
        e = min(n, s + step)
        sim = x[s:e] @ x.T
        if exclude_self:
            r = torch.arange(e - s)
            sim[r, s + r] = -math.inf
        v, i = sim.topk(k, dim=1)
        out_s[s:e], out_i[s:e] = v, i
    return out_s, out_i


# ------------------------------------------------------------------------------------------------ k-means


def weighted_kmeans(x: torch.Tensor | np.ndarray, k: int, rng: np.random.Generator, *,
                    weights: torch.Tensor | np.ndarray | None = None, n_init: int = 1,
                    max_iter: int = 300) -> np.ndarray:
    """Centroids (k, m) of scikit-learn's k-means (k-means++ init, Lloyd) with optional sample weights.

    Weighted k-means as used by CLUE (Prabhu et al., ICCV 2021, Eq. 5-6: ``KMeans.fit(x, sample_weight=H)``).
    Weights that sum to 0 (every sample fully confident) fall back to uniform weights. The seed comes from
    ``rng``. Requires k ≤ N.
    """
    from sklearn.cluster import KMeans  # import cost only when used

    xs = torch.as_tensor(x).numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if xs.dtype not in (np.float32, np.float64):
        xs = xs.astype(np.float64)
    if k > len(xs):
        raise ValueError(f"k-means with {k} clusters on {len(xs)} points")
    w = None
    if weights is not None:
        w = np.asarray(torch.as_tensor(weights).double().numpy(), dtype=np.float64).clip(min=0.0)
        if not w.sum() > 0:
            w = None
    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=int(rng.integers(2**31 - 1)))
    with warnings.catch_warnings():
        # fewer distinct points than clusters: sklearn warns; the picker still returns k distinct samples
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        km.fit(xs, sample_weight=w)
    return km.cluster_centers_


def nearest_to_centroids(x: torch.Tensor | np.ndarray, centres: torch.Tensor | np.ndarray, *,
                         per_centre: int = 8, block: int | None = None) -> np.ndarray:
    """For each centroid, the index of a sample of ``x`` nearest to it, all distinct (Euclidean).

    Distances are computed in the dtype of ``x`` (float32 input stays float32).
    Conflicts (two centroids with the same nearest sample, which happens when clusters collapse onto
    duplicates) go to the centroid closer to that sample; the other takes its next nearest free sample.
    Each centroid keeps its ``per_centre`` nearest samples (blocked: never a full k × N matrix above a
    block); centroids that run out of those are resolved exactly against every free sample.
    This replaces the ``argsort``/``set`` fill-up loop of the CLUE and LADA code (same intent: b distinct
    samples, each near its centroid). Requires len(centres) ≤ len(x).
    """
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if not xt.is_floating_point():
        xt = xt.double()
    ct = torch.as_tensor(np.asarray(centres) if not isinstance(centres, torch.Tensor) else centres).to(xt.dtype)
    n, k = len(xt), len(ct)
    if k > n:
        raise ValueError(f"{k} centroids but only {n} samples to pick from")
    t = min(per_centre, n)
    xn = (xt * xt).sum(dim=1)
    step = _block_size(n, block)
    near_d = torch.empty((k, t), dtype=xt.dtype)
    near_i = torch.empty((k, t), dtype=torch.long)
    for s in range(0, k, step):
        c = ct[s:s + step]
        d = ((c * c).sum(dim=1)[:, None] + xn[None, :] - 2.0 * (c @ xt.T)).clamp_min_(0.0)
        v, i = torch.topk(d, t, dim=1, largest=False, sorted=True)
        near_d[s:s + step], near_i[s:s + step] = v, i
    assigned = np.full(k, -1, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    nd, ni = near_d.numpy(), near_i.numpy()
    for col in range(t):
        open_c = np.flatnonzero(assigned < 0)
        if len(open_c) == 0:
            break
        prop, dist = ni[open_c, col], nd[open_c, col]
        ok = ~taken[prop]
        open_c, prop, dist = open_c[ok], prop[ok], dist[ok]
        order = np.lexsort((open_c, dist, prop))  # by sample, then distance, then centroid
        prop_s = prop[order]
        winner = np.ones(len(order), dtype=bool)
        winner[1:] = prop_s[1:] != prop_s[:-1]
        win = order[winner]
        assigned[open_c[win]] = prop[win]
        taken[prop[win]] = True
    for c in np.flatnonzero(assigned < 0):  # rare: exhausted per_centre candidates
        d = ((ct[c] - xt) ** 2).sum(dim=1).numpy()
        d[taken] = np.inf
        j = int(np.argmin(d))
        assigned[c] = j
        taken[j] = True
    return assigned


def kmeans_select(x: torch.Tensor, k: int, rng: np.random.Generator, *, weights=None, n_init: int = 1,
                  max_iter: int = 300) -> np.ndarray:
    """k distinct samples of ``x``: (weighted) k-means with k clusters, then the sample nearest each centroid.

    With k ≥ N every sample is returned (in a random order).
    """
    n = len(x)
    if k >= n:
        return rng.permutation(n).astype(np.int64)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    centres = weighted_kmeans(x, k, rng, weights=weights, n_init=n_init, max_iter=max_iter)
    return nearest_to_centroids(x, centres)
