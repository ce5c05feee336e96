"""Deep embedded validation (DEV)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from adakit.params import Params
from adakit.registry import register_validator
from adakit.validate.base import Validator


class DEVParams(Params):
    max_target: int = Field(20000, ge=10, description="target samples the domain classifier is fitted on "
                            "(a seeded random subset of a larger pool)")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic-regression domain classifier")


def dev_risk(weights: np.ndarray, losses: np.ndarray) -> float:
    """You et al. 2019, Algorithm 1: L = w·ℓ, η = −Cov(L, w)/Var(w), risk = mean(L) + η·mean(w) − η (Cov and Var
    with n − 1, as the released code). Weights without variance (one sample, or all equal) get η = 0."""
    w, wl = np.asarray(weights, dtype=np.float64), np.asarray(weights, dtype=np.float64) * np.asarray(losses)
    var = w.var(ddof=1) if len(w) > 1 else 0.0
    eta = 0.0 if var <= 0 else -np.cov(wl, w, ddof=1)[0, 1] / var
    return float(wl.mean() + eta * w.mean() - eta)


def density_ratio(source_embeddings: np.ndarray, embeddings: np.ndarray, max_target: int = 20000,
                  C: float = 1.0) -> np.ndarray:
    """w(x) = p(target|x)/p(source|x)·ns/nt on the source samples, from a logistic-regression domain classifier
    fitted on the (standardised) source and target features: the same source samples it weights (in-sample),
    nt counting the target samples it was fitted on; p(target|x) clipped to [1e-6, 1 − 1e-6]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs = np.asarray(source_embeddings, dtype=np.float64)
    xt = np.asarray(embeddings, dtype=np.float64)
    if len(xt) > max_target:
        xt = xt[np.random.default_rng(0).choice(len(xt), max_target, replace=False)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    clf.fit(np.concatenate([xs, xt]), np.r_[np.zeros(len(xs)), np.ones(len(xt))])
    pt = np.clip(clf.predict_proba(xs)[:, 1], 1e-6, 1 - 1e-6)
    return pt / (1 - pt) * len(xs) / len(xt)


@register_validator("dev")
class DeepEmbeddedValidation(Validator):
    """Deep embedded validation (You et al. 2019, Eq. 6–8 and Algorithm 1): −(importance-weighted cross-entropy on
    the held-out source split, with the control variate), weights from a domain classifier on the features.

    Higher is better (the negated risk). Needs ``data.source_val`` > 0. The domain classifier is a logistic
    regression fitted on the held-out source features against the target pool's features (the paper fits it
    on the training source; adakit uses only the held-out split, so no extra pass over the source is needed).
    The control variate η is estimated from that split: with only a handful of held-out samples the estimate is
    noisy and can even be a negative risk, so give ``data.source_val`` a few dozen samples at least.

    Where adakit departs from the paper and its released code (which fit the domain classifier on the training
    source's features, pick its regularisation by domain accuracy on a held-out 20% of the features, and compute
    the weights on validation samples the classifier never saw):

    - the weights are in-sample: the classifier is fitted on the very samples it weights. With few held-out
      samples in many dimensions it separates them from the target and their weights fall well below 1 (no
      shift at all, 80 samples, 256 features: mean weight 0.03–0.6 over 5 draws, where 1 is right; 280 samples:
      about 1). The control variate, which assumes E[w] = 1, corrects much of this but not all of it;
    - its regularisation is fixed (``C``, default 1), not selected;
    - p(target|x) is clipped to [1e-6, 1 − 1e-6], so each weight is bounded; the weights are not normalised;
    - where the weights have no variance (one held-out sample, or all equal), η = 0 and the risk is mean(w·ℓ)
      (η = −Cov/Var is undefined there);
    - ℓ is the cross-entropy, as in pytorch-adapt's DEV (the released code's docstring suggests the 0/1 error).
    """

    Params = DEVParams
    needs = ("source_probs", "source_labels", "source_embeddings", "embeddings")

    def score(self, *, source_probs: np.ndarray, source_labels: np.ndarray, source_embeddings: np.ndarray,
              embeddings: np.ndarray, **_) -> float:
        p = np.asarray(source_probs, dtype=np.float64)
        loss = -np.log(np.clip(p[np.arange(len(p)), np.asarray(source_labels, dtype=np.int64)], 1e-12, None))
        w = density_ratio(source_embeddings, embeddings, self.params.max_target, self.params.C)
        return -dev_risk(w, loss)
