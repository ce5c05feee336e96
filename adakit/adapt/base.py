"""Objective: turns one step's source / labelled-target / unlabelled-target outputs into loss terms.

The `Trainer` draws the batches, runs the model once over their concatenation and hands the
`Batch` (inputs, labels, sample indices, features f and logits z of each part) to the objective,
which returns named terms, e.g. ``{"ce_source": ..., "ce_target": ..., "transfer": ...}``; their sum
is minimised. An objective owns its extra modules (discriminators, centroid memories); their
parameters are trained at the new-layer learning rate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from adakit.adapt._regularizers import adversarial_entropy, domain_adversarial_loss, source_rows
from adakit.errors import ConfigError, DataError
from adakit.models.discriminators import DomainDiscriminator
from adakit.models.heads import CosineHead
from adakit.params import Params


@dataclass
class Batch:
    """One training step. ``s``: source (+ labelled target under S∪T), ``l``: labelled target (S+T),
    ``u``: unlabelled target. Indices refer to the source domain / target pool."""

    xs: torch.Tensor
    ys: torch.Tensor
    idx_s: torch.Tensor
    xl: torch.Tensor | None = None
    yl: torch.Tensor | None = None
    idx_l: torch.Tensor | None = None
    xu: torch.Tensor | None = None
    idx_u: torch.Tensor | None = None
    # filled by the trainer's forward pass
    fs: torch.Tensor | None = None
    zs: torch.Tensor | None = None
    fl: torch.Tensor | None = None
    zl: torch.Tensor | None = None
    fu: torch.Tensor | None = None
    zu: torch.Tensor | None = None
    # True where a row of xs is a labelled target sample (S∪T)
    target_in_s: torch.Tensor | None = None
    # ``probe_domain`` beside an objective that uses no unlabelled target (`Objective.probe_pass`): the probe's
    # features of the source rows and of the unlabelled batch, from the trainer's separate no-grad eval-mode pass
    probe_fs: torch.Tensor | None = None
    probe_fu: torch.Tensor | None = None


class ObjectiveParams(Params):
    """Parameters every objective has: the SSDA regulariser Ω on the target (SAGE §3.5, Eq. 10)."""

    omega: Literal["none", "mme"] = Field(
        "none", description="regulariser Ω added to the objective: 'mme' = MME's minimax entropy on the unlabelled "
                            "target (switches the model to the cosine head); S∪T / S+T is train.labelled_target")
    entropy_weight: float = Field(0.1, ge=0, description="with omega=mme: weight λ of the entropy term (MME: 0.1)")
    entropy_grl_coeff: float = Field(1.0, ge=0, description="with omega=mme: gradient reversal coefficient "
                                                            "(MME code: eta = 1, constant)")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="ε of the cross-entropy on labelled samples "
                                                              "(source and target): the target is (1 − ε)·one-hot + "
                                                              "ε/C (Szegedy et al. 2016; SHOT's source model: 0.1)")
    probe_domain: bool = Field(False, description="train a domain discriminator on detached features beside the "
                                                  "objective (no gradient reaches the model; beside an objective "
                                                  "that uses no unlabelled target the probe has its own eval-mode "
                                                  "pass, so the model trains as without it), so that strategies "
                                                  "needing one (aada) run with any objective")


#: `Objective.losses` in training mode: calls in a row in which the objective's parameters hold gradients but do not
#: change before adakit says that the optimizer lacks them (more than gradient accumulation spans), and the calls
#: after which it stops looking
UNSTEPPED_CALLS = 50
CHECKED_CALLS = 1000


class Objective(nn.Module):
    """Base objective: cross-entropy on source and labelled target (fine-tuning), plus the optional Ω_MME."""

    Params = ObjectiveParams
    #: the trainer draws unlabelled target batches only for objectives that use them
    uses_unlabelled: bool = False
    #: labelled target samples are trained on (False: source only)
    uses_labelled: bool = True
    #: what strategies may ask of this objective (e.g. "domain_discriminator")
    provides: frozenset[str] = frozenset()
    #: head the model must have ("cosine" for MME); None leaves model.head as configured
    required_head: str | None = None
    #: keeps a memory per target pool sample (BIWAA's aggregated targets): needs ``pool_size`` at construction and
    #: the pool positions of the unlabelled batch (``Batch.idx_u``)
    per_sample_memory: bool = False
    #: True when only the ``probe_domain`` discriminator uses the unlabelled target batch: the trainer then keeps
    #: that batch out of the model's training pass (so it never enters batch-norm statistics) and hands the probe
    #: features from a separate no-grad pass in eval mode (``Batch.probe_fs`` / ``probe_fu``)
    probe_pass: bool = False

    def __init__(self, params: Params, feature_dim: int, num_classes: int, pool_size: int = 0):
        super().__init__()
        self.params = params
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.pool_size = pool_size  # target pool size, for per-sample memories (BIWAA)
        if params.omega == "mme":
            self.uses_unlabelled = True
        self._probing = params.probe_domain and "domain_discriminator" not in type(self).provides
        if self._probing:
            self.domain_discriminator = DomainDiscriminator(feature_dim)
            self.probe_pass = not self.uses_unlabelled  # nothing else needs the unlabelled rows in the model's pass
            self.uses_unlabelled = True

    @classmethod
    def provides_for(cls, params: ObjectiveParams) -> frozenset[str]:
        """What strategies may ask of this objective under these parameters."""
        return cls.provides | {"domain_discriminator"} if params.probe_domain else cls.provides

    @classmethod
    def head_for(cls, params: ObjectiveParams) -> str | None:
        """The head the model must have under these parameters (None: leave ``model.head`` as configured)."""
        if params.omega != "mme":
            return cls.required_head
        if cls.required_head not in (None, "cosine"):
            raise ConfigError(f"objective.omega=mme needs the cosine head, but this objective needs the "
                              f"{cls.required_head!r} head; use objective.omega=none")
        return "cosine"

    def classification_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The supervised loss of logits ``z`` (N, C) against class indices ``y``: cross-entropy with the
        objective's ``label_smoothing`` (SDM's margin loss overrides it)."""
        return F.cross_entropy(z, y, label_smoothing=self.params.label_smoothing)

    def supervised_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``ce_source`` on the source batch and, when the batch has labelled target rows, ``ce_target`` on them
        (`classification_loss` each)."""
        terms = {"ce_source": self.classification_loss(batch.zs, batch.ys)}
        if batch.zl is not None and len(batch.zl):
            terms["ce_target"] = self.classification_loss(batch.zl, batch.yl)
        return terms

    def transfer_terms(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        """Adaptation terms; ``progress`` runs from 0 to 1 over the current fit."""
        return {}

    def omega_terms(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Ω_MME (``omega=mme``): ``mme_entropy`` = −λ·mean H(softmax(head(R(f_u)))) on the unlabelled target batch,
        R the gradient reversal with a constant coefficient (MME, Saito et al. ICCV 2019, Eq. 4-6; SAGE Eq. 10).
        Descending it raises H through the head and lowers H through the features."""
        if self.params.omega != "mme":
            return {}
        p = self.params
        return {"mme_entropy": adversarial_entropy(model.head, batch.fu, p.entropy_weight, p.entropy_grl_coeff)}

    def probe_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``probe_domain``: ``domain_probe`` = ½(BCE_S(d(f), 1) + BCE_T(d(f), 0)) on **detached** source and
        unlabelled target features: the discriminator learns P(source | f) of the model being trained (what
        AADA's weight (1 − d)/d needs) without the adversarial gradient DANN sends to the features.

        With `probe_pass` (an objective that uses no unlabelled target, e.g. fine-tuning) the features come from
        the trainer's separate eval-mode pass (``batch.probe_fs`` / ``probe_fu``): the features strategies score,
        and the model trains exactly as without the probe. Otherwise (MME, CDAN...) the unlabelled batch is in
        the model's pass anyway and its training-mode features are used."""
        if not self._probing:
            return {}
        if batch.probe_fs is not None and batch.probe_fu is not None:
            fs, fu = batch.probe_fs.detach(), batch.probe_fu.detach()
        else:
            fs, fu = batch.fs[source_rows(batch)].detach(), batch.fu.detach()
        return {"domain_probe": domain_adversarial_loss(self.domain_discriminator, fs, fu, 1.0)}

    def forward(self, model: nn.Module, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for part in (self.supervised_terms(batch), self.transfer_terms(model, batch, progress),
                     self.omega_terms(model, batch), self.probe_terms(batch)):
            for k, v in part.items():
                if k in terms:  # (a term of the same name would silently replace, e.g., ce_target)
                    raise ConfigError(f"objective {getattr(self, 'name', type(self).__name__)!r}: two of its parts "
                                      f"return a loss term named {k!r}; give the transfer term another name")
                if not (isinstance(v, torch.Tensor) and v.dim() == 0 and v.is_floating_point()):
                    got = f"a tensor of shape {tuple(v.shape)}, {v.dtype}" if isinstance(v, torch.Tensor) else repr(v)
                    raise ConfigError(f"objective {getattr(self, 'name', type(self).__name__)!r}: loss term {k!r} "
                                      f"must be a 0-dim floating-point tensor (e.g. a .mean()), got {got}")
                terms[k] = v
        return terms

    def losses(self, *, source_features: torch.Tensor, source_logits: torch.Tensor, source_labels: Any,
               target_features: torch.Tensor | None = None, target_logits: torch.Tensor | None = None,
               target_indices: Any = None, labelled_features: torch.Tensor | None = None,
               labelled_logits: torch.Tensor | None = None, labelled_labels: Any = None,
               progress: float, head: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """The objective's loss terms on one batch of your own training loop (their sum is the loss).

        ``source_*``: features f (the head's input), logits z = head(f) and class indices of the labelled source
        rows; ``target_*``: f and z of a batch of unlabelled target rows (every objective that adapts needs
        them), ``target_indices`` their positions in the target pool (BIWAA's per-sample memory, built with
        ``pool_size``); ``labelled_*``: labelled target rows (S+T; fine-tuning's ``ce_target``). ``progress``:
        the fraction of training done, 0 → 1 (the gradient-reversal schedules). ``head``: your classifier head
        (MME and ``omega='mme'``: a cosine head such as `adakit.models.heads.CosineHead`; BIWAA: the linear head,
        whose weight it reads). Features keep their graph: the adversarial terms send their (reversed)
        gradients into your network. Returns named terms (``ce_source``, ``adversarial``, ...), as a run logs
        them. Bad shapes, labels or a missing part are a `ConfigError` / `DataError` before any computation.
        """
        batch = _own_batch(self, locals())  # (checks head= for the objectives that read it: MME, BIWAA)
        self._check_stepped()
        return self(SimpleNamespace(head=head), batch, float(progress))

    def _check_stepped(self) -> None:
        """Warns once when the objective's parameters got gradients but did not change over `UNSTEPPED_CALLS`
        training calls of `losses` in a row: the optimizer of your loop lacks them, so the discriminators stay as
        built while the features get their reversed gradients. Compares the parameters' sums (the fused kernels
        leave version counters as they were); stops at the first change, the warning or `CHECKED_CALLS` calls."""
        seen = self.__dict__.setdefault("_stepped", {"calls": 0, "stale": 0, "sums": None, "done": False})
        params = [p for p in self.parameters() if p.requires_grad]
        if seen["done"] or not params or not self.training or not torch.is_grad_enabled():
            return
        sums = torch.stack([p.detach().sum(dtype=torch.float64 if p.device.type != "mps" else torch.float32).cpu()
                            for p in params])  # (MPS has no float64)
        previous, seen["sums"] = seen["sums"], sums
        seen["calls"] += 1
        if previous is not None and not torch.equal(previous, sums) or seen["calls"] >= CHECKED_CALLS:
            seen["done"] = True  # an optimizer steps them (or it is long enough to stop looking)
        elif previous is not None and any(p.grad is not None for p in params):
            seen["stale"] += 1
            if seen["stale"] >= UNSTEPPED_CALLS:
                seen["done"] = True
                name = getattr(self, "name", type(self).__name__)
                warnings.warn(f"{name}.losses(): the objective's parameters (its discriminators) got gradients but "
                              f"did not change in {UNSTEPPED_CALLS} training steps: your optimizer does not hold "
                              "them, so they stay as built. Put them in it beside your model's, e.g. "
                              "torch.optim.SGD([*model.parameters(), *objective.parameters()], ...) (to keep them "
                              "as they are on purpose, call objective.requires_grad_(False))", UserWarning,
                              stacklevel=3)

    def on_round_start(self, round_index: int) -> None:
        """Hook called before each fit (warm-up is round 0)."""


def _own_batch(obj: Objective, given: dict[str, Any]) -> Batch:
    """The `Batch` of `Objective.losses`'s keywords, checked (shapes, label range, devices, what is needed)."""
    who = f"{getattr(obj, 'name', type(obj).__name__)}.losses()"
    m, c = obj.feature_dim, obj.num_classes

    ref = next((p for p in obj.parameters()), None)
    # an objective without parameters (fine-tuning, SDM, MME) is held to the source features' dtype and device
    ref_name = "the objective's parameters"
    if ref is None and isinstance(given["source_features"], torch.Tensor):
        ref, ref_name = given["source_features"], "source_features="

    def part(prefix: str, required: bool, why: str = "") -> tuple | None:
        f, z = given[f"{prefix}_features"], given[f"{prefix}_logits"]
        y = given.get(f"{prefix}_labels")
        if f is None and z is None and y is None:
            if required:
                raise ConfigError(f"{who} needs {prefix}_features= and {prefix}_logits={why}")
            return None
        for key, t, width in ((f"{prefix}_features", f, m), (f"{prefix}_logits", z, c)):
            if t is None:
                other = f"{prefix}_logits" if key.endswith("features") else f"{prefix}_features"
                raise ConfigError(f"{who} needs {key}= with {other}=")
            if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[1] != width:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise DataError(f"{who}: {key}= must be a (N, {width}) tensor (the objective was built with "
                                f"feature_dim={m}, num_classes={c}), got {shape}{_shape_hint(t, key, width)}")
            if not t.is_floating_point():
                raise DataError(f"{who}: {key}= must be floating-point (the model's outputs), got {t.dtype}")
            if ref is not None and t.device != ref.device:
                raise ConfigError(f"{who}: {key}= is on {t.device}, {ref_name} on {ref.device}; "
                                  + (f"call objective.to({str(t.device)!r})" if ref_name != "source_features="
                                     else "put every tensor on one device"))
            if ref is not None and t.dtype != ref.dtype and not torch.is_autocast_enabled(t.device.type):
                fix = (f"call objective.to({t.dtype}) as for your model" if ref_name != "source_features="
                       else "give them one dtype")
                raise ConfigError(f"{who}: {key}= is {t.dtype}, {ref_name} {ref.dtype}; {fix}, or compute "
                                  "under torch.autocast")
        if len(f) != len(z):
            raise DataError(f"{who}: {prefix}_features= has {len(f)} rows, {prefix}_logits= {len(z)}")
        if len(f) == 0:
            if prefix == "labelled":  # no labelled target row yet: as if none were given
                return None
            raise DataError(f"{who}: {prefix}_features= is empty")
        if prefix == "target":
            return f, z
        if y is None:
            raise ConfigError(f"{who} needs {prefix}_labels= (class indices) with {prefix}_features=")
        y = _integers(y, f"{prefix}_labels", who, f.device)
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (len(f),):
            raise DataError(f"{who}: {prefix}_labels= must be {len(f)} integer class indices, got dtype {y.dtype}, "
                            f"shape {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= c):
            raise DataError(f"{who}: {prefix}_labels= must lie in 0..{c - 1}, got {int(y.min())}..{int(y.max())}")
        return f, z, y.long()

    progress = given["progress"]
    try:
        progress = float(progress) if not isinstance(progress, bool) else None
    except (TypeError, ValueError, RuntimeError):  # (a tensor of several values)
        progress = None
    if progress is None or not 0 <= progress <= 1:
        raise ConfigError(f"{who}: progress= is the fraction of training done, a number in [0, 1]; got "
                          f"{given['progress']!r}")
    fs, zs, ys = part("source", True)
    why = (" (a batch of unlabelled target rows): the domain probe (probe_domain) learns from it"
           if getattr(obj, "_probing", False) and not type(obj).uses_unlabelled
           else " (a batch of unlabelled target rows): it adapts to the target")
    target = part("target", obj.uses_unlabelled, why)
    labelled = part("labelled", False) if obj.uses_labelled else None
    b = Batch(xs=fs, ys=ys, idx_s=torch.arange(len(fs)), fs=fs, zs=zs)
    if labelled is not None:
        b.fl, b.zl, b.yl = labelled
    if target is not None:
        b.fu, b.zu = target
        idx = given["target_indices"]
        memory = getattr(obj, "pool_size", 0)
        if idx is None and obj.per_sample_memory:
            raise ConfigError(f"{who} needs target_indices= (each target row's position in the pool, for its "
                              f"per-sample memory of {memory} rows: build it with pool_size=)")
        if idx is not None:
            idx = _integers(idx, "target_indices", who)
            if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.shape != (len(b.fu),):
                raise DataError(f"{who}: target_indices= must be {len(b.fu)} integer pool positions, got dtype "
                                f"{idx.dtype}, shape {tuple(idx.shape)}")
            if obj.per_sample_memory and (int(idx.min()) < 0 or int(idx.max()) >= memory):
                raise DataError(f"{who}: target_indices= must lie in 0..{memory - 1} (pool_size={memory}), got "
                                f"{int(idx.min())}..{int(idx.max())}")
            b.idx_u = idx.long()
    head = given["head"]
    need = obj.head_for(obj.params)
    if need is not None and head is None:
        raise ConfigError(f"{who} needs head= (your {need} classifier head: "
                          + ("adakit.models.heads.CosineHead, as MME defines it)" if need == "cosine"
                             else "the nn.Linear mapping features to logits, whose weight it reads)"))
    weight = getattr(head, "weight", None)
    if need == "linear" and head is not None and (isinstance(head, CosineHead) or not isinstance(weight, torch.Tensor)):
        raise ConfigError(f"{who}: head= must be the linear head mapping features to logits (it reads W and b, "
                          f"whose gradient form holds for a linear head only), got {type(head).__name__}")
    if need is not None and isinstance(weight, torch.Tensor) and tuple(weight.shape) != (c, m):
        raise ConfigError(f"{who}: head= has a {tuple(weight.shape)} weight; the objective was built for "
                          f"feature_dim={m}, num_classes={c}, so it needs a ({c}, {m}) one")
    head_param = next(head.parameters(), None) if isinstance(head, nn.Module) and need is not None else None
    if head_param is not None and ref is not None and (head_param.device != ref.device or (
            head_param.dtype != ref.dtype and not torch.is_autocast_enabled(ref.device.type))):
        raise ConfigError(f"{who}: head= is {head_param.dtype} on {head_param.device}, {ref_name} {ref.dtype} on "
                          f"{ref.device}; pass the head of the model that computed the features")
    if need == "cosine" and head is not None and not isinstance(head, CosineHead):
        warnings.warn(f"{who}: MME's entropy term is defined on a cosine head (adakit.models.heads.CosineHead); "
                      f"head= is a {type(head).__name__}", UserWarning, stacklevel=3)
    return b


def _shape_hint(t: Any, key: str, width: int) -> str:
    """What to pass instead of ``t`` for ``key``, when it looks like a model's output passed as it comes."""
    if isinstance(t, tuple | list):
        return "; your model returns several outputs: pass each tensor to its keyword"
    if isinstance(t, dict):
        return f"; your model returns a dict: pass the tensor of its {key.rpartition('_')[2]}"
    if isinstance(t, torch.Tensor) and t.dim() > 2 and key.endswith("features"):
        return ("; pool or flatten feature maps to (N, m) as your head reads them (e.g. torch.flatten(f, 1) after "
                "global average pooling)")
    if isinstance(t, torch.Tensor) and t.dim() == 1 and len(t) == width:
        return "; a single sample is a batch of one: pass t.unsqueeze(0)"
    return ""


def _integers(values: Any, key: str, who: str, device: torch.device | None = None) -> torch.Tensor:
    """``values`` (tensor, array, list) as an int64 tensor when they are integers (unsigned too); other dtypes
    are returned for the caller's check, unconvertible values are a `DataError` naming ``key``."""
    try:
        t = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values, device=device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{who}: {key}= must be integers, got {type(values).__name__} ({e})") from None
    if t.dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.int8, torch.int16, torch.int32):
        t = t.long()
    return t
