"""Deep embedded validation (DEV)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from adakit.params import Params
from adakit.registry import register_validator
from adakit.validate.base import Validator

#: inverse L2 strengths the domain classifier chooses from
DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


class DEVParams(Params):
    max_target: int = Field(20000, ge=10, description="target samples the domain classifier is fitted on "
                            "(a seeded random subset of a larger pool)")
    Cs: tuple[float, ...] = Field(DEFAULT_CS, min_length=1, description="inverse L2 strengths of the "
                                  "logistic-regression domain classifier; the one with the lowest out-of-fold "
                                  "domain log-loss is used")
    folds: int = Field(5, ge=2, description="cross-fitting folds: each held-out source sample is weighted by a "
                       "domain classifier fitted without it")


def dev_risk(weights: np.ndarray, losses: np.ndarray) -> float:
    """You et al. 2019, Algorithm 1: L = w·ℓ, η = −Cov(L, w)/Var(w), risk = mean(L) + η·mean(w) − η (Cov and Var
    with n − 1, as the released code). Weights without variance (one sample, or all equal) get η = 0."""
    w, wl = np.asarray(weights, dtype=np.float64), np.asarray(weights, dtype=np.float64) * np.asarray(losses)
    var = w.var(ddof=1) if len(w) > 1 else 0.0
    eta = 0.0 if var <= 0 else -np.cov(wl, w, ddof=1)[0, 1] / var
    return float(wl.mean() + eta * w.mean() - eta)


def density_ratio(source_embeddings: np.ndarray, embeddings: np.ndarray, max_target: int = 20000,
                  Cs: tuple[float, ...] = DEFAULT_CS, folds: int = 5) -> np.ndarray:
    """w(x) = p(target|x)/p(source|x)·ns/nt for each source sample, from a logistic-regression domain classifier
    (on standardised features) that never saw that sample: the source and target samples are split into
    ``folds`` domain-stratified parts (fewer if a domain has fewer samples) and each part's source samples are
    weighted by a classifier fitted on the other parts, ns/nt counting the samples it was fitted on (cross-fitting).
    C is the value of ``Cs`` whose out-of-fold predictions have the lowest domain log-loss over all samples (You et
    al. select the domain classifier on held-out domain accuracy). p(target|x) is clipped to [1e-6, 1 − 1e-6].
    Fewer than 2 source or target samples: NaN weights (nothing to fit a classifier without a sample on)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    xs = np.asarray(source_embeddings, dtype=np.float64)
    xt = np.asarray(embeddings, dtype=np.float64)
    if len(xt) > max_target:
        xt = xt[np.random.default_rng(0).choice(len(xt), max_target, replace=False)]
    k = min(folds, len(xs), len(xt))
    if k < 2:
        return np.full(len(xs), np.nan)
    x, y = np.concatenate([xs, xt]), np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    Cs = sorted(Cs)  # ascending: a tie in log-loss goes to the stronger regularisation
    oof = np.empty((len(Cs), len(x)))  # out-of-fold p(target|x) for each C
    ratio = np.empty(len(x))  # ns/nt of the classifier that predicted each sample
    for fit, held in StratifiedKFold(k, shuffle=True, random_state=0).split(x, y):
        scaler = StandardScaler().fit(x[fit])
        xf, xh = scaler.transform(x[fit]), scaler.transform(x[held])
        for i, c in enumerate(Cs):
            oof[i, held] = LogisticRegression(C=c, max_iter=1000).fit(xf, y[fit]).predict_proba(xh)[:, 1]
        ratio[held] = (y[fit] == 0).sum() / (y[fit] == 1).sum()
    p = np.clip(oof, 1e-6, 1 - 1e-6)
    log_loss = -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(1)
    pt = p[int(np.argmin(log_loss)), : len(xs)]
    return pt / (1 - pt) * ratio[: len(xs)]


@register_validator("dev")
class DeepEmbeddedValidation(Validator):
    """Deep embedded validation (You et al. 2019, Eq. 6–8 and Algorithm 1): −(importance-weighted cross-entropy on
    the held-out source split, with the control variate), weights from a domain classifier on the features.

    Higher is better (the negated risk). Needs ``data.source_val`` > 0. The domain classifier is a logistic
    regression of the held-out source features against the target pool's features, cross-fitted (`density_ratio`):
    every held-out sample is weighted by a classifier fitted without it, and the classifier's regularisation is
    chosen from ``Cs`` by out-of-fold domain log-loss. The control variate η is estimated from that split: with
    only a handful of held-out samples the estimate is noisy and can even be a negative risk, so give
    ``data.source_val`` a few dozen samples at least (fewer than 2: NaN, not recorded).

    Where adakit departs from the paper and its released code (which fit the domain classifier, an MLP, on the
    training source's features, pick its weight decay by domain accuracy on a held-out 20% of the features, and
    compute the weights on validation samples the classifier never saw):

    - the classifier is fitted on the held-out split itself (no extra pass over the training source), so each
      weight comes from the fold that left its sample out; with no shift the weights average about 1 (80 held-out
      samples of 256 features against 800 target samples, 5 draws: 1.00–1.01; a classifier fitted on the very
      samples it weights, as adakit did before, gave 0.07–2.0 there, and cross-fitting with a fixed C = 1
      15,000–27,000);
    - a logistic regression instead of the MLP, chosen by log-loss instead of accuracy (the weights use its
      probabilities, which accuracy does not judge);
    - p(target|x) is clipped to [1e-6, 1 − 1e-6], so each weight is bounded; the weights are not normalised;
    - where the weights have no variance (all equal), η = 0 and the risk is mean(w·ℓ) (η = −Cov/Var is
      undefined there);
    - ℓ is the cross-entropy, as in pytorch-adapt's DEV (the released code's docstring suggests the 0/1 error).
    """

    Params = DEVParams
    needs = ("source_probs", "source_labels", "source_embeddings", "embeddings")

    def score(self, *, source_probs: np.ndarray, source_labels: np.ndarray, source_embeddings: np.ndarray,
              embeddings: np.ndarray, **_) -> float:
        p = np.asarray(source_probs, dtype=np.float64)
        loss = -np.log(np.clip(p[np.arange(len(p)), np.asarray(source_labels, dtype=np.int64)], 1e-12, None))
        w = density_ratio(source_embeddings, embeddings, self.params.max_target, self.params.Cs,
                          self.params.folds)
        return -dev_risk(w, loss) if np.isfinite(w).all() else float("nan")

    def why_no_score(self, *, source_embeddings: np.ndarray, embeddings: np.ndarray, **_) -> str:
        return (f"it needs at least 2 held-out source samples (source_*=, {len(source_embeddings)} given) and 2 target "
                f"samples (embeddings=, {len(embeddings)} given) to fit its domain classifier without the sample "
                "it weights")
