"""Per-sample gradient embeddings, batched (SDM-G, SAGE), written once.

Everything here is computed for a whole block of samples in one tensor expression (closed form) or one
batched `torch.func` / autograd call; nothing loops over samples.

Notation (docs/methods.md): f ∈ R^m features, z = W f + b ∈ R^C logits of a linear head, p = softmax(z).
For any loss ℓ(z) of one sample, ∇_f ℓ = Wᵀ ∂ℓ/∂z, so per-sample feature gradients of a linear head are
one (N, C) @ (C, m) product of the closed-form logit gradients below. Heads that are not linear (the
cosine head of MME) go through one vector–Jacobian product of the head instead (`logit_grad_to_features`).

Derivations (checked against `torch.autograd.grad` in tests/query/test_gradients.py):

* Cross-entropy: ∂CE(z, y)/∂z = p − e_y.
* SDM margin loss on ẑ (ẑ = z/||z|| in the released code's form, ẑ = z with ``raw_logits``)::

      L(z, y) = w_ce·CE(z, y) + w_m·s·Σ_{i≠y} α_i·[m − ẑ_y + ẑ_i]_+ − w_max·ẑ_y,   s = 1/C or 1

  With a_i = 1[m − ẑ_y + ẑ_i > 0] (i ≠ y; the strict inequality of torch's multi-margin backward),
  ∂L/∂ẑ_i = w_m·s·k_i·a_i for i ≠ y and ∂L/∂ẑ_y = −w_m·s·Σ_{i≠y} k_i·a_i − w_max, where k_i = 1 (SDM),
  k_i = α_i (SDM-A, α detached) or 2α_i (SDM-A, α differentiated: α_i·h_i = h_i²/m). Through the
  normalisation ẑ = z/||z||: ∂L/∂z = (g − (g·ẑ) ẑ)/||z|| for g = ∂L/∂ẑ.
* Margin score Q = 1 − (p_1* − p_2*) (SDM Eq. 3), with the classes 1*, 2* held fixed: since
  ∂p_k/∂z = p_k(e_k − p), ∂Q/∂z = −p1·e_1* + p2·e_2* + (p1 − p2)·p. In feature space this is
  −p1·W1 + p2·W2 + (p1 − p2)·Σ_k p_k W_k; the released SDM code's version differs from it by the
  term +p1·p2·(W1 − W2), which we keep (docs/methods.md).
* Class-level discriminator d_c(f) = sigmoid(l_c(f)) (TSF / SAGE Eq. 3): g_c = −∂ log d_c/∂f =
  −(1 − d_c)·∂l_c/∂f; for a linear discriminator l = V f + a this is −(1 − d_c)·V_c, for a ReLU MLP
  ∂l/∂f = V_L·D_{L−1}·…·D_1·V_1 with D_k the diagonal of ReLU slopes at the sample (closed form).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-12  # F.normalize's default eps


@dataclass(frozen=True)
class MarginLossForm:
    """The SDM training loss whose gradient SDM-G uses (see `margin_loss_logit_grad`).

    Defaults are the released SDM code's form: CE + multi-margin (m = 1, mean over the C classes) on
    L2-normalised logits − mean normalised ground-truth logit, all weights 1, α_i = 1.
    """

    margin: float = 1.0
    raw_logits: bool = False
    ce_weight: float = 1.0
    margin_weight: float = 1.0
    max_logit_weight: float = 1.0
    class_mean: bool = True
    adaptive: bool = False  # SDM-A's α_i
    detach_alpha: bool = True
    label_smoothing: float = 0.0  # ε of the CE term (objective.label_smoothing)


def margin_loss_logit_grad(z: torch.Tensor, y: torch.Tensor, form: MarginLossForm = MarginLossForm()) -> torch.Tensor:
    """∂L(z_n, y_n)/∂z_n for every sample n (N, C): the per-sample (unreduced) SDM loss's logit gradient."""
    z = z.double()
    n, c = z.shape
    onehot = F.one_hot(y, c).to(z.dtype)
    if form.raw_logits:
        zh = z
        norm = None
    else:
        norm = z.norm(dim=1, keepdim=True).clamp_min(_EPS)
        zh = z / norm
    zy = (zh * onehot).sum(1, keepdim=True)
    hinge = (form.margin - zy + zh) * (1.0 - onehot)  # h_i, 0 at i = y
    active = (hinge > 0).to(z.dtype) * (1.0 - onehot)
    k = active
    if form.adaptive:
        alpha = hinge / form.margin  # α_i = 1 − (ẑ_y − ẑ_i)/m = h_i/m
        k = active * alpha * (1.0 if form.detach_alpha else 2.0)
    s = form.margin_weight / (c if form.class_mean else 1.0)
    g = s * k - onehot * (s * k.sum(1, keepdim=True) + form.max_logit_weight)
    if norm is not None:
        g = (g - (g * zh).sum(1, keepdim=True) * zh) / norm
    p = torch.softmax(z, dim=1)
    eps = form.label_smoothing  # smoothed CE: ∂/∂z = p − ((1 − ε)·onehot + ε/C)
    return (form.ce_weight * (p - (1.0 - eps) * onehot - eps / c) + g).float()


def margin_score_logit_grad(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact ∂Q/∂z (N, C) of Q = 1 − (p1 − p2), with the top-2 classes (top1, top2) it used."""
    top = p.topk(2, dim=1)
    p1, p2 = top.values[:, :1], top.values[:, 1:2]
    i1, i2 = top.indices[:, 0], top.indices[:, 1]
    c = p.shape[1]
    dq = (p1 - p2) * p - p1 * F.one_hot(i1, c).to(p.dtype) + p2 * F.one_hot(i2, c).to(p.dtype)
    return dq, i1, i2


def logit_grad_to_features(dz: torch.Tensor, weight: torch.Tensor | None = None, head: nn.Module | None = None,
                           f: torch.Tensor | None = None) -> torch.Tensor:
    """Map per-sample logit gradients (N, C) to feature gradients (N, m).

    Linear head (``weight`` W given): Wᵀ ∂ℓ/∂z for every row at once. Any other row-wise ``head`` (with
    ``f``): one vector–Jacobian product J_nᵀ·dz_n for all rows in a single autograd call (the head sees
    each row independently, so the batch VJP is the per-sample VJP).
    """
    if weight is not None:
        return dz @ weight.to(dz.dtype)
    if head is None or f is None:
        raise ValueError("logit_grad_to_features needs the head weight, or the head and the features")
    with torch.enable_grad():
        fr = f.detach().clone().requires_grad_(True)
        z = head(fr)
        (g,) = torch.autograd.grad(z, fr, grad_outputs=dz.to(z.dtype))
    return g


def head_on(head: nn.Module, device: torch.device | str = "cpu") -> tuple[torch.Tensor | None, nn.Module | None]:
    """(W, None) for a plain linear head, else (None, an eval-mode float copy of the head), on ``device``.

    The caller's head is never moved: W is a detached copy (or the weight itself when already there as
    float32), a non-linear head is deep-copied.
    """
    lin = linear_layer(head)
    if lin is not None:
        return lin.weight.detach().float().to(device), None
    h = copy.deepcopy(head).float().to(device).eval()
    for prm in h.parameters():
        prm.requires_grad_(False)
    return None, h


def linear_layer(module: nn.Module) -> nn.Linear | None:
    """The module itself if it is a plain linear layer (or a Sequential holding only one), else None."""
    layers = piecewise_linear_layers(module)
    if layers is not None and len(layers) == 1 and isinstance(layers[0], nn.Linear):
        return layers[0]
    return None


_PIECEWISE = (nn.Linear, nn.ReLU, nn.LeakyReLU)
_SKIPPED = (nn.Dropout, nn.Identity)  # identities in eval mode


def piecewise_linear_layers(module: nn.Module) -> list[nn.Module] | None:
    """The Linear / ReLU / LeakyReLU layers of a plain MLP (Sequential, or adakit's `Discriminator`), else None.

    Dropout and Identity are skipped (identities in eval mode). Anything else returns None.
    """
    from adakit.models.discriminators import Discriminator  # the field's MLP discriminator

    if isinstance(module, _SKIPPED):
        return []
    if isinstance(module, _PIECEWISE) and type(module).forward is _base_forward(module):
        return [module]
    if type(module) is nn.Sequential:
        out: list[nn.Module] = []
        for child in module:
            sub = piecewise_linear_layers(child)
            if sub is None:
                return None
            out += sub
        return out
    if isinstance(module, Discriminator) and type(module).forward is Discriminator.forward:
        return piecewise_linear_layers(module.net)
    return None


def _base_forward(module: nn.Module):
    return next(c.forward for c in _PIECEWISE if isinstance(module, c))


def _mlp_log_sigmoid_jacobian(layers: list[nn.Module], f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form Jacobian of l(f) for a piecewise-linear MLP: J_n = V_L·D_{L−1,n}·…·D_{1,n}·V_1 (N, C, m).

    D_k,n = diag(σ'(pre-activation)) (1 where > 0, else 0 for ReLU / the negative slope for LeakyReLU,
    torch's convention at 0). The product runs from the cheaper end: from the output (C rows) when C ≤ m,
    from the input (m columns) otherwise. Returns (J, logits).
    """
    h = f
    slopes: list[torch.Tensor | None] = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            h = layer(h)
            slopes.append(None)
        else:
            neg = layer.negative_slope if isinstance(layer, nn.LeakyReLU) else 0.0
            slopes.append(torch.where(h > 0, torch.ones_like(h), torch.full_like(h, neg)))
            h = layer(h)
    logits = h
    n, c, m = len(f), logits.shape[1], f.shape[1]
    acc: torch.Tensor | None = None
    if c <= m:  # reverse accumulation: rows of V_L, then ·D, ·V going down
        for layer, slope in zip(reversed(layers), reversed(slopes)):
            if slope is None:
                acc = layer.weight if acc is None else acc @ layer.weight
            else:  # an activation last: its diagonal D_L (N, C, C) starts the product
                acc = torch.diag_embed(slope) if acc is None else acc * slope.unsqueeze(1)
    else:  # forward accumulation: columns of V_1, then D·, V· going up
        for layer, slope in zip(layers, slopes):
            if slope is None:
                acc = layer.weight if acc is None else torch.matmul(layer.weight, acc)
            else:  # an activation first: its diagonal D_1 (N, m, m) starts the product
                acc = torch.diag_embed(slope) if acc is None else slope.unsqueeze(2) * acc
    if acc is None:  # no layer at all: identity map (C = m)
        acc = torch.eye(m, dtype=f.dtype, device=f.device)
    return acc.expand(n, c, m) if acc.dim() == 2 else acc, logits


def class_discriminator_gradients(disc: nn.Module, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g_c = −∂ log d_c(f)/∂f for every sample and class: (N, C, m), and d (N, C) = sigmoid(disc(f)).

    Since ∂ log sigmoid(l_c)/∂f = (1 − d_c)·∂l_c/∂f, g_c = −(1 − d_c)·J_c with J the Jacobian of the logits.
    Linear or ReLU-MLP discriminators (adakit's `Discriminator`, or a Sequential of Linear / ReLU /
    LeakyReLU / Dropout): J in closed form, V_L·D_{L−1}·…·D_1·V_1 for the whole block at once (the linear
    case is −(1 − d_c)·V_c). Any other module: one `torch.func.vmap(jacrev(...))` call (`jacfwd` when
    m < C) over the block; if torch.func cannot trace it (e.g. a custom autograd.Function inside), C
    batched autograd calls, one per class (never one per sample). The module runs in eval mode (dropout
    off, batch norm on running statistics, hence row-wise); its training mode is restored afterwards.
    The discriminator must map f to logits without a gradient-reversal layer inside (docs/architecture.md).
    """
    was_training = disc.training
    disc.eval()
    try:
        prm = next(disc.parameters(), None)
        f = f.detach() if prm is None else f.detach().to(prm.device, prm.dtype)
        layers = piecewise_linear_layers(disc)
        if layers is not None:
            with torch.no_grad():
                jac, logits = _mlp_log_sigmoid_jacobian(layers, f)
                d = torch.sigmoid(logits)
                return -(1.0 - d).unsqueeze(2) * jac, d
        with torch.no_grad():
            d = torch.sigmoid(disc(f))

        def log_d(x: torch.Tensor) -> torch.Tensor:
            return F.logsigmoid(disc(x.unsqueeze(0))).squeeze(0)

        # reverse mode costs C vector-Jacobian products per sample, forward mode m; use the cheaper
        jac_fn = torch.func.jacrev if d.shape[1] <= f.shape[1] else torch.func.jacfwd
        try:
            with warnings.catch_warnings():  # torch's forward-mode decompositions still call torch.jit.script
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
                jac = torch.func.vmap(jac_fn(log_d))(f)
        except Exception:  # noqa: BLE001 - modules torch.func cannot trace: one autograd call per class
            with torch.enable_grad():
                fr = f.clone().requires_grad_(True)
                logd = F.logsigmoid(disc(fr))
                jac = torch.stack([torch.autograd.grad(logd[:, c].sum(), fr, retain_graph=True)[0]
                                   for c in range(logd.shape[1])], dim=1)
        return -jac.detach(), d
    finally:
        disc.train(was_training)
