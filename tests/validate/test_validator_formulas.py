"""Every validator's formula against a hand computation on tiny inputs, through `adakit.validate`."""

import math

import numpy as np
import pytest

import adakit
from adakit.errors import ConfigError, DataError
from adakit.registry import VALIDATORS
from adakit.validate.dev import dev_risk
from adakit.validate.snd import soft_neighbourhood_density

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])


def h(row):
    return -sum(x * math.log(x) for x in row if x > 0)


def test_entropy_and_im_by_hand():
    mean_h = sum(h(r) for r in P) / 4
    assert adakit.validate("entropy", probs=P) == pytest.approx(-mean_h)
    pbar = [sum(r[c] for r in P) / 4 for c in range(3)]  # (0.425, 0.4, 0.175)
    assert adakit.validate("im", probs=P) == pytest.approx(h(pbar) - mean_h)
    # one-hot predictions spread over all classes: IM = log C, entropy = 0 (its maximum)
    onehot = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    assert adakit.validate("im", probs=onehot) == pytest.approx(math.log(3))
    assert adakit.validate("entropy", probs=onehot) == pytest.approx(0.0)


def test_bnm_is_the_nuclear_norm_over_n():
    # P = diag-like 2x2 example: singular values of [[1, 0], [0, 1], [0.5, 0.5]] are sqrt(1.5 ± 0.5)... by hand:
    # PᵀP = [[1.25, 0.25], [0.25, 1.25]] with eigenvalues 1.5 and 1.0, so ‖P‖_* = √1.5 + 1 and BNM = (√1.5 + 1)/3
    p = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert adakit.validate("bnm", probs=p) == pytest.approx((math.sqrt(1.5) + 1) / 3)
    # collapse onto one class lowers it: rank 1, ‖P‖_* = ‖P‖_F = √3, over N = 3
    assert adakit.validate("bnm", probs=np.array([[1.0, 0.0]] * 3)) == pytest.approx(math.sqrt(3) / 3)


def test_snd_by_hand_and_blocked_equals_unblocked():
    tau = 0.05
    norm = [np.array(r) / np.linalg.norm(r) for r in P]
    ents = []
    for i in range(4):
        s = [float(norm[i] @ norm[j]) / tau for j in range(4) if j != i]
        z = [math.exp(x - max(s)) for x in s]
        q = [x / sum(z) for x in z]
        ents.append(h(q))
    expected = sum(ents) / 4
    assert adakit.validate("snd", probs=P) == pytest.approx(expected, rel=1e-4)
    # one row per block (the streaming path) gives the same number
    assert soft_neighbourhood_density(P, tau, block_elements=1) == pytest.approx(expected, rel=1e-4)
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(5), size=300)
    assert soft_neighbourhood_density(q, block_elements=7 * 7) == pytest.approx(
        soft_neighbourhood_density(q), rel=1e-5)
    assert adakit.validate("snd", probs=P, params={"temperature": 1.0}) != pytest.approx(expected)


def test_edge_cases_the_docstrings_state():
    # SND: one sample has no neighbour, two have one each (a softmax over one value): both score 0 (float32 tiles)
    assert adakit.validate("snd", probs=P[:1]) == 0.0
    assert adakit.validate("snd", probs=P[:2]) == pytest.approx(0.0, abs=1e-6)
    # IM of one sample: H(mean p) = H(p)
    assert adakit.validate("im", probs=P[:1]) == pytest.approx(0.0, abs=1e-12)
    # BNM: uniform predictions 1/sqrt(N*C), its minimum; certain ones spread evenly sqrt(C/N), in one class 1/sqrt(N)
    assert adakit.validate("bnm", probs=np.full((6, 3), 1 / 3)) == pytest.approx(1 / math.sqrt(18))
    assert adakit.validate("bnm", probs=np.eye(3)[[0, 1, 2, 0, 1, 2]]) == pytest.approx(math.sqrt(3 / 6))
    assert adakit.validate("bnm", probs=np.eye(3)[[0] * 6]) == pytest.approx(1 / math.sqrt(6))


def test_snd_never_holds_more_than_one_tile(monkeypatch):
    import torch

    sizes, addmm = [], torch.addmm
    monkeypatch.setattr(torch, "addmm", lambda *a, **k: sizes.append(addmm(*a, **k).numel()) or addmm(*a, **k))
    q = np.random.default_rng(1).dirichlet(np.ones(4), size=200)
    soft_neighbourhood_density(q, block_elements=400)
    assert max(sizes) <= 400 and len(sizes) == 10 * 11 // 2  # 20×20 tiles on and above the diagonal of 200×200


def test_source_accuracy_and_queried_batch_accuracy():
    labels = np.array([0, 1, 0, 0])  # predictions: 0, 1, 2, 0 -> 3 of 4 right
    assert adakit.validate("source_acc", source_probs=P, source_labels=labels) == pytest.approx(0.75)
    assert adakit.validate("queried_acc", queried_probs=P, queried_labels=labels) == pytest.approx(0.75)
    assert adakit.validate("queried_acc", queried_pred=[0, 1, 2, 0], queried_labels=labels) == pytest.approx(0.75)
    assert adakit.validate("queried_acc", queried_probs=P, queried_pred=[0, 1, 2, 0],
                           queried_labels=labels) == pytest.approx(0.75)
    with pytest.raises(DataError, match="queried_pred= disagrees with the argmax of queried_probs= on 1 row"):
        adakit.validate("queried_acc", queried_probs=P, queried_pred=[0, 1, 1, 0], queried_labels=labels)
    # inclusion probabilities 0.5, 0.5, 0.25, 0.5 -> weights 2, 2, 4, 2; correct 1, 1, 0, 1: 6 / 10
    pi = np.array([0.5, 0.5, 0.25, 0.5])
    assert adakit.validate("queried_acc_iw", queried_probs=P, queried_labels=labels,
                           queried_inclusion=pi) == pytest.approx(0.6)


def test_weighted_queried_accuracy_is_the_hajek_ratio_not_unbiased():
    # three pool samples kept independently with probabilities pi; correct 1, 0, 1 (pool accuracy 2/3). Over every
    # non-empty batch, the self-normalised estimate averages 0.691, as its docstring says (a ratio estimator)
    import itertools

    pi, correct = np.array([0.9, 0.5, 0.2]), np.array([1, 0, 1])
    expected = mass = 0.0
    for keep in itertools.product([False, True], repeat=3):
        keep = np.array(keep)
        if not keep.any():
            continue
        pr = float(np.prod(np.where(keep, pi, 1 - pi)))
        labels = np.zeros(int(keep.sum()), dtype=int)
        pred = np.where(correct[keep] == 1, 0, 1)
        w = 1 / pi[keep]
        est = adakit.validate("queried_acc_iw", queried_pred=pred, queried_labels=labels, queried_inclusion=pi[keep])
        assert est == pytest.approx((w * correct[keep]).sum() / w.sum())
        expected, mass = expected + pr * est, mass + pr
    assert expected / mass == pytest.approx(0.6912, abs=1e-4)


def test_dev_risk_control_variate_by_hand():
    w = np.array([0.5, 1.0, 1.5, 1.0])
    loss = np.array([2.0, 1.0, 0.5, 1.0])
    wl = w * loss  # 1, 1, 0.75, 1
    mean_w, mean_wl = 1.0, 3.75 / 4
    cov = sum((a - mean_wl) * (b - mean_w) for a, b in zip(wl, w)) / 3
    var = sum((b - mean_w) ** 2 for b in w) / 3
    eta = -cov / var
    assert dev_risk(w, loss) == pytest.approx(mean_wl + eta * mean_w - eta)
    # weights all 1 (no shift): plain mean source loss
    assert dev_risk(np.ones(3), np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    # weights without variance (η undefined): η = 0, the risk is mean(w·ℓ), not mean(ℓ)
    assert dev_risk(np.full(3, 2.0), np.array([1.0, 2.0, 3.0])) == pytest.approx(4.0)
    assert dev_risk(np.array([0.5]), np.array([3.0])) == pytest.approx(1.5)


def test_dev_weights_favour_target_like_source_samples():
    rng = np.random.default_rng(0)
    xs = rng.normal(0, 1, (200, 2))
    xt = rng.normal(0, 1, (200, 2)) + np.array([2.0, 0.0])
    labels = np.zeros(200, dtype=int)
    good = np.where(xs[:, :1] > 0, [[0.9, 0.1]], [[0.1, 0.9]])  # right where the target lies (x0 > 0)
    bad = good[:, ::-1].copy()
    kw = dict(source_labels=labels, source_embeddings=xs, embeddings=xt)
    # the model right on target-like source samples scores higher, though both are right on half the source
    assert adakit.validate("dev", source_probs=good, **kw) > adakit.validate("dev", source_probs=bad, **kw)


def test_registry_errors_and_inputs():
    assert {"bnm", "dev", "entropy", "im", "queried_acc", "queried_acc_iw", "snd", "source_acc"} <= set(
        VALIDATORS.names())
    with pytest.raises(ConfigError, match="unknown validator 'snb'"):
        adakit.validate("snb", probs=P)
    with pytest.raises(ConfigError, match="needs source_probs=, source_labels="):
        adakit.validate("source_acc", probs=P)
    with pytest.raises(ConfigError, match="unknown input"):
        adakit.validate("entropy", prob=P)
    with pytest.raises(DataError, match="probs= must have 2 dimension"):
        adakit.validate("entropy", probs=P[0])
    with pytest.raises(DataError, match="NaN"):
        adakit.validate("entropy", probs=np.full((2, 2), np.nan))
    from adakit.validate import compute_all
    assert set(compute_all({"probs": P})) == {"bnm", "entropy", "im", "snd"}



def test_inputs_that_do_not_fit_together_are_named_errors():
    """Each mistake used to give a silent wrong score (NaN on an empty pool, 0 for labels out of range, 0.15
    for probs ×3) or a raw numpy error; each is now a DataError naming the input."""
    import torch

    from adakit.validate import compute_all

    rng = np.random.default_rng(0)
    src = rng.dirichlet(np.ones(3), size=6)
    good = dict(probs=P, embeddings=rng.normal(size=(4, 2)), source_probs=src, source_labels=[0, 1, 2, 0, 1, 2],
                source_embeddings=rng.normal(size=(6, 2)), queried_probs=P[:2], queried_labels=[0, 1],
                queried_inclusion=[0.5, 0.5])
    assert np.isfinite(adakit.validate("dev", **good))  # the good inputs pass the checks
    bad = [
        (dict(probs=P * 3), "probs= rows must be probabilities"),
        (dict(probs=P - 0.2), "probs= rows must be probabilities"),
        (dict(probs=P[:, :1] / P[:, :1]), "at least 2 classes"),
        (dict(probs=np.zeros((0, 3)), embeddings=np.zeros((0, 2))), "probs=, embeddings= hold no samples"),
        (dict(embeddings=np.zeros((3, 2))), "probs= has 4 rows, embeddings= has 3 rows"),
        (dict(source_embeddings=np.zeros((6, 5))), "embeddings= has 2 features per sample, source_embeddings= 5"),
        (dict(embeddings=np.zeros((4, 0)), source_embeddings=np.zeros((6, 0))),  # (dev: a scikit-learn ValueError)
         r"embeddings= has shape \(4, 0\): no feature per sample"),
        (dict(source_labels=[0, 1, 2, 0, 1]), "source_labels= has 5 rows"),
        (dict(source_labels=[0, 1, 2, 0, 1, 3]), r"source_labels= must hold class indices in \[0, 3\), got values "
                                                 "from 0 to 3"),
        (dict(source_labels=[0, 1, 2, 0, 1, 0.5]), "source_labels= must hold class indices \\(integers\\), got "
                                                   "float64 values such as 0.5"),
        (dict(source_probs=rng.dirichlet(np.ones(4), size=6)), "disagree on the number of classes: probs= has 3, "
                                                               "source_probs= has 4"),
        (dict(queried_labels=[0, -1]), "unknown labels, e.g. -1, cannot be scored"),
        (dict(queried_inclusion=[0.5, 0.0]), r"queried_inclusion= must hold selection probabilities in \(0, 1\]"),
    ]
    for change, message in bad:
        with pytest.raises(DataError, match=message):
            adakit.validate("dev", **{**good, **change})
    with pytest.raises(DataError, match="compute_all: probs= has 4 rows, embeddings= has 3 rows"):
        compute_all({"probs": torch.as_tensor(P), "embeddings": torch.zeros(3, 2)})
    assert adakit.validate("source_acc", **{**good, "source_labels": np.array([0, 1, 2, 0, 1, 2.0])}) == \
        adakit.validate("source_acc", **good)  # integral floats are class indices

def test_a_user_validator_registers_and_runs():
    from adakit.registry import VALIDATORS, register_validator
    from adakit.validate import Validator, compute_all

    @register_validator("test_mean_max_prob")
    class MeanMaxProb(Validator):
        """Mean of each sample's largest probability (a test validator)."""

        needs = ("probs",)

        def score(self, *, probs, **_):
            return float(probs.max(1).mean())

    try:
        assert adakit.validate("test_mean_max_prob", probs=P) == pytest.approx((0.7 + 0.8 + 0.4 + 0.6) / 4)
        assert "test_mean_max_prob" in compute_all({"probs": P})
    finally:
        VALIDATORS._items.pop("test_mean_max_prob")


def test_adakit_validate_is_one_callable_object_however_it_is_reached():
    import subprocess
    import sys

    code = ("import adakit; f = adakit.validate; import adakit.validate.snd; import adakit.validate as m; "
            "from adakit.validate import compute_all; assert f is m is adakit.validate and callable(m); "
            "assert abs(m('im', probs=[[1.0, 0.0], [0.0, 1.0]]) - 0.6931471805599453) < 1e-9; "
            "from adakit import validate; assert validate is m")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_queried_batch_leaves_dropped_queries_out(tmp_path):
    """A query nobody could label has no label to score the model against, and it left the pool all the same:
    round 2's inclusion probability is b / (N - every query before it, dropped ones included)."""
    from adakit.ledger import DROPPED, Ledger
    from adakit.validate._run import queried_batch

    with Ledger(tmp_path / "ledger.sqlite") as led:
        led.record_queries(1, ["a", "b", "c"], [0, 1, 2], [0.0] * 3, suggested=[1, 0, 1])
        led.record_labels({"a": 1, "b": DROPPED, "c": 0}, "t")
        led.record_queries(2, ["d", "e"], [3, 4], [0.0] * 2, suggested=[0, 0])
        led.record_labels({"d": 0, "e": DROPPED}, "t")
        one, two = queried_batch(led, 1, 10, "random"), queried_batch(led, 2, 10, "random")
    assert one["queried_pred"].tolist() == [1, 1] and one["queried_labels"].tolist() == [1, 0]
    assert one["queried_inclusion"].tolist() == [0.3, 0.3]
    assert two["queried_labels"].tolist() == [0] and two["queried_inclusion"].tolist() == [2 / 7]


def test_arrays_given_by_position_are_named():
    """adakit.validate("bnm", probs) said '_CallableModule.__call__() takes 2 positional arguments but 3 were
    given', naming a class users never see; it now says the arrays are keywords and lists them."""
    import adakit

    p = np.full((4, 2), 0.5)
    with pytest.raises(TypeError, match=r"adakit.validate\('bnm', \.\.\.\): pass the arrays as keywords, e.g. "
                                        r"adakit.validate\('bnm', probs=\.\.\.\); inputs: probs, embeddings"):
        adakit.validate("bnm", p)
    assert adakit.validate("bnm", probs=p) == adakit.validate.validate("bnm", probs=p)


def test_dev_weights_are_cross_fitted_with_the_c_of_the_lowest_out_of_fold_log_loss():
    """Each held-out source sample is weighted by a domain classifier fitted without it: the same weights as
    scikit-learn's own cross_val_predict on the same folds; C is the one whose out-of-fold predictions have the
    lowest domain log-loss; without a shift the weights average 1 (an in-sample classifier put them far below)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from adakit.validate.dev import density_ratio

    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(40, 3)), rng.normal(size=(120, 3)) + np.array([1.0, 0.0, 0.0])
    x, y = np.concatenate([xs, xt]), np.r_[np.zeros(40), np.ones(120)]
    cv = StratifiedKFold(4, shuffle=True, random_state=0)

    def oof(c):
        return cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)), x, y,
                                 cv=cv, method="predict_proba")[:, 1]

    for c in (0.01, 1.0):
        pt = oof(c)[:40]
        np.testing.assert_allclose(density_ratio(xs, xt, Cs=(c,), folds=4), pt / (1 - pt) * 30 / 90, rtol=1e-4)
    losses = {c: log_loss(y, oof(c)) for c in (1e-4, 1.0)}
    best = min(losses, key=losses.get)
    assert best == 1.0  # a real shift: the weakly regularised classifier predicts the domains better
    np.testing.assert_allclose(density_ratio(xs, xt, Cs=(1e-4, 1.0), folds=4),
                               density_ratio(xs, xt, Cs=(best,), folds=4))
    # no shift, 80 samples of 256 features: the strong regularisation wins and the weights average 1
    xs, xt = rng.normal(size=(80, 256)), rng.normal(size=(800, 256))
    w = density_ratio(xs, xt)
    assert 0.95 < w.mean() < 1.05 and w.std() < 0.2
    # fewer than 2 source samples: no classifier can leave one out
    assert np.isnan(density_ratio(xs[:1], xt)).all()
    # adakit.validate says why it has no score (it returned NaN silently)
    with pytest.warns(RuntimeWarning, match=r"validator 'dev' has no score for these inputs \(nan\): it needs at "
                                            r"least 2 held-out source samples \(source_\*=, 1 given\) and 2 target "
                                            r"samples \(embeddings=, 800 given\)"):
        assert np.isnan(adakit.validate("dev", source_probs=[[0.5, 0.5]], source_labels=[0],
                                        source_embeddings=xs[:1], embeddings=xt, probs=np.full((800, 2), 0.5)))
    with pytest.warns(RuntimeWarning, match=r"2 target samples \(embeddings=, 1 given\)"):
        adakit.validate("dev", source_probs=np.full((2, 2), 0.5), source_labels=[0, 1], source_embeddings=xs[:2],
                        embeddings=xt[:1])
