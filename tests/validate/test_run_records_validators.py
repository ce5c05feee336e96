"""Runs record every validator their data allow (`val/<name>`), at each round and at warm-up checkpoints."""

import json

import numpy as np
import pytest
import torch

import adakit
from adakit.config import build_config
from adakit.errors import ConfigError, DataError
from adakit.ledger import Ledger
from adakit.loop import ActiveLoop

TINY = {"seed": 0, "data": {"format": "demo"}, "model": {"hidden_dim": 16, "bottleneck_dim": 8},
        "query": {"strategy": "random"}, "budget": {"total": 0.02, "rounds": 2},
        "train": {"warmup_iters": 40, "round_iters": 10, "threads": 1, "device": "cpu"}}
POOL_ONLY = {"val/bnm", "val/entropy", "val/im", "val/snd"}
SOURCE = {"val/source_acc", "val/dev"}
QUERIED = {"val/queried_acc", "val/queried_acc_iw"}


def test_rounds_record_validators_and_warmup_checkpoints(tmp_path):
    cfg = build_config(TINY, ["data.source_val=0.2", "train.eval_checkpoints=2"])
    loop = ActiveLoop(cfg, tmp_path / "run", show_progress=False)
    from adakit.data import load_domain

    n_source, full = len(load_domain("demo", "digits", None)), len(loop.domains.pool)
    assert len(loop.source_val) == int(np.ceil(0.2 * n_source))
    assert len(loop.domains.source) + len(loop.source_val) == n_source  # the held-out split is not trained on
    assert not set(loop.domains.source.ids) & set(loop.source_val.ids)
    # stratified: every class on both sides
    assert set(loop.source_val.y) == set(loop.domains.source.y)
    s = loop.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert POOL_ONLY | SOURCE <= set(rows[0]) and not QUERIED & set(rows[0])
    for row in rows[1:]:
        assert POOL_ONLY | SOURCE | QUERIED <= set(row)
    # the entropy validator is the negated mean entropy of the final model's pool predictions
    probs = loop.pool_probabilities(np.arange(full)).numpy()
    assert rows[-1]["val/entropy"] == pytest.approx(adakit.validate("entropy", probs=probs), abs=1e-5)
    # queried-batch accuracy of round 1: the model's suggestion at query time against the oracle's label
    with Ledger(tmp_path / "run" / "ledger.sqlite") as led:
        labels = led.current_labels()
        qs = led.queries(1)
    hits = np.mean([q.suggested == labels[q.sample_id] for q in qs])
    assert rows[1]["val/queried_acc"] == pytest.approx(hits)
    assert rows[1]["val/queried_acc_iw"] == pytest.approx(hits)  # random sampling: uniform inclusion probability
    # so the weights cancel (README): equal to queried_acc in every round, and as a sweep scores the run
    from adakit.sweep import candidates

    assert all(r["val/queried_acc_iw"] == pytest.approx(r["val/queried_acc"], rel=1e-12) for r in rows[1:])
    assert candidates(s, "queried_acc_iw")[0]["queried_acc_iw"] == \
        pytest.approx(candidates(s, "queried_acc")[0]["queried_acc"], rel=1e-12)
    # two warm-up checkpoints (steps 13 and 27 of 40), each with a saved model, accuracy and validators
    wc = s["warmup_checkpoints"]
    assert [c["step"] for c in wc] == [13, 27]
    for c in wc:
        assert POOL_ONLY | SOURCE | {"accuracy"} <= set(c)
        assert set(torch.load(tmp_path / "run" / c["checkpoint"])) == {"model"}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["warmup_checkpoints"] == wc


def test_checkpoints_do_not_change_training_and_margin_has_no_weighted_variant(tmp_path):
    a = ActiveLoop(build_config(TINY, ["query.strategy=margin"]), tmp_path / "a", show_progress=False).run()
    b = ActiveLoop(build_config(TINY, ["query.strategy=margin", "train.eval_checkpoints=3"]), tmp_path / "b",
                   show_progress=False).run()
    assert [r["accuracy"] for r in a["rounds"]] == [r["accuracy"] for r in b["rounds"]]
    assert len(b["warmup_checkpoints"]) == 3 and a["warmup_checkpoints"] == []
    # no source split: no source validators; top-k selection: no inclusion probabilities, no weighted variant
    assert not SOURCE & set(a["rounds"][0])
    assert "val/queried_acc" in a["rounds"][1] and "val/queried_acc_iw" not in a["rounds"][1]


def test_bad_source_val_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.source_val"):
        build_config(TINY, ["data.source_val=1.5"])
    with pytest.raises(ConfigError, match=r"data.source_val=0.0001.*at least one per class"):
        ActiveLoop(build_config(TINY, ["data.source_val=0.0001"]), tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()


def test_inductive_query_reuses_the_evaluation_pool_pass_without_changing_picks(tmp_path, monkeypatch):
    cfg = build_config(TINY, ["query.strategy=margin", "data.protocol=inductive", "budget.total=0.04"])
    original = ActiveLoop._select
    cached_at_select = []

    def spy(self, r, budget, **kw):
        cached_at_select.append(None if self._pool_cache is None else self._pool_cache[0])
        return original(self, r, budget, **kw)

    monkeypatch.setattr(ActiveLoop, "_select", spy)
    a = ActiveLoop(cfg, tmp_path / "a", show_progress=False)
    a.run()
    assert cached_at_select == [0, 1]  # round r's query reuses round r-1's evaluation pool pass
    assert a._pool_cache is None  # released when the run ends (on a GPU it would hold device memory)

    def fresh(self, r, budget, **kw):  # no reuse: the view computes its own pool pass
        self._pool_cache = None
        return original(self, r, budget, **kw)

    monkeypatch.setattr(ActiveLoop, "_select", fresh)
    b = ActiveLoop(cfg, tmp_path / "b", show_progress=False)
    b.run()
    with Ledger(tmp_path / "a" / "ledger.sqlite") as la, Ledger(tmp_path / "b" / "ledger.sqlite") as lb:
        assert [q.sample_id for q in la.queries()] == [q.sample_id for q in lb.queries()]
        assert la.metrics() == lb.metrics()


def test_an_adopted_warmup_brings_its_checkpoints(tmp_path):
    from adakit.bench import run_plan

    plan = [(build_config(TINY, ["train.eval_checkpoints=1", f"query.strategy={s}"]), tmp_path / s)
            for s in ("random", "margin")]
    run_plan(plan)
    a, b = (json.loads((d / "summary.json").read_text()) for _, d in plan)
    assert a["rounds"][0] == b["rounds"][0]  # the margin run adopted the random run's warm-up
    assert a["warmup_checkpoints"] == b["warmup_checkpoints"] and len(b["warmup_checkpoints"]) == 1
    assert (tmp_path / "margin" / b["warmup_checkpoints"][0]["checkpoint"]).is_file()


def test_a_diverged_run_finishes_without_meaningless_scores(tmp_path):
    cfg = build_config(TINY, ["data.source_val=0.2", "train.lr=1e6", "budget.rounds=1"])
    s = ActiveLoop(cfg, tmp_path / "r", show_progress=False).run()  # NaN outputs: validators on them are left out
    assert "accuracy" in s["rounds"][0] and not (POOL_ONLY | SOURCE) & set(s["rounds"][0])
    from adakit.validate import compute_all

    assert compute_all({"probs": np.full((3, 2), np.nan)}) == {}


def test_validator_inputs_that_do_not_fit_never_stop_a_run(tmp_path, monkeypatch):
    """The loop's inputs fit by construction; if a bug ever broke that, the round is recorded without validators
    (with a warning naming the problem) instead of failing on every resume."""
    import adakit.validate as validate

    def broken(arrays, who="x", **kwargs):
        raise DataError(f"{who}: probs= has 4 rows, embeddings= has 3 rows")

    monkeypatch.setattr(validate, "check_inputs", broken)
    with pytest.warns(RuntimeWarning, match="round 0: validators not recorded: compute_all: probs= has 4 rows"):
        s = ActiveLoop(build_config(TINY, ["budget.rounds=1"]), tmp_path / "r", show_progress=False).run()
    assert [r["round"] for r in s["rounds"]] == [0, 1] and not any(k.startswith("val/") for k in s["rounds"][1])


@pytest.mark.parametrize(("counts", "fraction"), [([100, 100, 2], 0.9), ([10, 10, 1], 0.5), ([100, 100, 1], 0.3)])
def test_source_val_never_holds_out_every_sample_of_a_class(counts, fraction):
    # a class of one sample (the split falls back to unstratified) or of very few under a large fraction used to
    # go wholly into the held-out split, so training never saw a labelled source sample of it
    from adakit.data import Domains
    from adakit.data.domain import TensorDomain
    from adakit.validate._run import split_source_val

    y = np.repeat(np.arange(len(counts)), counts)
    ids = np.char.add("source/", np.arange(len(y)).astype(str))
    src = TensorDomain("source", [str(c) for c in range(len(counts))], ids, y, torch.zeros(len(y), 2))
    for seed in range(5):
        d, val = split_source_val(Domains(source=src, pool=src, test=src, protocol="transductive"), fraction, seed)
        assert set(d.source.y.tolist()) == set(range(len(counts))), (seed, np.bincount(d.source.y))
        assert len(val) > 0 and len(d.source) + len(val) == len(y)
        assert not set(d.source.ids) & set(val.ids)


def test_source_val_on_a_source_too_small_for_any_split_says_so():
    # 5 source samples of 3 classes cannot give one per class on each side; the error said "raise or lower it"
    from adakit.data import Domains
    from adakit.data.domain import TensorDomain
    from adakit.validate._run import split_source_val

    y = np.array([0, 0, 1, 2, 2])
    src = TensorDomain("source", ["a", "b", "c"], np.char.add("source/", np.arange(5).astype(str)), y,
                       torch.zeros(5, 2))
    with pytest.raises(ConfigError, match=r"no fraction can \(6 source samples needed\): set it to 0") as e:
        split_source_val(Domains(source=src, pool=src, test=src, protocol="transductive"), 0.5, 0)
    assert "raise or lower" not in str(e.value)


def test_more_checkpoints_than_warmup_steps_are_named(tmp_path):
    """A warm-up of 4 steps holds 3 checkpoints (steps 1, 2, 3); asking for 10 records those 3 and says so."""
    cfg = build_config(TINY, ["train.warmup_iters=4", "train.eval_checkpoints=10", "budget.rounds=0"])
    with pytest.warns(UserWarning, match=r"eval_checkpoints=10: a warm-up of train.warmup_iters=4 steps holds only 3"):
        s = ActiveLoop(cfg, tmp_path / "run", show_progress=False).run()
    assert [c["step"] for c in s["warmup_checkpoints"]] == [1, 2, 3]


def test_eval_checkpoints_with_a_multi_run_warm_up_warns(tmp_path):
    """BIWAA-I's warm-up of several runs records no checkpoints; train.eval_checkpoints there recorded none silently."""
    cfg = build_config(TINY, ["objective.name=biwaa", "objective.runs=2", "train.warmup_iters=4",
                              "train.eval_checkpoints=2", "budget.rounds=0"])
    with pytest.warns(UserWarning, match=r"eval_checkpoints=2: objective.name=biwaa trains its warm-up 2 times .*"
                                         "set train.eval_checkpoints: 0, or objective.runs: 1"):
        s = ActiveLoop(cfg, tmp_path / "run", show_progress=False).run()
    assert s["warmup_checkpoints"] == []
