"""Every method's documented defaults (docs/methods.md): trade-off weights, temperatures, K, M, schedules.

A changed default changes what a method computes without touching its formula, so each one the documentation
states (and that its paper or released code fixes) is pinned here, in one place.
"""

import math

import pytest

from adakit.adapt.paa import AnchorParams
from adakit.config import BudgetConfig, DataConfig, ModelConfig, TrainConfig
from adakit.models.discriminators import MULTILINEAR_MAX_DIM
from adakit.models.grl import grl_schedule
from adakit.query.las import oversampling_ratio
from adakit.registry import OBJECTIVES, STRATEGIES
from adakit.train import inverse_decay

ADVERSARIAL = {"trade_off": 1.0, "grl_max": 1.0, "grl_alpha": 10.0, "hidden": 1024, "dropout": 0.5}

OBJECTIVE_DEFAULTS = {
    "source_only": {"omega": "none", "label_smoothing": 0.0},
    "finetune": {"omega": "none", "label_smoothing": 0.0},
    "mme": {"omega": "mme", "entropy_weight": 0.1, "entropy_grl_coeff": 1.0},
    "dann": ADVERSARIAL,
    "cdan": {**ADVERSARIAL, "max_multilinear_dim": 4096, "random_dim": 1024},
    "cdan_e": {**ADVERSARIAL, "max_multilinear_dim": 4096, "random_dim": 1024},
    "mstn": {**ADVERSARIAL, "decay": 0.3, "semantic_weight": 1.0},
    "tsf": {**ADVERSARIAL, "omega": "none"},
    "tsf_mme": {**ADVERSARIAL, "omega": "mme", "entropy_weight": 0.1},
    "sdm": {"margin": 1.0, "raw_logits": False, "ce_weight": 1.0, "margin_weight": 1.0, "max_logit_weight": 1.0,
            "class_mean": True},
    "sdm_a": {"margin": 1.0, "raw_logits": False, "ce_weight": 1.0, "margin_weight": 1.0, "max_logit_weight": 1.0,
              "class_mean": True, "detach_alpha": True},
    "biwaa": {**ADVERSARIAL, "decay": 0.3, "scale": 10.0, "aggregate": 0.9, "runs": 1, "run_decay": 0.8,
              "bootstrap_iters": 500},
    "biwaa_i": {"scale": 10.0, "aggregate": 0.9, "runs": 10, "run_decay": 0.8, "bootstrap_iters": 500},
    "gsda": {"alpha": 0.02, "beta": 1.0, "groups": None, "threshold": 0.9, "use_class": True, "use_group": True,
             "use_sync": True, "grl_max": 1.0, "grl_alpha": 10.0},
}

STRATEGY_DEFAULTS = {
    "sdm_g": {"lam": 0.01},
    "clue": {"temperature": 0.1},
    "las": {"k": 10, "budget_ratio": 0.05, "oversample": None, "neighbours": "unlabelled"},
    "sage": {"pop": True, "diversity": "farthest_first"},
    "coreset": {"use_source": False},
}


@pytest.mark.parametrize("name", sorted(OBJECTIVE_DEFAULTS))
def test_objective_defaults(name):
    params = OBJECTIVES.get(name).Params().model_dump()
    assert {k: params[k] for k in OBJECTIVE_DEFAULTS[name]} == OBJECTIVE_DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(STRATEGY_DEFAULTS))
def test_strategy_defaults(name):
    params = STRATEGIES.get(name).Params().model_dump()
    assert {k: params[k] for k in STRATEGY_DEFAULTS[name]} == STRATEGY_DEFAULTS[name]


def test_protocol_and_optimiser_defaults():
    t = TrainConfig()
    assert (t.lr, t.backbone_lr_mult, t.momentum, t.nesterov, t.weight_decay) == (0.01, 0.1, 0.9, True, 5e-4)
    assert (t.lr_gamma, t.lr_power, t.labelled_target) == (10.0, 0.75, "separate")
    assert inverse_decay(0.5) == pytest.approx(6.0 ** -0.75)
    assert grl_schedule(0.5) == pytest.approx(2.0 / (1.0 + math.exp(-5.0)) - 1.0)
    b = BudgetConfig()
    assert (b.total, b.rounds) == (0.05, 5)
    d = DataConfig()
    assert (d.protocol, d.test_fraction) == ("transductive", 0.5)
    assert ModelConfig().temperature == 0.05  # MME's cosine head
    assert MULTILINEAR_MAX_DIM == 4096
    a = AnchorParams()
    assert (a.kind, a.tau, a.k, a.beta) == ("none", 0.9, 10, 0.2)
    assert [oversampling_ratio(r) for r in (0.05, 0.1)] == [10, 5]  # LADA's M = ⌈0.55/B − 1⌉
