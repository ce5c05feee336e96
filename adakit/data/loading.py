"""Batches of a domain, each loaded by ``Domain.load``, optionally ahead in DataLoader worker processes.

One batch per key (an index array): with ``workers`` > 0 the batches are loaded in that many worker processes
(image files decoded in parallel) and, with ``pin``, land in pinned host memory so that the copy to a GPU overlaps
the computation. Used by the training loop (source, labelled and unlabelled target batches: one set of workers
per stream) and by `adakit.inference.forward_domain` (the run's passes over the pool, test set, source
validation split and LAA's anchor features; not `adakit predict`, which loads in its own process). Without
workers the batches are loaded lazily in this process, in order. Augmentation draws of training batches come
from each worker's torch generator (seeded by the DataLoader from the main process's), so a run is reproducible
for a given ``workers`` but its draws differ from the ``workers=0`` ones. Evaluation batches (``train=False``)
draw nothing from the main process's generator (their DataLoader has a fixed one of its own), so a pass over a
domain leaves training's random stream as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from adakit.data.domain import Domain
from adakit.errors import AdakitError


def load_batch(domain: Domain, keys: np.ndarray, train: bool = False) -> torch.Tensor:
    """``domain.load(keys)``; an empty ``keys`` (a rank's share of a batch smaller than the world) gives an empty
    batch of the domain's input shape."""
    if len(keys) == 0:
        return domain.load(np.zeros(1, dtype=np.int64))[:0]
    return domain.load(keys, train=train)


class _Batches(torch.utils.data.Dataset):
    """One batch per key, so DataLoader workers can load image files."""

    def __init__(self, domain: Domain, keys: Sequence[np.ndarray], train: bool):
        self.domain, self.keys, self.train = domain, keys, train

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor | AdakitError:
        try:
            return load_batch(self.domain, self.keys[i], self.train)
        except AdakitError as e:  # returned, and raised by `batches` in the main process as it is (torch would wrap
            return e              # it in "Caught DataError in DataLoader worker process 0" and the traceback)


def _raising(loaded: Iterator) -> Iterator[torch.Tensor]:
    """The batches of ``loaded``, raising an error a worker returned (`_Batches`) as the error itself."""
    for batch in loaded:
        if isinstance(batch, AdakitError):
            raise batch
        yield batch


def batches(domain: Domain, keys: Sequence[np.ndarray], workers: int = 0, pin: bool = False,
            train: bool = False) -> Iterator[torch.Tensor]:
    """The batches ``domain.load(k)`` for each ``k`` in ``keys``, in order (see the module docstring)."""
    if workers == 0 or len(keys) == 0:
        return (load_batch(domain, k, train) for k in keys)
    own = None if train else torch.Generator().manual_seed(0)  # the workers' seeds, drawn from it, not the global
    loader = torch.utils.data.DataLoader(_Batches(domain, keys, train), batch_size=None, shuffle=False,
                                         num_workers=min(workers, len(keys)), persistent_workers=False,
                                         pin_memory=pin, generator=own)
    return _raising(iter(loader))  # (the iterator, so the workers' seeds are drawn now, as before)
