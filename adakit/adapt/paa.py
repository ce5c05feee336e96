"""Progressive Anchor-set Augmentation (PAA) of LADA (Sun et al., ICCV 2023, §3.2, Alg. 2, Eq. 4).

Composes with any objective: it replaces the labelled-target batches of S+T training. At the start of
each fit (an "epoch" of the round) the anchor set A is reset to the labelled target. Each step:

* an anchor batch B_a is drawn by iterating over A; its inputs are mixed
  x̃ = β·x + (1 − β)·strong(x), β ~ Beta(0.2, 0.2) per sample, and trained on with CE and the anchors'
  labels;
* for every anchor a candidate is drawn — RAA: uniformly from the target pool; LAA: uniformly among the
  anchor's K nearest pool neighbours (cosine on L2-normalised features of the model at the fit's start);
* a candidate with max p ≥ τ (0.9) is accepted with its pseudo-label ŷ when a uniform draw ≥ q[ŷ],
  q[c] = (n_c − n_min)/n_max over the class counts of A (+1 each; Eq. 4), i.e. over-represented
  classes are rejected more often (class-balancing rejection);
* accepted samples wait in S and join A once a full pass over A concludes.

strong(x): RandAugment(n=1, m=2) for images (`FileImageDomain.load_strong`: after the training crop and flip);
for feature vectors adakit uses a feature-space
analogue (`TensorDomain.load_strong`): feature dropout (p = 0.1) plus Gaussian noise of 0.1 × the
per-dimension standard deviation of the pool. Pseudo-labelled samples already in A ∪ S are not added again.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from adakit.data.domain import Domain
from adakit.inference import forward_domain
from adakit.params import Params


class AnchorParams(Params):
    kind: str = Field("none", pattern="^(none|raa|laa)$", description="none | raa | laa")
    tau: float = Field(0.9, ge=0, le=1, description="confidence threshold for pseudo-labels")
    k: int | None = Field(10, ge=1, description="LAA neighbours K (LADA §4.1: 5 for Office-31, 10 for Office-Home, "
                          "VisDA, DomainNet); set per dataset in the config. None: the rule of runs stored before "
                          "2026-12-02 (5 below 1,000 pool samples, else 10), kept so that they resume as they ran")
    beta: float = Field(0.2, gt=0, description="β ~ Beta(beta, beta) mixing with the strong view")


def _knn(emb: torch.Tensor, queries: np.ndarray, k: int) -> torch.Tensor:
    """K nearest pool neighbours (cosine, self excluded) of the query rows: (len(queries), k), on emb's device."""
    q = torch.as_tensor(queries, device=emb.device)
    sims = emb[q] @ emb.T
    sims[torch.arange(len(queries), device=emb.device), q] = -float("inf")
    return sims.topk(min(k, len(emb) - 1), dim=1).indices


class AnchorSet:
    """The growing anchor set of one fit; `next_batch` and `propose` are called once per step."""

    def __init__(self, params: AnchorParams, model: torch.nn.Module, pool: Domain, labelled_idx: np.ndarray,
                 labelled_y: np.ndarray, batch_size: int, gen: np.random.Generator, device, num_classes: int,
                 num_workers: int = 0):
        self.p, self.model, self.pool, self.device, self.gen = params, model, pool, device, gen
        self.idx = np.asarray(labelled_idx, dtype=np.int64).copy()
        self.y = np.asarray(labelled_y, dtype=np.int64).copy()
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.pending_idx: list[np.ndarray] = []
        self.pending_y: list[np.ndarray] = []
        self.k = params.k or (5 if len(pool) < 1000 else 10)  # (None: a run stored before 2026-12-02)
        self.emb = None
        if params.kind == "laa":
            f, _ = forward_domain(model, pool, device=device, keep_on_device=True,  # CUDA: neighbours on the GPU
                                  num_workers=num_workers)
            self.emb = torch.nn.functional.normalize(f, dim=1)
        self._order = np.empty(0, dtype=np.int64)
        self.accepted = 0

    def __len__(self) -> int:
        return len(self.idx)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions in A of the next anchor batch; a finished pass first merges S into A."""
        if len(self._order) == 0:
            if self.pending_idx:
                self.idx = np.concatenate([self.idx, *self.pending_idx])
                self.y = np.concatenate([self.y, *self.pending_y])
                self.pending_idx, self.pending_y = [], []
            self._order = self.gen.permutation(len(self.idx))
        take, self._order = self._order[: self.batch_size], self._order[self.batch_size:]
        return self.idx[take], self.y[take]

    def rejection(self) -> np.ndarray:
        """q[c] = (n_c − n_min) / n_max over class counts of A (+1 each), LADA Eq. 4."""
        counts = np.bincount(self.y, minlength=self.num_classes) + 1.0
        return (counts - counts.min()) / counts.max()

    def mix(self, x: torch.Tensor, strong: torch.Tensor) -> torch.Tensor:
        beta = torch.as_tensor(self.gen.beta(self.p.beta, self.p.beta, size=len(x)), dtype=x.dtype, device=x.device)
        beta = beta.view(-1, *([1] * (x.dim() - 1)))
        return beta * x + (1 - beta) * strong

    @torch.no_grad()
    def propose(self, anchors: np.ndarray) -> int:
        """Draw one candidate per anchor (Alg. 2) and keep the confident, class-balanced ones in S."""
        if self.p.kind == "laa":
            nbrs = _knn(self.emb, anchors, self.k)
            pick = torch.as_tensor(self.gen.integers(0, nbrs.shape[1], len(anchors)), device=nbrs.device)
            cand = nbrs[torch.arange(len(anchors), device=nbrs.device), pick].cpu().numpy()  # b rows to the host
        else:
            cand = self.gen.integers(0, len(self.pool), len(anchors))
        taken = np.concatenate([self.idx, *self.pending_idx]) if self.pending_idx else self.idx
        cand = np.unique(cand[~np.isin(cand, taken)])
        if len(cand) == 0:
            return 0
        was = self.model.training
        self.model.eval()
        _, z = self.model(self.pool.load(cand).to(self.device))
        self.model.train(was)
        p = torch.softmax(z.float(), dim=1).cpu()
        conf, yhat = p.max(dim=1)
        xi = self.gen.random(len(cand))
        keep = (conf.numpy() >= self.p.tau) & (xi >= self.rejection()[yhat.numpy()])
        if keep.any():
            self.pending_idx.append(cand[keep])
            self.pending_y.append(yhat.numpy()[keep])
        self.accepted += int(keep.sum())
        return int(keep.sum())
