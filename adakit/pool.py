"""`PoolView`: what a strategy may ask about the target pool, computed once and cached.

Strategies never see the pool's hidden labels: only the labels people (or the oracle) gave.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch
from torch import nn

from adakit.data.domain import Domain
from adakit.inference import forward_domain


class PoolView:
    """Lazy, cached outputs of the current model on the target pool (and source on request).

    ``labelled`` is a boolean mask over the pool; ``labels`` holds the given labels (-1 elsewhere).
    ``objective`` gives access to discriminators for strategies that need them (AADA, SAGE).
    """

    def __init__(self, model: nn.Module, pool: Domain, labelled: np.ndarray, labels: np.ndarray | None = None,
                 objective: nn.Module | None = None, source: Domain | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 256):
        self.model = model
        self.pool = pool
        self.labelled = np.asarray(labelled, dtype=bool)
        self.labels = np.full(len(pool), -1, dtype=np.int64) if labels is None else np.asarray(labels)
        self.objective = objective
        self.source = source
        self.device = device
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.pool)

    @property
    def num_classes(self) -> int:
        return self.pool.num_classes

    @cached_property
    def _outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return forward_domain(self.model, self.pool, self.batch_size, self.device)

    @property
    def embeddings(self) -> torch.Tensor:
        """Features f (N, m) of the pool (bottleneck output, the head's input)."""
        return self._outputs[0]

    @property
    def logits(self) -> torch.Tensor:
        return self._outputs[1]

    @cached_property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=1)

    @cached_property
    def unlabelled_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.labelled)

    @cached_property
    def labelled_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labelled)

    @cached_property
    def source_outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.source is None:
            raise ValueError("this PoolView was built without the source domain")
        return forward_domain(self.model, self.source, self.batch_size, self.device)

    @property
    def source_embeddings(self) -> torch.Tensor:
        return self.source_outputs[0]

    @property
    def head(self) -> nn.Module:
        return self.model.head

    @cached_property
    def head_weight(self) -> torch.Tensor:
        """W (C, m) of the head, detached on CPU (closed-form per-sample gradients)."""
        return self.model.head.weight.detach().float().cpu()
