"""The linear-probe baseline (`adakit.probe`): logistic regression retrained each round, as a bench row."""

import json

import numpy as np
import pytest
import yaml

from adakit.bench import run_bench
from adakit.config import build_config
from adakit.data import load_domains
from adakit.errors import ConfigError, DataError
from adakit.loop import ActiveLoop
from adakit.probe import run_probe
from adakit.selection import select

BASE = {"name": "tiny", "seed": 0, "data": {"format": "demo"}, "model": {"hidden_dim": 16, "bottleneck_dim": 8},
        "query": {"strategy": "margin"}, "budget": {"total": 0.02, "rounds": 2},
        "train": {"warmup_iters": 20, "round_iters": 10, "threads": 1, "device": "cpu"}}


def test_probe_retrains_on_source_plus_labelled_target_with_the_strategy(tmp_path):
    cfg = build_config(BASE, ["runner=linear_probe", "probe.standardize=true", "data.source_val=0.2"])
    s = run_probe(cfg, tmp_path / "probe")
    assert [r["labels"] for r in s["rounds"]] == [0, 9, 18] and s["objective"] == "linear_probe"
    assert {"accuracy", "mean_class_accuracy", "val/im", "val/snd", "val/dev", "val/source_acc"} <= set(s["rounds"][0])
    assert "val/queried_acc" in s["rounds"][1]
    assert json.loads((tmp_path / "probe" / "summary.json").read_text()) == s
    import adakit  # a probe keeps no model: predicting from it is named as such (it said "not a run folder")

    with pytest.raises(ConfigError, match="is a linear-probe run .*keeps no model to predict with"):
        adakit.load_run(tmp_path / "probe")
    assert len((tmp_path / "probe" / "metrics.jsonl").read_text().splitlines()) == 3
    # round 0 is a plain logistic regression on the training source (the held-out 20% excluded): same accuracy
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from adakit.validate._run import split_source_val

    d, _ = split_source_val(load_domains(cfg.data, 0), 0.2, 0)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
    clf.fit(d.source.x.numpy(), d.source.y)
    assert s["rounds"][0]["accuracy"] == pytest.approx(np.mean(clf.predict(d.test.x.numpy()) == d.test.y))
    # round 1's picks are margin sampling on the probe's probabilities (the strategy through adakit.select)
    sel = select("margin", probs=clf.predict_proba(d.pool.x.numpy()), budget=9, seed=np.random.default_rng([0, 1]))
    hits = np.mean(clf.predict(d.pool.x.numpy()[sel.indices]) == d.pool.y[sel.indices])
    assert s["rounds"][1]["val/queried_acc"] == pytest.approx(hits)


@pytest.mark.parametrize(("c", "raw"), [(1.0, []), (0.01, ["probe.standardize=false"])])
def test_probe_options_raw_features_and_regularisation(tmp_path, c, raw):
    """The probe fits the raw features (the default, or probe.standardize=false), probe.c is LogisticRegression's
    C: round 0 equals that fit."""
    from sklearn.linear_model import LogisticRegression

    cfg = build_config(BASE, ["runner=linear_probe", *raw, f"probe.c={c}", "budget.rounds=0"])
    s = run_probe(cfg, tmp_path / "raw")
    d = load_domains(cfg.data, 0)
    clf = LogisticRegression(C=c, max_iter=1000, random_state=0).fit(d.source.x.numpy(), d.source.y)
    assert s["rounds"][0]["accuracy"] == pytest.approx(np.mean(clf.predict(d.test.x.numpy()) == d.test.y))
    with pytest.raises(ConfigError, match="probe.c"):
        build_config(BASE, ["runner=linear_probe", "probe.c=0"])


def test_probe_is_a_bench_row_and_not_an_active_loop(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    spec = {"base": "base.yaml", "methods": {"margin": [], "linear probe + margin": ["runner=linear_probe"]}}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    md = run_bench(tmp_path / "bench.yaml", tmp_path / "out")
    assert "| linear probe + margin |" in md and "| margin |" in md
    with pytest.raises(ConfigError, match="runner=linear_probe"):
        ActiveLoop(build_config(BASE, ["runner=linear_probe"]), tmp_path / "x", show_progress=False)
    with pytest.raises(ConfigError, match="needs .*domain_discriminator"):
        run_probe(build_config(BASE, ["runner=linear_probe", "query.strategy=aada", "objective.name=dann"]),
                  tmp_path / "y")


@pytest.mark.parametrize(("overrides", "match"), [
    (["query.strategy=aada", "objective.name=dann"], "needs .*domain_discriminator"),
    (["budget.total=5000"], "budget.total=5000.0 asks for 5000 labels"),
    (["budget.total=3", "budget.rounds=5"], "fewer than budget.rounds=5"),
])
def test_probe_refuses_what_it_cannot_run_before_the_run_folder_exists(tmp_path, overrides, match):
    """As a network run: a strategy, budget or data the probe cannot run is refused before the folder (and its
    run.lock) is created, so nothing is left behind (a probe made the folder and its lock first)."""
    from typer.testing import CliRunner

    from adakit.cli import app

    with pytest.raises((ConfigError, DataError), match=match):
        run_probe(build_config(BASE, ["runner=linear_probe", *overrides]), tmp_path / "y")
    assert not (tmp_path / "y").exists()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(BASE))
    sets = [a for o in ["runner=linear_probe", *overrides] for a in ("--set", o)]
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "z"), *sets, "--quiet"])
    assert res.exit_code == 2 and not (tmp_path / "z").exists(), res.output


def test_adakit_run_runs_a_probe_config_and_a_killed_one_again(tmp_path):
    """`adakit run CONFIG --set runner=linear_probe` dispatches to run_probe and prints a network run's last line."""
    from typer.testing import CliRunner

    from adakit.cli import app

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "probe"
    args = ["run", str(config), "--out", str(out), "--set", "runner=linear_probe", "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["runner"] == "linear_probe" and [r["labels"] for r in s["rounds"]] == [0, 9, 18]
    assert s["rounds"] == run_probe(build_config(BASE, ["runner=linear_probe"]), tmp_path / "direct")["rounds"]
    final = f"final target accuracy {100 * s['final_accuracy']:.2f}%; results in {out}"
    assert " ".join(res.output.split()).endswith(final)  # (rich wraps long lines at the terminal width)
    assert "round 2: 18 labels, target accuracy" in res.output
    # the same command again reports the finished run; a killed run (no summary.json) is run again from the start
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and " ".join(again.output.split()).endswith(final)
    (out / "summary.json").unlink()
    (out / "metrics.jsonl").unlink()
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0 and json.loads((out / "summary.json").read_text())["rounds"] == s["rounds"]
    # resume cannot continue a probe (no ledger) and says how to run it again; other configs are refused
    res = CliRunner().invoke(app, ["resume", str(out)])
    shown = " ".join(res.output.split())
    assert res.exit_code == 2 and "linear-probe run" in shown and f"--out {out}" in shown
    res = CliRunner().invoke(app, [*args, "--set", "query.strategy=entropy"])
    assert res.exit_code == 2 and "different config" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "holds a linear-probe run" in " ".join(res.output.split())


def test_probe_probs_rank_a_network_runs_pool(tmp_path):
    """query.probs_from=probe: the network trains as usual, each round's margin picks (and their scores) are those
    of the probe fitted on source + the labels bought so far; the suggested labels stay the network's."""
    from sklearn.linear_model import LogisticRegression

    cfg = build_config(BASE, ["query.probs_from=probe"])
    loop = ActiveLoop(cfg, tmp_path / "run", show_progress=False)
    s = loop.run()
    d = load_domains(cfg.data, 0)
    xs, ys, xp = d.source.x.numpy(), d.source.y, d.pool.x.numpy()
    picked = np.empty(0, dtype=np.int64)
    for r in (1, 2):
        qs = loop.ledger.queries(r)
        clf = LogisticRegression(max_iter=1000).fit(np.concatenate([xs, xp[np.sort(picked)]]),
                                                    np.concatenate([ys, d.pool.y[np.sort(picked)]]))
        sel = select("margin", probs=clf.predict_proba(xp), labelled=picked, budget=9,
                     seed=np.random.default_rng([0, r]))
        assert [q.pool_index for q in qs] == sel.indices.tolist()
        np.testing.assert_allclose([q.score for q in qs], sel.scores, rtol=1e-12)
        picked = np.concatenate([picked, sel.indices])
    # the network's own margins would have picked otherwise (the option changes the queries) ...
    plain = ActiveLoop(build_config(BASE), tmp_path / "plain", show_progress=False)
    plain.run()
    assert [q.pool_index for q in plain.ledger.queries(1)] != [q.pool_index for q in loop.ledger.queries(1)]
    # ... and trains the same way: round 0 (before any query) is the same model
    assert s["rounds"][0]["accuracy"] == plain.summary()["rounds"][0]["accuracy"]


def test_probe_probs_need_features_and_a_probabilities_only_strategy(tmp_path):
    with pytest.raises(ConfigError, match=r"query.probs_from=probe: query.strategy='badge'.*entropy.*margin"):
        ActiveLoop(build_config(BASE, ["query.probs_from=probe", "query.strategy=badge"]), tmp_path / "a",
                   show_progress=False)
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 8, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match="query.probs_from=probe needs feature vectors"):
        ActiveLoop({"query": {"strategy": "margin", "probs_from": "probe"}, "budget": {"total": 4, "rounds": 1}},
                   tmp_path / "b", source=(images, rng.integers(0, 2, 40)), target=images, show_progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before the run folder
    with pytest.raises(ConfigError, match="probs_from"):
        build_config(BASE, ["query.probs_from=network"])


def test_run_probe_from_python_checks_its_folder_as_adakit_run_does(tmp_path):
    """run_probe overwrote a network run's config.yaml / summary.json and a user's own files (the folder checks
    were in the command line only); it also takes a dict config, as ActiveLoop does."""
    from adakit.errors import ConfigError
    from adakit.loop import ActiveLoop

    net = tmp_path / "net"
    ActiveLoop(build_config(BASE, ["budget.rounds=0"]), net, show_progress=False).run()
    before = {p.name: p.read_bytes() for p in net.iterdir() if p.is_file()}
    cfg = build_config(BASE, ["runner=linear_probe"])
    with pytest.raises(ConfigError, match="holds a network run"):
        run_probe(cfg, net)
    assert {p.name: p.read_bytes() for p in net.iterdir() if p.is_file()} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my notes\n")
    with pytest.raises(ConfigError, match="is not empty and holds no run"):
        run_probe(cfg, mine)
    assert (mine / "config.yaml").read_text() == "my notes\n"
    s = run_probe(cfg.to_dict(), tmp_path / "probe")  # a dict of sections
    assert run_probe(cfg, tmp_path / "probe") == s  # a finished probe of the same config is reported again
    with pytest.raises(ConfigError, match="holds a linear-probe run with a different config"):
        run_probe(build_config(BASE, ["runner=linear_probe", "seed=3"]), tmp_path / "probe")
    with pytest.raises(ConfigError, match="the config's runner is 'network'"):
        run_probe(build_config(BASE), tmp_path / "other")


def test_run_probe_on_your_own_arrays(tmp_path):
    """run_probe(config, folder, source=, target=, test=): the probe on feature arrays; a target without labels is
    a named error before any fit (it failed deep in a validator)."""
    from adakit.errors import ConfigError, DataError

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(120, 6)).astype(np.float32)
    ys = xs[:, :3].argmax(1)
    xt = rng.normal(0.3, 1.2, size=(80, 6)).astype(np.float32)
    yt = xt[:, :3].argmax(1)
    cfg = {"runner": "linear_probe", "budget": {"total": 6, "rounds": 2}}
    s = run_probe(cfg, tmp_path / "p", source=(xs, ys), target=(xt, yt))
    assert [r["labels"] for r in s["rounds"]] == [0, 3, 6] and s["final_accuracy"] > 0.8
    stored = yaml.safe_load((tmp_path / "p" / "config.yaml").read_text())
    assert stored["data"]["format"] == "objects" and stored["runner"] == "linear_probe"
    assert run_probe(cfg, tmp_path / "p", source=(xs, ys), target=(xt, yt)) == s  # the same data: reported again
    with pytest.raises(ConfigError, match="holds a finished linear-probe run on other data"):
        run_probe(cfg, tmp_path / "p", source=(xs, ys), target=(xt + 1, yt))  # (it was overwritten silently)
    assert json.loads((tmp_path / "p" / "summary.json").read_text()) == s
    with pytest.raises(DataError, match="80 target samples have none"):
        run_probe(cfg, tmp_path / "q", source=(xs, ys), target=(xt, None), test=(xt, yt))
    assert not (tmp_path / "q" / "summary.json").exists()


def test_run_probe_on_constant_features_runs(tmp_path):
    """Features constant on source and target make the logistic regression's weights all 0; the probe handed
    them to adakit.select as head_weight=, whose gradient check took the zero weight for a function without a
    gradient and stopped the run at its first query with an error about a keyword the user never passed."""
    xs, ys = np.ones((30, 4), np.float32), np.arange(30) % 3
    xt, yt = np.ones((12, 4), np.float32), np.arange(12) % 3
    for strategy in ("random", "margin"):
        cfg = {"runner": "linear_probe", "budget": {"total": 4, "rounds": 2}, "query": {"strategy": strategy}}
        s = run_probe(cfg, tmp_path / strategy, source=(xs, ys), target=(xt, yt))
        assert [r["labels"] for r in s["rounds"]] == [0, 2, 4]
        assert all(np.isfinite(r["accuracy"]) for r in s["rounds"])



def test_run_probe_names_the_shape_of_samples_that_are_not_feature_rows(tmp_path):
    # (N, 2, 4) arrays were called "images"
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(30, 2, 4)), rng.normal(size=(12, 2, 4))
    with pytest.raises(ConfigError, match=r"have samples of shape \(2, 4\); reshape arrays to rows \(N, d\)"):
        run_probe({"runner": "linear_probe", "budget": {"total": 4, "rounds": 2}}, tmp_path / "p",
                  source=(xs, np.arange(30) % 3), target=(xt, np.arange(12) % 3))
    assert not (tmp_path / "p").exists()
