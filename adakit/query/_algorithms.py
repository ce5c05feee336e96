"""Selection algorithms shared by the strategies, written once.

- Point sets with a *distance-to-set* abstraction (`PointSet`): strategies hand the algorithms an object
  that knows squared norms and inner products with a few of its own points, so no algorithm ever holds an
  N×N matrix. `DensePoints` wraps an (N, m) tensor; `OuterProductPoints` represents the rows a_i ⊗ x_i
  (BADGE's gradient embeddings) without materialising them:
  ||a⊗x − b⊗y||² = |a|²|x|² + |b|²|y|² − 2(a·b)(x·y), memory O(N·(C + m)).
- `farthest_first`: k-center greedy (Sener & Savarese, ICLR 2018, Alg. 1; SAGE's Alg. 1).
- `kmeans_pp`: k-means++ D² sampling without replacement (Arthur & Vassilvitskii 2007; BADGE, Ash et al.
  ICLR 2020, §3).
- `knn`: top-k cosine neighbours, exact (blocked in torch, never more than ``block × N`` similarities at
  once, or faiss ``IndexFlatIP``), or approximate for large pools (`ivf_knn`, an inverted file searched with
  matrix products).
- `weighted_kmeans` + `nearest_to_centroids`: (weighted) k-means, scikit-learn's, or for large N·k a bounded
  number of weighted Lloyd iterations (faiss's on the CPU, torch's on the pool's device), and a picker of the
  sample nearest each centroid without duplicates (CLUE, LAS).

Every random choice takes an explicit ``numpy.random.Generator``; ties in arg-max are broken by it.
Indices are positions in the point set (strategies map them back to pool indices).

Devices: the torch code runs on the device of its input tensors (a CUDA pool stays on the GPU); random draws
come from the CPU ``rng`` (or a CPU ``torch.Generator``) and only the drawn indices move, so a seed gives the
same draws on every device. scikit-learn and faiss run on the CPU: their inputs are copied there explicitly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PointSet", "DensePoints", "OuterProductPoints", "as_points", "sq_dist_to", "min_sq_dist_to",
    "min_sq_dist", "nearest_centre", "weighted_lloyd", "farthest_first", "kmeans_pp", "knn", "weighted_kmeans",
    "nearest_to_centroids",
    "kmeans_select", "argmax_random", "ivf_knn", "knn_backend", "MAX_BLOCK_ELEMENTS", "EXACT_KNN_MAX",
    "EXACT_KMEANS_MAX",
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
    (a LongTensor). Anything implementing these two works with `farthest_first` and `kmeans_pp`. Optional:
    ``inner_between(rows, cols)``, the (#rows, len(cols)) block only (``rows`` a LongTensor or a slice).
    """

    sq_norms: torch.Tensor

    def __len__(self) -> int: ...

    def inner(self, idx: torch.Tensor) -> torch.Tensor: ...


def _sq_row_norms(x: torch.Tensor) -> torch.Tensor:
    """(N,) squared norms of the rows of ``x``, in blocks: no temporary as large as x."""
    step = _block_size(x.shape[1], None)
    return torch.cat([(b * b).sum(dim=1) for b in x.split(step)]) if len(x) else x.new_zeros(0)


class DensePoints:
    """Rows of an (N, m) tensor."""

    def __init__(self, x: torch.Tensor):
        if x.dim() != 2:
            raise ValueError(f"expected an (N, m) tensor, got shape {tuple(x.shape)}")
        self.x = x
        self.sq_norms = _sq_row_norms(x)

    def __len__(self) -> int:
        return len(self.x)

    def inner(self, idx: torch.Tensor) -> torch.Tensor:
        return self.x @ self.x[idx].T

    def inner_between(self, rows: torch.Tensor | slice, cols: torch.Tensor) -> torch.Tensor:
        """(#rows, len(cols)) inner products <p_r, p_c> of some points only (``rows``: indices or a slice)."""
        return self.x[rows] @ self.x[cols].T


class OuterProductPoints:
    """Rows a_i ⊗ x_i (flattened C·m vectors) held as the factors a (N, C) and x (N, m).

    <a⊗x, b⊗y> = (a·b)(x·y) and |a⊗x|² = |a|²|x|², so distances cost O(C + m) per pair and the
    N × C·m matrix never exists (BADGE gradient embeddings, Ash et al. ICLR 2020, §3).
    """

    def __init__(self, a: torch.Tensor, x: torch.Tensor):
        if a.dim() != 2 or x.dim() != 2 or len(a) != len(x):
            raise ValueError(f"expected (N, C) and (N, m) factors, got {tuple(a.shape)} and {tuple(x.shape)}")
        self.a, self.x = a, x
        self.sq_norms = _sq_row_norms(a) * _sq_row_norms(x)

    def __len__(self) -> int:
        return len(self.a)

    def inner(self, idx: torch.Tensor) -> torch.Tensor:
        return (self.a @ self.a[idx].T) * (self.x @ self.x[idx].T)

    def inner_between(self, rows: torch.Tensor | slice, cols: torch.Tensor) -> torch.Tensor:
        """(#rows, len(cols)) inner products <p_r, p_c> of some points only (``rows``: indices or a slice)."""
        return (self.a[rows] @ self.a[cols].T) * (self.x[rows] @ self.x[cols].T)

    def materialise(self) -> torch.Tensor:
        """The explicit (N, C·m) rows, entry c·m + j = a_c·x_j (for tests and small references only)."""
        return (self.a.unsqueeze(2) * self.x.unsqueeze(1)).reshape(len(self.a), -1)


def _tensor(x, device: torch.device | str | None = None) -> torch.Tensor:
    """A tensor as is (on its device, or moved to ``device``); anything else as a tensor on ``device`` or the CPU.

    Never ``torch.as_tensor`` on a tensor: under ``torch.set_default_device`` that would move it.
    """
    if isinstance(x, torch.Tensor):
        return x if device is None else x.to(device)
    return torch.as_tensor(np.asarray(x), device=device or "cpu")


def as_points(points: PointSet | torch.Tensor | np.ndarray) -> PointSet:
    """A `PointSet` from a tensor / array (rows) or a point set as is."""
    if isinstance(points, (torch.Tensor, np.ndarray)):
        return DensePoints(_tensor(points))
    return points


def _device(points: PointSet) -> torch.device:
    """The device a point set's tensors live on (where its algorithms compute)."""
    return points.sq_norms.device


def _long(idx, device: torch.device | str | None = None) -> torch.Tensor:
    """Indices (a list, numpy array or tensor) as a flat LongTensor on ``device`` (default: CPU)."""
    if isinstance(idx, torch.Tensor):
        return idx.reshape(-1).long().to(device or "cpu")
    return torch.as_tensor(np.asarray(idx, dtype=np.int64).reshape(-1), device=device or "cpu")


#: `centred` moves rows to their mean when their mean's squared norm exceeds this many times their spread (the mean
#: squared distance to it): |x|² + |c|² − 2x·c in float32 then cancels away the distances themselves
CENTRE_WHEN_OFFSET = 100.0


def centred(x: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x`` (and ``others``, e.g. source rows) shifted by the mean of ``x`` when it lies far from the origin
    relative to its spread (features with a large shared offset), else as they are (no copy). Euclidean distances
    are unchanged; their float32 rounding is not lost to the offset."""
    sample = x[::max(1, len(x) // 4096)].double()  # (any shift keeps the distances: an estimate of the mean will do)
    mean = sample.mean(0)
    spread = float((sample - mean).pow(2).sum(1).mean()) if len(sample) > 1 else 0.0
    if spread == 0.0 or float(mean.pow(2).sum()) <= CENTRE_WHEN_OFFSET * spread:
        return (x, *others)
    mu = mean.to(x.dtype)
    return (x - mu, *(o - mu for o in others))


def sq_dist_to(points: PointSet, idx) -> torch.Tensor:
    """(N, len(idx)) squared distances from every point to the points ``idx`` (clamped at 0)."""
    idx = _long(idx, _device(points))
    d = points.sq_norms[:, None] + points.sq_norms[idx][None, :] - 2.0 * points.inner(idx)
    return d.clamp_min_(0.0)


def _inner_between(points: PointSet, rows: torch.Tensor | slice, cols: torch.Tensor) -> torch.Tensor:
    """(#rows, len(cols)) inner products: the point set's ``inner_between`` where it has one, else a slice of
    ``inner(cols)``. ``rows``: indices, or a slice (a block of consecutive rows, read as views)."""
    between = getattr(points, "inner_between", None)
    return between(rows, cols) if between is not None else points.inner(cols)[rows]


def _factors(points: PointSet) -> tuple[torch.Tensor, ...]:
    """The factor matrices whose row-wise inner products multiply to the points' inner products: (x,) for dense
    rows, (a, x) for outer products, () for any other point set (known only through `PointSet`)."""
    if isinstance(points, DensePoints):
        return (points.x,)
    if isinstance(points, OuterProductPoints):
        return points.a, points.x
    return ()


def _sq_dist_between(points: PointSet, rows: torch.Tensor | slice, cols: torch.Tensor) -> torch.Tensor:
    """(#rows, len(cols)) squared distances between a few points (clamped at 0), same formula as `sq_dist_to`.

    ``rows``: indices, or a slice (a block of consecutive rows, read as views)."""
    inner = _inner_between(points, rows, cols)
    d = points.sq_norms[rows][:, None] + points.sq_norms[cols][None, :] - 2.0 * inner
    return d.clamp_min_(0.0)


def min_sq_dist_to(points: PointSet, idx, block: int | None = None) -> torch.Tensor:
    """(N,) squared distance of every point to its nearest point among ``idx`` (+inf when idx is empty).

    Processed in blocks of rows against all of ``idx`` (``block`` × len(idx) ≤ MAX_BLOCK_ELEMENTS entries at
    once unless ``block`` rows are given): one matrix product per block, never N × len(idx).
    """
    dev = _device(points)
    idx = _long(idx, dev)
    n = len(points)
    out = torch.full((n,), math.inf, dtype=points.sq_norms.dtype, device=dev)
    if len(idx) == 0:
        return out
    if isinstance(points, DensePoints):
        return min_sq_dist(points.x, points.x[idx], block=block)
    sq_cols = points.sq_norms[idx]
    step = _block_size(len(idx), block)
    for s in range(0, n, step):  # a slice of rows: views of the factors, no gathered copy of each block
        rows = slice(s, s + step)
        # min_j |p_j|² − 2<p_i, p_j>, then + |p_i|² for all rows at the end
        out[rows] = _inner_between(points, rows, idx).mul_(-2.0).add_(sq_cols).min(dim=1).values
    return out.add_(points.sq_norms).clamp_min_(0.0)


def min_sq_dist(x: torch.Tensor, centres: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """(N,) squared Euclidean distance of each row of ``x`` to its nearest row of ``centres`` (another set).

    Blocked over rows: ``block`` rows (default MAX_BLOCK_ELEMENTS / #centres) against all centres in one
    matrix product, min_j(|c_j|² − 2 x·c_j) + |x|² (+inf when there are no centres). Runs on ``x``'s device.
    """
    return nearest_centre(x, centres, block)[0]


def nearest_centre(x: torch.Tensor, centres: torch.Tensor,
                   block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) squared distance of each row of ``x`` to its nearest row of ``centres`` and (N,) that row's index
    (blocked as `min_sq_dist`; index 0 and +inf when there are no centres). Runs on ``x``'s device."""
    x = _tensor(x)
    centres = _tensor(centres, x.device).to(x.dtype)
    out = torch.full((len(x),), math.inf, dtype=x.dtype, device=x.device)
    idx = torch.zeros(len(x), dtype=torch.long, device=x.device)
    if len(centres) == 0:
        return out, idx
    cn = (centres * centres).sum(dim=1)
    ct = centres.T.contiguous()
    step = _block_size(len(centres), block)
    for s in range(0, len(x), step):
        xb = x[s:s + step]
        part, idx[s:s + step] = torch.addmm(cn[None, :], xb, ct, alpha=-2.0).min(dim=1)
        out[s:s + step] = (part + (xb * xb).sum(dim=1)).clamp_min_(0.0)
    return out, idx


# ------------------------------------------------------------------------------------------ greedy pickers


def argmax_random(values: torch.Tensor | np.ndarray, rng: np.random.Generator) -> int:
    """Index of the largest value, ties broken uniformly by ``rng``."""
    v = _tensor(values)
    best = v.max()
    ties = torch.nonzero(v == best).flatten()
    if len(ties) == 1:
        return int(ties[0])
    return int(ties[int(rng.integers(len(ties)))])


def _candidate_mask(n: int, candidates, device: torch.device | None = None) -> torch.Tensor:
    """Boolean (N,) mask on ``device`` from indices or a mask (numpy or torch, any device); None: all."""
    if candidates is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    c = _tensor(candidates, device)
    if c.dtype == torch.bool:
        if len(c) != n:
            raise ValueError(f"candidate mask has {len(c)} entries for {n} points")
        return c.clone()
    mask = torch.zeros(n, dtype=torch.bool, device=device)
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

    Exact, but lazy (the "lazy greedy" of submodular maximisation, applied to the min-distance): every point
    keeps an upper bound u_i ≥ its distance to the nearest centre (exact for the centres it has seen). A step
    refreshes only the T largest bounds against the picks made since their last refresh; once the largest
    refreshed distance is strictly above the (T + 1)-th bound, no other point can beat it and it is the
    arg-max (ties among the refreshed points broken by ``rng``); otherwise T doubles. A pick therefore touches
    the few points that compete for it instead of all N: O(N) per step plus O(T·t·m), not O(N·m).

    Returns (picked indices, squared distance of each pick to its nearest earlier centre at pick time;
    +inf for a first pick made without any centre). Picks ``min(k, #candidates)`` distinct points.
    """
    pts = as_points(points)
    n = len(pts)
    dev = _device(pts)
    cand = _candidate_mask(n, candidates, dev)
    has_initial = initial is not None and len(initial) > 0
    if has_initial:
        cand[_long(initial, dev)] = False
    n_cand = int(cand.sum())
    k = int(min(k, n_cand))
    u = torch.full((n,), math.inf, dtype=pts.sq_norms.dtype, device=dev)
    if centre_sq_dist is not None:
        u = torch.minimum(u, _tensor(centre_sq_dist, dev).to(u.dtype))
    if has_initial:
        u = torch.minimum(u, min_sq_dist_to(pts, initial, block))
    u = torch.where(cand, u, torch.tensor(-math.inf, dtype=u.dtype, device=dev))  # candidates' bounds, −inf elsewhere
    lazy = _LazyMinDist(pts, u, k)
    picks = np.empty(k, dtype=np.int64)
    dists = np.empty(k, dtype=np.float64)
    for t in range(k):
        if t == 0 and first is not None:
            j = int(first)
            if not bool(cand[j]):
                raise ValueError(f"first={j} is not a candidate")
        elif t == 0 and bool(torch.isinf(u[cand]).all()):
            pool = torch.nonzero(cand).flatten()
            j = int(pool[int(rng.integers(len(pool)))])
        else:
            j = lazy.argmax(rng, n_cand - t)
        picks[t], dists[t] = j, float(u[j])  # exact: j's bound was refreshed (or there was no pick yet)
        lazy.add(j)
        if t == 0 and bool(torch.isposinf(u).any()):  # there was no centre at all: one full pass
            u.copy_(torch.where(torch.isneginf(u), u, torch.minimum(u, sq_dist_to(pts, [j])[:, 0])))
            lazy.seen.fill_(1)
        u[j] = -math.inf
    return picks, dists


class _PickedRows:
    """The picks made so far, with their rows copied into buffers as they are made.

    Distances from a few points to the picks ``lo:t`` are then products with contiguous slices of the buffers
    (no gather of the picks' rows per call). Dense and outer-product points keep their factors' rows; any
    other point set is served through `_sq_dist_between`.
    """

    def __init__(self, pts: PointSet, k: int):
        self.pts = pts
        dev = pts.sq_norms.device
        self.idx = torch.empty(k, dtype=torch.long, device=dev)
        self.t = 0
        self.factors = _factors(pts)
        self.rows = [torch.empty((k, f.shape[1]), dtype=f.dtype, device=dev) for f in self.factors]
        self.sq = torch.empty(k, dtype=pts.sq_norms.dtype, device=dev)

    def add(self, j: int) -> None:
        self.idx[self.t] = j
        for buf, f in zip(self.rows, self.factors):
            buf[self.t] = f[j]
        self.sq[self.t] = self.pts.sq_norms[j]
        self.t += 1

    def sq_dist(self, points: torch.Tensor, lo: int) -> torch.Tensor:
        """(len(points), t − lo) squared distances from ``points`` (indices) to the picks lo:t (clamped at 0)."""
        t = self.t
        if not self.factors:
            return _sq_dist_between(self.pts, points, self.idx[lo:t])
        (f0, r0), *rest = zip(self.factors, self.rows)
        if not rest:
            d = torch.addmm(self.sq[None, lo:t], f0[points], r0[lo:t].T, alpha=-2.0)
        else:
            inner = f0[points] @ r0[lo:t].T
            for f, r in rest:
                inner.mul_(f[points] @ r[lo:t].T)
            d = inner.mul_(-2.0).add_(self.sq[None, lo:t])
        return (d + self.pts.sq_norms[points][:, None]).clamp_min_(0.0)


#: `farthest_first` treats candidates whose squared distance bound is at most this many float epsilons of their
#: squared norm as duplicates of a centre (|x|² + |c|² − 2x·c of two equal float32 rows is up to ~5 eps·|x|², not 0):
#: once every open candidate is one, the picks are uniform draws among them
DUPLICATE_NOISE = 16


class _LazyMinDist:
    """Upper bounds u of the candidates' squared distance to the nearest pick, refreshed on demand.

    ``seen[i]``: how many picks u[i] accounts for. The picks' rows are kept in buffers (`_PickedRows`), so a
    refresh is one small matrix product.
    """

    def __init__(self, pts: PointSet, u: torch.Tensor, k: int):
        self.u = u
        self.seen = torch.zeros(len(u), dtype=torch.long, device=u.device)
        self.picked = _PickedRows(pts, k)
        self.pts = pts
        #: no bound above this: every open candidate may duplicate a pick (`_duplicates_only` checks)
        self.noise = DUPLICATE_NOISE * torch.finfo(u.dtype).eps * float(pts.sq_norms.max()) if len(u) else 0.0

    @property
    def t(self) -> int:
        return self.picked.t

    def add(self, j: int) -> None:
        self.picked.add(j)

    def argmax(self, rng: np.random.Generator, n_open: int) -> int:
        """The candidate farthest from every pick (exact; ties broken by ``rng``; a uniform draw among the open
        candidates once every one duplicates a pick, `_duplicates_only`)."""
        u, t = self.u, self.t
        size = min(64, n_open)
        while True:
            top_v, top = u.topk(min(size + 1, n_open))
            if float(top_v[0]) <= self.noise and self._duplicates_only():
                return self._draw_open(rng)
            rows = top[:size]
            stale = rows[self.seen[rows] < t]
            if len(stale):
                lo = int(self.seen[stale].min())
                d = self.picked.sq_dist(stale, lo)
                seen = torch.arange(lo, t, device=d.device)[None, :] < self.seen[stale][:, None]
                d.masked_fill_(seen, math.inf)  # picks already folded into u
                u[stale] = torch.minimum(u[stale], d.min(dim=1).values)
                self.seen[stale] = t
            vals = u[rows]
            best = vals.max()
            if size >= n_open or best > top_v[size]:  # nothing outside the refreshed set can reach best
                return int(rows[argmax_random(vals, rng)])
            size *= 2

    def _duplicates_only(self) -> bool:
        """Whether every open candidate's bound lies within float rounding of 0 (`DUPLICATE_NOISE` units of its
        squared norm): each is a duplicate of a pick or centre, and the search would refresh them all for a tie."""
        u, open_ = self.u, ~torch.isneginf(self.u)
        return bool((u[open_] <= DUPLICATE_NOISE * torch.finfo(u.dtype).eps * self.pts.sq_norms[open_]).all())

    def _draw_open(self, rng: np.random.Generator) -> int:
        """A uniform draw among the open candidates (all at distance 0 up to rounding), its distance made exact."""
        open_ = torch.nonzero(~torch.isneginf(self.u)).flatten()
        j = int(open_[int(rng.integers(len(open_)))])
        t, lo = self.t, int(self.seen[j])
        if lo < t:
            self.u[j] = torch.minimum(self.u[j], self.picked.sq_dist(_long([j], self.u.device), lo).min())
            self.seen[j] = t
        return j


#: `kmeans_pp`'s cost model, in units of one multiply-add of a refresh (a refresh against p picks costs about
#: N·width·(p + _REFRESH_FIXED) units): a proposal scans the N bounds (_SCAN per point, plus _PROPOSAL fixed);
#: bringing one bound up to date costs _UPDATE plus _STALE per multiply-add. Measured on one CPU thread, then the
#: proposal-side costs doubled: of the scales 0.5, 1 and 2 of these, 1 was clearly fastest at a 10% budget on 20k
#: samples and within 10% of the best elsewhere (2k–200k samples, budgets 0.1–10%;
#: benchmarks/results/kmeans_pp_refresh.md)
_SCAN, _PROPOSAL, _UPDATE, _STALE, _REFRESH_FIXED = 40, 1 << 19, 1 << 21, 6, 8
#: entries per block of a refresh (small enough for the cache)
_REFRESH_BLOCK = 1 << 20
#: picks between refreshes on devices other than the CPU, where the cost model was not measured (a GPU's
#: refresh is cheap, its per-draw synchronisations are not)
KMEANS_PP_DEVICE_REFRESH = 32
#: the CPU's schedule: None = the cost rule (`_refresh_pays`); set it to KMEANS_PP_DEVICE_REFRESH to draw on the
#: CPU exactly what a GPU draws for the same seed (the schedule decides which rejection draws are made)
KMEANS_PP_CPU_REFRESH: int | None = None


def _width(points: PointSet) -> int:
    """Multiply-adds per inner product of two points (the cost model of `kmeans_pp`'s refreshes); 64 for a point
    set known only through `PointSet`."""
    return sum(f.shape[1] for f in _factors(points)) or 64


def _refresh_pays(cost: float, wasted: float, spent: float, since: int, left: int) -> bool:
    """`kmeans_pp`'s refresh rule (ski rental): the work stale bounds ``wasted`` over the ``since`` picks since
    the last refresh would pay for one (``cost``), and so would this pick's own waste (``spent``) or the waste
    of the ``left`` picks still to make at the rate seen so far."""
    return wasted >= cost and (spent >= cost or wasted * left >= cost * since)


def kmeans_pp(points: PointSet | torch.Tensor, k: int, rng: np.random.Generator, *, first: int | None = None,
              candidates=None, refresh: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding (D² sampling) without replacement.

    Arthur & Vassilvitskii, SODA 2007; BADGE (Ash et al., ICLR 2020, §3, k-MEANS++ on gradient embeddings).
    After the first pick (``first``, or uniform among candidates), each next point is drawn with probability
    ∝ D(x)², D the distance to the nearest pick so far, among candidates not yet picked; when every remaining
    D² is 0 (duplicates of picked points) the draw is uniform over the remaining candidates.

    Exact D² sampling by rejection (no pass over all N points per pick): every point keeps an upper bound
    u ≥ D², exact with respect to the picks up to the last full refresh (one blocked matrix product against
    the picks made since the one before). A draw proposes i ∝ u_i, brings D²_i up to date against the newer
    picks and accepts with probability D²_i / u_i (else u_i = D²_i and it draws again): the accepted point
    is distributed ∝ D² exactly. The random stream differs from drawing ∝ D² directly.

    When to refresh is a cost trade (ski rental), checked before every draw: a refresh costs N × (picks since
    the last one) × width multiply-adds, a rejected proposal a scan of the N bounds plus its own distances;
    the bounds are refreshed once the work that stale bounds wasted since the last refresh would pay for one,
    and so would either this pick's own rejections or the picks still to make at the rate seen so far. The
    rule counts work, never time, so the picks depend on the seed only. ``refresh``: refresh every that many
    picks instead (default on devices other than the CPU: every `KMEANS_PP_DEVICE_REFRESH` picks, since the
    costs were measured on a CPU). The draws depend on the schedule, so for one seed a GPU picks a different
    (equally exact) D² sample than the CPU, unless `KMEANS_PP_CPU_REFRESH` gives the CPU the GPU's schedule.

    Returns (picked indices, D² of each pick at pick time; +inf for the first). ``min(k, #candidates)`` picks.
    """
    pts = as_points(points)
    n = len(pts)
    dev = _device(pts)
    cand = _candidate_mask(n, candidates, dev)
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
    # the D² bookkeeping stays on the points' device; only scalars (the drawn index, its bound) reach the host
    open_ = cand.clone()
    picks[0], dists[0] = int(first), math.inf
    open_[int(first)] = False
    u = sq_dist_to(pts, [int(first)])[:, 0].double()  # bounds, exact w.r.t. picks[:full]; 0 once closed
    u.masked_fill_(~open_, 0.0)
    seen = np.ones(n, dtype=np.int64)  # picks folded into u[i] (≥ full)
    picked = _PickedRows(pts, k)
    picked.add(int(first))
    if refresh is None:
        refresh = KMEANS_PP_CPU_REFRESH if dev.type == "cpu" else KMEANS_PP_DEVICE_REFRESH
    full, wasted, width = 1, 0, _width(pts)
    for t in range(1, k):
        spent = 0  # the waste of this pick's own rejected draws
        while True:
            if t > full:
                due = t - full >= refresh if refresh is not None else _refresh_pays(
                    n * (t - full + _REFRESH_FIXED) * width, wasted, spent, t - full, k - t)
                if due:  # fold picks[full:t] into every bound: one blocked product
                    fold = min_sq_dist_to(pts, picks[full:t], block=max(1, _REFRESH_BLOCK // (t - full)))
                    u = torch.minimum(u, fold.double())
                    seen[:] = t
                    full, wasted, spent = t, 0, 0
            cs = torch.cumsum(u, 0)
            total = float(cs[-1])
            if not (total > 0 and math.isfinite(total)):  # every remaining D² is 0: uniform
                cs = torch.cumsum(open_.double(), 0)
                total = float(cs[-1])
            target = torch.tensor([rng.random() * total], dtype=cs.dtype, device=dev)
            j = min(int(torch.searchsorted(cs, target, right=True)), n - 1)
            while not bool(open_[j]):  # guard against round-off at the upper edge
                j -= 1
            uj = float(u[j])  # j is open, so its bound is in the cumulative sum
            if seen[j] == t or uj == 0.0:
                break
            stale = t - int(seen[j])
            d = float(picked.sq_dist(_long([j], dev), int(seen[j])).min())
            u[j], seen[j] = min(uj, d), t
            update = _UPDATE + stale * width * _STALE  # work a fresh bound would have saved
            if rng.random() * uj < min(uj, d):  # accept with probability D²/u
                wasted += update
                break
            wasted += update + n * _SCAN + _PROPOSAL
            spent += update + n * _SCAN + _PROPOSAL
        picks[t], dists[t] = j, float(u[j])
        open_[j] = False
        u[j] = 0.0
        picked.add(j)
    return picks, dists


def greedy_kmeans_pp(x: torch.Tensor, k: int, rng: np.random.Generator, *,
                     weights: torch.Tensor | np.ndarray | None = None, trials: int | None = None) -> np.ndarray:
    """Greedy weighted k-means++ seeding: k distinct row indices of ``x`` (N, m), N ≥ k.

    Arthur & Vassilvitskii, SODA 2007, §6 ("greedy" k-means++), as scikit-learn's ``kmeans_plusplus``: the
    first seed is drawn ∝ weight; each next one is the best of ``trials`` candidates (default 2 + ⌊ln k⌋)
    drawn ∝ weight·D² (D the distance to the nearest seed so far), the one that leaves the smallest weighted
    potential Σ weight·min(D², d²). Its starts are far better than plain D² sampling's on weighted data
    (benchmarks/results/query_speed.md): Lloyd iterations do not repair a poor start. Cost O(k·trials·N·m)
    on ``x``'s device; memory (trials, N). Rows with weight 0 are never drawn, unless every weight·D² is 0:
    then the next seed is drawn ∝ weight among the rows not yet picked (uniformly when those weigh 0).
    """
    x = _tensor(x).float()
    n, dev = len(x), x.device
    if not 0 < k <= n:
        raise ValueError(f"greedy k-means++: {k} seeds among {n} points")
    w = torch.ones(n, dtype=torch.float64, device=dev) if weights is None else \
        _tensor(weights, dev).to(torch.float64).clip(min=0.0)
    trials = int(trials or 2 + int(math.log(k)))
    xn = (x * x).sum(dim=1)
    open_ = torch.ones(n, dtype=torch.bool, device=dev)

    def draw(p: torch.Tensor, size: int) -> torch.Tensor:
        """``size`` indices ∝ p (with replacement); among open rows ∝ weight (or uniform) when p sums to 0."""
        if not float(p.sum()) > 0:
            p = torch.where(open_, w, 0.0)
            if not float(p.sum()) > 0:
                p = open_.double()
        cs = torch.cumsum(p, 0)
        u = torch.as_tensor(rng.random(size), dtype=cs.dtype, device=dev) * cs[-1]
        return torch.searchsorted(cs, u, right=True).clamp_(max=n - 1)

    def sq_dist(rows: torch.Tensor) -> torch.Tensor:  # (len(rows), N), float64
        return torch.addmm(xn[None, :] + xn[rows, None], x[rows], x.T, alpha=-2.0).double().clamp_min_(0.0)

    picks = np.empty(k, dtype=np.int64)
    first = draw(w, 1)
    picks[0] = int(first)
    open_[first] = False
    d2 = sq_dist(first)[0]
    for t in range(1, k):
        cand = draw(w * d2 * open_, trials)
        dc = torch.minimum(sq_dist(cand), d2)
        best = int(torch.argmin((dc * w).sum(dim=1)))
        j = int(cand[best])
        if not bool(open_[j]):  # round-off at a cumsum edge drew a seed: the first open row instead
            j = int(torch.nonzero(open_)[0])
            dc[best] = torch.minimum(sq_dist(torch.tensor([j], device=dev))[0], d2)
        picks[t] = j
        open_[j] = False
        d2 = dc[best]
    return picks


# ---------------------------------------------------------------------------------------------- neighbours


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


#: pools up to this size get exact neighbours with ``backend="auto"``; larger ones the IVF search
EXACT_KNN_MAX = 50_000


def knn_backend(n: int, on_gpu: bool, backend: str = "auto") -> str:
    """What `knn` runs for ``backend`` on ``n`` rows: "auto" is "exact" up to EXACT_KNN_MAX rows, else "ivf";
    "exact" is "torch" for a pool on a GPU (it searches faster there), else "faiss" when importable, else "torch"."""
    if backend == "auto":
        backend = "exact" if n <= EXACT_KNN_MAX else "ivf"
    if backend == "exact":
        return "torch" if on_gpu or _faiss() is None else "faiss"
    return backend


def knn(x: torch.Tensor, k: int, *, exclude_self: bool = True, normalize: bool = True, block: int | None = None,
        backend: Literal["auto", "torch", "faiss", "exact", "ivf"] = "auto", nprobe: int = 16,
        nlist: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest neighbours of every row of ``x`` by cosine similarity (inner product if not ``normalize``).

    Returns (similarities (N, k), indices (N, k)), most similar first. ``exclude_self`` drops each row itself
    (by index, so exact duplicates of a row are still neighbours). ``backend``:

    - "faiss": exact, faiss ``IndexFlatIP`` (on the CPU); "torch": exact, blocked matmul + topk (``block`` query
      rows at a time, default MAX_BLOCK_ELEMENTS / N, so never an N×N matrix), on ``x``'s device; "exact": torch
      for a GPU tensor, else faiss when importable, else torch.
    - "ivf": approximate, an inverted file searched with matrix products (`ivf_knn`: ``nlist`` clusters,
      default ⌈√N⌉, each cluster's rows compared with the rows of its ``nprobe`` nearest clusters).
    - "auto": "exact" up to EXACT_KNN_MAX rows (O(N²·m) time), "ivf" above (O(N^1.5·m·nprobe)).

    The results are on ``x``'s device.
    """
    x = _tensor(x).float()
    n = len(x)
    dev = x.device
    if k < 1 or k > n - int(exclude_self):
        raise ValueError(f"knn: k={k} neighbours asked among {n} points (exclude_self={exclude_self})")
    if normalize:
        x = F.normalize(x, dim=1)
    backend = knn_backend(n, dev.type != "cpu", backend)
    if backend == "ivf":
        return ivf_knn(x, k, exclude_self=exclude_self, nprobe=nprobe, nlist=nlist)
    faiss = _faiss() if backend == "faiss" else None
    if backend == "faiss" and faiss is None:
        raise ImportError("knn(backend='faiss') needs faiss: pip install 'adakit[faiss]'")
    kk = k + int(exclude_self)
    if faiss is not None:
        # faiss (CPU index): the rows go to the CPU for the search, the results back to x's device
        xs = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        index = faiss.IndexFlatIP(xs.shape[1])
        index.add(xs)
        sims, idx = index.search(xs, kk)
        sims, idx = torch.from_numpy(sims).to(dev), torch.from_numpy(idx).long().to(dev)
        if exclude_self:
            is_self = idx == torch.arange(n, device=dev)[:, None]
            missing = ~is_self.any(dim=1)
            is_self[missing, -1] = True  # self fell outside the top k+1 (ties): drop the last instead
            keep = ~is_self
            sims, idx = sims[keep].reshape(n, k), idx[keep].reshape(n, k)
        return sims, idx
    step = _block_size(n, block)
    out_s = torch.empty((n, k), dtype=x.dtype, device=dev)
    out_i = torch.empty((n, k), dtype=torch.long, device=dev)
    for s in range(0, n, step):
        e = min(n, s + step)
        sim = x[s:e] @ x.T
        if exclude_self:
            r = torch.arange(e - s, device=dev)
            sim[r, s + r] = -math.inf
        v, i = sim.topk(k, dim=1)
        out_s[s:e], out_i[s:e] = v, i
    return out_s, out_i


def _cluster_sums(x: torch.Tensor, assign: torch.Tensor, k: int, onehot: bool | None = None) -> torch.Tensor:
    """(k, m) sums of the rows of ``x`` per cluster ``assign``: ``index_add_`` on the CPU, one-hot matrix
    products elsewhere (``onehot``: force either), since a GPU's ``index_add_`` adds floats atomically, in an order
    that varies from run to run. The one-hot matrices are blocked over rows (at most MAX_BLOCK_ELEMENTS entries
    at once), never (k, N)."""
    if onehot is None:
        onehot = x.device.type != "cpu"
    acc = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
    if not onehot:
        return acc.index_add_(0, assign, x)
    step = _block_size(k, None)
    for s in range(0, len(x), step):
        acc.addmm_(F.one_hot(assign[s:s + step], k).to(x.dtype).T, x[s:s + step])
    return acc


def _spherical_kmeans(x: torch.Tensor, nlist: int, iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit centroids (nlist, m) of cosine k-means on a fixed-seed subsample (≤ 64·nlist rows) of unit rows
    ``x``, and every row's cluster (its most similar centroid; blocked). Deterministic for given ``x``; the
    subsample is drawn on the CPU (same on every device), the k-means runs on ``x``'s device."""
    g = torch.Generator(device="cpu").manual_seed(0)
    n = len(x)
    sub = x[torch.randperm(n, generator=g, device="cpu")[:min(n, 64 * nlist)].to(x.device)]
    cent = sub[torch.randperm(len(sub), generator=g, device="cpu")[:nlist].to(x.device)].clone()
    for _ in range(iters):
        a = (sub @ cent.T).argmax(dim=1)
        acc = _cluster_sums(sub, a, len(cent))
        norm = acc.norm(dim=1, keepdim=True)
        cent = torch.where(norm > 0, acc / norm.clamp_min(1e-12), cent)  # empty clusters keep their centroid
    assign = torch.empty(n, dtype=torch.long, device=x.device)
    step = _block_size(len(cent), None)
    for s in range(0, n, step):
        assign[s:s + step] = (x[s:s + step] @ cent.T).argmax(dim=1)
    return cent, assign


def ivf_knn(x: torch.Tensor, k: int, *, exclude_self: bool = True, nprobe: int = 16,
            nlist: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate k nearest neighbours by inner product of the rows of ``x`` (unit rows: cosine).

    An inverted file searched with matrix products: cosine k-means (`_spherical_kmeans`, ``nlist`` clusters,
    default ⌈√N⌉) sorts the rows into clusters; the rows of each cluster are compared, in one product, with
    every row of the ``nprobe`` clusters whose centroids are most similar to theirs (their own first; more
    clusters where these hold fewer than k + 1 rows). A neighbour in a cluster outside that set is missed:
    recall < 1, measured against the exact search in benchmarks/results/query_speed.md. Time
    O(N²·m·nprobe/nlist), memory O(N·(m + k)) (the rows, sorted by cluster) plus one block of similarities.
    Returns (similarities (N, k), indices (N, k)) as `knn`, on ``x``'s device.
    """
    n = len(x)
    dev = x.device
    nlist = int(nlist or math.ceil(math.sqrt(n)))
    nlist = max(1, min(nlist, n))
    cent, assign = _spherical_kmeans(x, nlist)
    order = torch.argsort(assign, stable=True)
    counts = torch.bincount(assign, minlength=nlist)
    starts = torch.cumsum(counts, 0) - counts
    xs = x[order]
    cc = cent @ cent.T
    cc.fill_diagonal_(math.inf)  # a cluster probes itself first
    probe = torch.argsort(cc, dim=1, descending=True)
    need = k + int(exclude_self)
    enough = torch.cumsum(counts[probe], dim=1) >= need
    n_probe = torch.clamp(enough.float().argmax(dim=1) + 1, min=min(nprobe, nlist))  # ≥ k + 1 rows each
    out_s = torch.empty((n, k), dtype=x.dtype, device=dev)
    out_i = torch.empty((n, k), dtype=torch.long, device=dev)
    n_probe = n_probe.tolist()
    for c in torch.nonzero(counts).flatten().tolist():
        p = probe[c, :n_probe[c]]
        lens = counts[p]
        total = int(lens.sum())
        db = torch.repeat_interleave(starts[p] - torch.cumsum(lens, 0) + lens, lens, output_size=total)
        db += torch.arange(total, device=dev)
        dbx = xs[db]
        q0, qn = int(starts[c]), int(counts[c])
        step = _block_size(len(db), None)
        for s in range(0, qn, step):
            e = min(qn, s + step)
            sim = xs[q0 + s:q0 + e] @ dbx.T
            if exclude_self:  # cluster c comes first in db: row i of the cluster sits at db position i
                r = torch.arange(e - s, device=dev)
                sim[r, s + r] = -math.inf
            v, i = sim.topk(k, dim=1)
            rows = order[q0 + s:q0 + e]
            out_s[rows], out_i[rows] = v, order[db[i]]
    return out_s, out_i


# ------------------------------------------------------------------------------------------------ k-means


#: k-means with N·k above this uses faiss (when importable) with ``backend="auto"``
EXACT_KMEANS_MAX = 10_000_000


#: the faiss k-means seeds from this many draws per centroid (`seeding_sample`)
SEEDING_DRAWS_PER_CENTRE = 8


def seeding_sample(x: np.ndarray | torch.Tensor, k: int, rng: np.random.Generator, *,
                   weights: np.ndarray | None = None, draws_per_centre: int | None = None) -> np.ndarray:
    """k distinct row indices of ``x``: greedy k-means++ (`greedy_kmeans_pp`) on a weighted sample of the rows.

    The sample is ``draws_per_centre``·k draws with replacement ∝ weight (uniform without weights), each
    distinct row weighted by how often it was drawn: an unbiased sample of the weighted data, so rows that
    carry the weight are in it (a uniform subsample misses them on skewed weights such as CLUE's). When the
    draws would cover the pool (draws ≥ N) or hit fewer than k distinct rows, the seeding runs on every row
    with its weight. Cost O(k·trials·draws·m) instead of O(k·trials·N·m). A tensor ``x`` is seeded on
    its device (only the drawn indices move there); ``weights`` are a CPU array.
    """
    n = len(x)
    s = int(draws_per_centre or SEEDING_DRAWS_PER_CENTRE) * k
    if s < n:
        p = None if weights is None else weights / weights.sum()
        rows, counts = np.unique(rng.choice(n, size=s, p=p), return_counts=True)
        if len(rows) >= k:
            return rows[greedy_kmeans_pp(_gather(x, rows), k, rng, weights=counts)]
    return greedy_kmeans_pp(_gather(x, None), k, rng, weights=weights)


def _gather(x: np.ndarray | torch.Tensor, rows: np.ndarray | None) -> torch.Tensor:
    """The rows of ``x`` (all with None) as a tensor on ``x``'s device (numpy: a CPU tensor)."""
    if isinstance(x, torch.Tensor):
        return x if rows is None else x[torch.as_tensor(rows, device=x.device)]
    return torch.from_numpy(np.ascontiguousarray(x if rows is None else x[rows]))


def weighted_lloyd(x: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor | None, iters: int, *,
                   block: int | None = None) -> tuple[torch.Tensor, float]:
    """``iters`` weighted Lloyd iterations from ``centres`` on ``x``'s device; the centroids and the final
    objective Σ w·min_j |x − c_j|² (Lloyd 1982; the weighted update of CLUE's Eq. 6).

    Each iteration assigns every row to its nearest centroid (`nearest_centre`, blocked) and moves each
    centroid to the weighted mean of its rows; a centroid that wins no weight keeps its place (as faiss's
    does not: it splits a large cluster). Memory O(N·m + block·k), never (N, k). Deterministic on every device
    (blocked one-hot sums on a GPU, `_cluster_sums`).
    """
    c = centres.to(x.dtype).clone()
    w = torch.ones(len(x), dtype=x.dtype, device=x.device) if weights is None else weights.to(x.device, x.dtype)
    xw = x * w[:, None]
    for _ in range(int(iters)):
        _, a = nearest_centre(x, c, block)
        sums = _cluster_sums(xw, a, len(c))
        mass = _cluster_sums(w[:, None], a, len(c))[:, 0]
        c = torch.where(mass[:, None] > 0, sums / mass.clamp_min(torch.finfo(x.dtype).tiny)[:, None], c)
    d2, _ = nearest_centre(x, c, block)
    return c, float((w.double() * d2.double()).sum())


def weighted_kmeans(x: torch.Tensor | np.ndarray, k: int, rng: np.random.Generator, *,
                    weights: torch.Tensor | np.ndarray | None = None, n_init: int = 1,
                    max_iter: int = 300, backend: Literal["auto", "sklearn", "faiss", "torch"] = "sklearn",
                    faiss_iter: int = 8) -> np.ndarray:
    """Centroids (k, m) of a (weighted) k-means; the seed comes from ``rng``. Requires k ≤ N.

    Weighted k-means as used by CLUE (Prabhu et al., ICCV 2021, Eq. 5-6: ``KMeans.fit(x, sample_weight=H)``).
    Weights that sum to 0 fall back to uniform weights. ``backend``:

    - "sklearn": scikit-learn's KMeans (k-means++ init, Lloyd, ``n_init`` restarts, up to ``max_iter``
      iterations to convergence), the CLUE and LADA code's. Its k-means++ init alone costs O(k·N·m·log k).
    - "faiss": greedy weighted k-means++ seeding on a weighted sample of the rows (`seeding_sample`), then
      faiss's weighted Lloyd iterations, ``faiss_iter`` of them: O(faiss_iter·N·k·m). An approximation of the
      above with a bounded number of iterations (objective measured in benchmarks/results/query_speed.md, on
      synthetic pools and real features). faiss's own random initialisation is not used: on well-separated
      clusters it leaves some without a centroid; plain D² seeding on a uniform subset (before 2026-12-03)
      missed the rows that carry the weight on skewed weights and ended up to 22% above scikit-learn's objective.
    - "torch": the same seeding and ``faiss_iter`` weighted Lloyd iterations (`weighted_lloyd`) in torch, on
      the device of a tensor ``x`` (a GPU pool is clustered on the GPU, no host copy of it).
    - "auto": "sklearn" while N·k ≤ EXACT_KMEANS_MAX; above, "torch" for a GPU tensor, else "faiss" when
      importable, else "torch".

    sklearn and faiss run on the CPU (tensors on another device are copied there); the centroids come back as
    numpy.
    """
    if k > len(x):
        raise ValueError(f"k-means with {k} clusters on {len(x)} points")
    if backend == "auto":
        backend = kmeans_backend(len(x), k, isinstance(x, torch.Tensor) and x.device.type != "cpu")
    w = _host_weights(weights)
    seed = int(rng.integers(2**31 - 1))
    if backend == "torch":
        return _torch_kmeans(x, k, seed, w, n_init, faiss_iter)
    return _cpu_kmeans(x, k, seed, w, n_init, max_iter, backend, faiss_iter)


def kmeans_backend(n: int, k: int, on_gpu: bool) -> str:
    """`weighted_kmeans`'s choice for ``backend="auto"``: "sklearn" while n·k ≤ EXACT_KMEANS_MAX; above, "torch"
    for a pool on a GPU, else "faiss" when importable, else "torch"."""
    if n * k <= EXACT_KMEANS_MAX:
        return "sklearn"
    return "torch" if on_gpu or _faiss() is None else "faiss"


def _host_weights(weights: torch.Tensor | np.ndarray | None) -> np.ndarray | None:
    """k-means weights as a float64 CPU array clipped at 0 (the seeding draws them with numpy; N values, not
    N × m); None without weights or when they sum to 0 (uniform weights)."""
    if weights is None:
        return None
    w = np.asarray(_tensor(weights).detach().cpu().double().numpy(), dtype=np.float64).clip(min=0.0)
    return w if w.sum() > 0 else None


def _torch_kmeans(x: torch.Tensor | np.ndarray, k: int, seed: int, w: np.ndarray | None, n_init: int,
                  iters: int) -> np.ndarray:
    """`weighted_kmeans`'s "torch" backend on ``x``'s device: `seeding_sample`, then `weighted_lloyd`; the best
    of ``n_init`` runs."""
    xt = _tensor(x).detach()
    if xt.dtype not in (torch.float32, torch.float64):  # float16 sums overflow; integers as float64, as sklearn
        xt = xt.float() if xt.is_floating_point() else xt.double()
    wt = None if w is None else torch.from_numpy(w)
    return _best_seeded(xt, k, seed, w, n_init, lambda init: weighted_lloyd(
        xt, xt[torch.as_tensor(init, device=xt.device)], wt, iters)).cpu().numpy()


def _best_seeded(x, k: int, seed: int, w: np.ndarray | None, n_init: int, lloyd: Callable):
    """The bounded k-means' restarts (faiss and torch): ``n_init`` times `seeding_sample` (one generator seeded by
    ``seed``), then ``lloyd(seed rows) -> (centroids, objective)``; the centroids of the lowest objective."""
    sub = np.random.default_rng(seed)
    best, best_obj = None, math.inf
    for _ in range(int(n_init)):
        c, obj = lloyd(seeding_sample(x, k, sub, weights=w))
        if best is None or obj < best_obj:
            best, best_obj = c, obj
    return best


def _cpu_kmeans(x: torch.Tensor | np.ndarray, k: int, seed: int, w: np.ndarray | None, n_init: int,
                max_iter: int, backend: str, faiss_iter: int) -> np.ndarray:
    """`weighted_kmeans`'s "sklearn" and "faiss" backends, on a CPU copy of ``x``."""
    xs = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if xs.dtype not in (np.float32, np.float64):
        xs = xs.astype(np.float64)
    if backend == "faiss":
        faiss = _faiss()
        if faiss is None:
            raise ImportError("k-means backend 'faiss' needs faiss: pip install 'adakit[faiss]'")
        xf = np.ascontiguousarray(xs, dtype=np.float32)

        def lloyd(init: np.ndarray) -> tuple[np.ndarray, float]:
            km = faiss.Kmeans(xf.shape[1], k, niter=int(faiss_iter), seed=seed, verbose=False,
                              min_points_per_centroid=1, max_points_per_centroid=len(xf))
            km.train(xf, weights=None if w is None else np.ascontiguousarray(w, dtype=np.float32),
                     init_centroids=np.ascontiguousarray(xf[init]))
            return km.centroids.copy(), float(km.obj[-1]) if len(km.obj) else 0.0

        return _best_seeded(xf, k, seed, w, n_init, lloyd).astype(xs.dtype)
    from sklearn.cluster import KMeans  # import cost only when used

    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
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
    samples, each near its centroid). Requires len(centres) ≤ len(x). The distances are computed on ``x``'s
    device; only the (k, per_centre) nearest candidates go to the host for the conflict resolution.
    """
    xt = _tensor(x)
    if not xt.is_floating_point():
        xt = xt.double()
    ct = _tensor(centres, xt.device).to(xt.dtype)
    n, k = len(xt), len(ct)
    if k > n:
        raise ValueError(f"{k} centroids but only {n} samples to pick from")
    t = min(per_centre, n)
    xn = (xt * xt).sum(dim=1)
    cn = (ct * ct).sum(dim=1)
    step = _block_size(k, block)  # sample rows per block, all centroids at once
    near_d = torch.full((k, 0), math.inf, dtype=xt.dtype, device=xt.device)
    near_i = torch.zeros((k, 0), dtype=torch.long, device=xt.device)
    for s in range(0, n, step):
        xb = xt[s:s + step]
        d = torch.addmm(xn[None, s:s + step], ct, xb.T, alpha=-2.0)  # (k, rows): |x|² − 2 c·x
        v, i = torch.topk(d, min(t, len(xb)), dim=1, largest=False, sorted=True)
        near_d, near_i = torch.cat([near_d, v], dim=1), torch.cat([near_i, i + s], dim=1)
        if near_d.shape[1] > t:  # keep the running t nearest of each centroid
            near_d, j = torch.topk(near_d, t, dim=1, largest=False, sorted=True)
            near_i = near_i.gather(1, j)
    near_d = (near_d + cn[:, None]).clamp_min_(0.0)
    assigned = np.full(k, -1, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    nd, ni = near_d.cpu().numpy(), near_i.cpu().numpy()  # (k, per_centre): small
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
        d = (xn - 2.0 * (xt @ ct[c])).cpu().numpy()  # + |c|², the same for every sample
        d[taken] = np.inf
        j = int(np.argmin(d))
        assigned[c] = j
        taken[j] = True
    return assigned


def kmeans_select(x: torch.Tensor, k: int, rng: np.random.Generator, *, weights=None, n_init: int = 1,
                  max_iter: int = 300, backend: Literal["auto", "sklearn", "faiss", "torch"] = "sklearn",
                  faiss_iter: int = 8) -> np.ndarray:
    """k distinct samples of ``x``: (weighted) k-means with k clusters (`weighted_kmeans`, its ``backend``),
    then the sample nearest each centroid (`nearest_to_centroids`).

    With k ≥ N every sample is returned (in a random order).
    """
    n = len(x)
    if k >= n:
        return rng.permutation(n).astype(np.int64)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    centres = weighted_kmeans(x, k, rng, weights=weights, n_init=n_init, max_iter=max_iter, backend=backend,
                              faiss_iter=faiss_iter)
    return nearest_to_centroids(x, centres)
