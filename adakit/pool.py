"""What a strategy may ask about the target pool, computed once and cached.

`PoolView` computes it from a model and the pool (the loop's view); `ArrayView` holds arrays given by the
caller (`adakit.select`). Both share `BaseView`: the labelled mask, the index lists and probabilities from
logits. Strategies never see the pool's hidden labels: only the labels people (or the oracle) gave.

Strategies compute on the device of the view's tensors: CPU by default; a `PoolView` built with
``outputs_on_device=True`` (the loop, when it trains on CUDA) and an `ArrayView` of CUDA tensors keep them on
the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from adakit.data.domain import Domain
from adakit.errors import ConfigError
from adakit.inference import forward_domain


class BaseView:
    """The interface strategies read: ``embeddings`` f (N, m), ``logits`` z (N, C), ``probs`` softmax(z),
    the labelled mask and index lists, ``source_embeddings``, the classifier ``head`` and ``objective``
    (the object that provides discriminators, e.g. ``objective.domain_discriminator``).

    ``labelled`` is a boolean mask over the pool; ``labels`` holds the given labels (-1 elsewhere).
    ``unavailable`` (optional mask) marks unlabelled samples that must not be picked: queries that nobody
    could label (dropped); they stay out of ``unlabelled_indices``.
    """

    #: per-sample domain-discriminator logits (N,) given directly (sigmoid = P(source)); None: strategies run
    #: ``objective.domain_discriminator`` on the embeddings instead
    domain_logits: torch.Tensor | None = None

    def __init__(self, labelled: np.ndarray, labels: np.ndarray | None = None, objective: Any = None,
                 unavailable: np.ndarray | None = None):
        self.labelled = np.asarray(labelled, dtype=bool)
        self.unavailable = np.zeros(len(self.labelled), dtype=bool) if unavailable is None else \
            np.asarray(unavailable, dtype=bool)
        self.labels = np.full(len(self.labelled), -1, dtype=np.int64) if labels is None else np.asarray(labels)
        self.objective = objective

    def __len__(self) -> int:
        return len(self.labelled)

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[1])

    @property
    def embeddings(self) -> torch.Tensor:
        """Features f (N, m) of the pool (bottleneck output, the head's input)."""
        raise NotImplementedError

    @property
    def logits(self) -> torch.Tensor:
        raise NotImplementedError

    @cached_property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=1)

    @cached_property
    def unlabelled_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.labelled & ~self.unavailable)

    @cached_property
    def labelled_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labelled)

    @property
    def source_embeddings(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def head(self) -> nn.Module:
        raise NotImplementedError

    @cached_property
    def head_weight(self) -> torch.Tensor:
        """W (C, m) of the head, detached, float32, on the device of the pool outputs (closed-form gradients)."""
        return self.head.weight.detach().float().to(self.probs.device)


class PoolView(BaseView):
    """Lazy, cached outputs of the current model on the target pool (and source on request).

    ``objective`` gives access to discriminators for strategies that need them (AADA, SAGE). The model runs
    on ``device``; its outputs are held as float32 CPU tensors, or on ``device`` itself with
    ``outputs_on_device`` (then the strategies compute there: the loop sets it when it trains on CUDA): the
    pool pass then writes them there directly (`forward_domain` ``keep_on_device``), with no host copy.
    """

    def __init__(self, model: nn.Module, pool: Domain, labelled: np.ndarray, labels: np.ndarray | None = None,
                 objective: nn.Module | None = None, source: Domain | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 256, outputs_on_device: bool = False,
                 unavailable: np.ndarray | None = None, num_workers: int = 0):
        super().__init__(labelled, labels, objective, unavailable)
        self.model = model
        self.pool = pool
        self.source = source
        self.device = device
        self.batch_size = batch_size
        self.num_workers = num_workers
        #: where the outputs (and so the strategies' tensors) live
        self.outputs_device = torch.device(device) if outputs_on_device else torch.device("cpu")

    def __len__(self) -> int:
        return len(self.pool)

    @property
    def num_classes(self) -> int:
        return self.pool.num_classes

    @cached_property
    def _outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(f, z) of the pool as `forward_domain` returns them (on ``outputs_device``); the loop may set a cached
        pair here."""
        return forward_domain(self.model, self.pool, self.batch_size, self.device, keep_on_device=self._keep,
                              num_workers=self.num_workers)

    @property
    def _keep(self) -> bool:
        """Whether the pool passes leave their outputs on the model's device (``outputs_on_device``)."""
        return self.outputs_device.type != "cpu"

    @property
    def _held(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`_outputs` on ``outputs_device``: the same tensors when they are there already (a CPU run, or the pool
        pass kept on the device), else one cached copy (a pair set on the CPU; made again if `_outputs` is
        replaced)."""
        out = self._outputs
        moved = self.__dict__.get("_moved")
        if moved is None or moved[0] is not out:
            moved = self.__dict__["_moved"] = (out, (out[0].to(self.outputs_device), out[1].to(self.outputs_device)))
        return moved[1]

    @property
    def embeddings(self) -> torch.Tensor:
        """Features f (N, m) of the pool (bottleneck output, the head's input)."""
        return self._held[0]

    @property
    def logits(self) -> torch.Tensor:
        return self._held[1]

    @cached_property
    def source_outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.source is None:
            raise ValueError("this PoolView was built without the source domain")
        f, z = forward_domain(self.model, self.source, self.batch_size, self.device, keep_on_device=self._keep,
                              num_workers=self.num_workers)
        return f.to(self.outputs_device), z.to(self.outputs_device)

    @property
    def source_embeddings(self) -> torch.Tensor:
        return self.source_outputs[0]

    @property
    def head(self) -> nn.Module:
        return self.model.head


class CallableModule(nn.Module):
    """A plain function as a module (no parameters), so discriminators and heads may be given as callables."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class ArrayView(BaseView):
    """A view over arrays the caller computed: float32 tensors on one device (`adakit.select` moves them there).

    ``missing`` maps an attribute that was not given to the keyword that supplies it; reading it raises a
    `ConfigError` naming that keyword and ``who`` (the strategy asking).
    """

    def __init__(self, labelled: np.ndarray, labels: np.ndarray | None = None, *, who: str,
                 probs: torch.Tensor | None = None, logits: torch.Tensor | None = None,
                 embeddings: torch.Tensor | None = None, source_embeddings: torch.Tensor | None = None,
                 head: nn.Module | None = None, objective: Any = None, domain_logits: torch.Tensor | None = None,
                 unavailable: np.ndarray | None = None):
        super().__init__(labelled, labels, objective, unavailable)
        self.who = who
        self._given = {"probs": probs, "logits": logits, "embeddings": embeddings,
                       "source_embeddings": source_embeddings, "head": head}
        self.domain_logits = domain_logits

    def _get(self, name: str, what: str) -> Any:
        value = self._given[name]
        if value is None:
            raise ConfigError(f"{self.who} needs {name}= ({what}); pass it to adakit.select")
        return value

    @property
    def embeddings(self) -> torch.Tensor:
        """Features f (N, m) of the pool (bottleneck output, the head's input)."""
        return self._get("embeddings", "the pool's features f, shape (N, m): the classifier head's input")

    @property
    def logits(self) -> torch.Tensor:
        return self._get("logits", "the classifier's pre-softmax outputs, shape (N, C)")

    @cached_property
    def probs(self) -> torch.Tensor:
        if self._given["probs"] is not None:
            return self._given["probs"]
        if self._given["logits"] is None:
            raise ConfigError(f"{self.who} needs probs= (class probabilities, shape (N, C)) or logits=; "
                              "pass one to adakit.select")
        return super().probs

    @property
    def source_embeddings(self) -> torch.Tensor:
        return self._get("source_embeddings", "features of the source samples, shape (N_s, m)")

    @property
    def head(self) -> nn.Module:
        return self._get("head", "the classifier head mapping features to logits; or head_weight=, its (C, m) "
                                 "weight for a linear head")
