"""Runs started from Python objects: arrays / Datasets, a user nn.Module, strategy and objective objects,
a callable oracle; their ledger, fingerprint, resume (also after SIGKILL) and CLI behaviour."""

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from adakit.cli import app
from adakit.errors import ConfigError, DataError, WaitingForLabels
from adakit.ledger import Ledger
from adakit.loop import ActiveLoop
from adakit.oracle import CallableOracle, RejectedAnswers
from adakit.query.margin_sampling import MarginSampling

SCRIPT = textwrap.dedent('''
    """A user-object run: arrays, own nn.Module, DANN, margin sampling, a callable oracle."""
    import sys

    import numpy as np
    import torch
    from torch import nn

    from adakit.loop import ActiveLoop

    CFG = {"seed": 3, "budget": {"total": 8, "rounds": 2}, "model": {"bottleneck_dim": 8},
           "train": {"warmup_iters": 20, "round_iters": ITERS, "threads": 1, "batch_size": 16}}


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 12), nn.ReLU())

        def forward(self, x):
            return self.body(x)


    def objects():
        rng = np.random.default_rng(0)
        xs = rng.normal(size=(120, 6)).astype(np.float32)
        xt = rng.normal(size=(90, 6)).astype(np.float32) + 0.3
        ys, yt = (xs[:, 0] > 0).astype(np.int64), (xt[:, 0] > 0.3).astype(np.int64)
        torch.manual_seed(0)
        return {"source": (xs, ys), "target": (xt, yt), "model": Net(), "oracle": lambda idx: yt[idx]}


    def loop(run_dir, **extra):
        return ActiveLoop(CFG, run_dir, **objects(), objective="dann", strategy=("margin", {}), show_progress=False,
                          **extra)


    if __name__ == "__main__":
        loop(sys.argv[1]).run()
''')


def _module(tmp_path, iters: int):
    path = tmp_path / "user_run.py"
    path.write_text(SCRIPT.replace("ITERS", str(iters)))
    spec = importlib.util.spec_from_file_location("user_run", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return path, mod


def _rounds(led: Ledger) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for q in led.queries():
        out.setdefault(q.round, []).append(q.sample_id)
    return out


def test_object_run_killed_by_sigkill_resumes_with_the_same_objects(tmp_path):
    path, mod = _module(tmp_path, iters=40)
    reference = mod.loop(tmp_path / "ref")
    reference.run()

    run_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(path), str(run_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    deadline, caught = time.time() + 120, False
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "ledger.sqlite").exists():
            try:
                con = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=1)
                row = con.execute("SELECT status FROM rounds WHERE round=1").fetchone()
                con.close()
            except sqlite3.OperationalError:
                row = None
            if row is not None and row[0] in ("queried", "labelled"):
                caught = True
                break
        time.sleep(0.02)
    assert caught and proc.poll() is None, f"did not catch the run in round 1: {proc.stderr.read()[-2000:]!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Ledger(run_dir / "ledger.sqlite") as led:
        assert led.last_checkpoint()[0] == 0 and led.round_status(2) is None

    # the CLI cannot bring the objects back: a clear error pointing to Python
    res = CliRunner().invoke(app, ["resume", str(run_dir)])
    assert res.exit_code == 2 and "started from Python objects" in res.output and "source=" in res.output

    objs = mod.objects()
    resumed = ActiveLoop.resume(run_dir, **objs, show_progress=False)
    summary = resumed.run()
    assert _rounds(resumed.ledger) == _rounds(reference.ledger)
    assert resumed.ledger.current_labels() == reference.ledger.current_labels()
    assert resumed.ledger.check() == []
    assert summary["final_accuracy"] == pytest.approx(reference.summary()["final_accuracy"], abs=1e-6)
    res = CliRunner().invoke(app, ["ledger", "check", str(run_dir)])
    assert res.exit_code == 0, res.output


def test_resume_with_other_data_names_the_domain_and_the_difference(tmp_path):
    _, mod = _module(tmp_path, iters=5)
    mod.loop(tmp_path / "r").run()
    objs = mod.objects()
    xt, yt = objs["target"]
    changed = {**objs, "target": (xt + 1.0, yt)}
    with pytest.raises(ConfigError, match="target= is not the data .* different values"):
        ActiveLoop.resume(tmp_path / "r", **changed, show_progress=False)
    fewer = {**objs, "source": (objs["source"][0][:100], objs["source"][1][:100])}
    with pytest.raises(ConfigError, match="source= .* 100 samples instead of 120"):
        ActiveLoop.resume(tmp_path / "r", **fewer, show_progress=False)
    with pytest.raises(ConfigError, match="started from Python objects.*model=\\.\\.\\."):
        ActiveLoop.resume(tmp_path / "r", source=objs["source"], target=objs["target"], oracle=objs["oracle"])
    answers = tmp_path / "answers.csv"
    answers.write_text("sample_id,label\ntarget/0,1\n")
    res = CliRunner().invoke(app, ["import-labels", str(tmp_path / "r"), str(answers)])
    # import-labels reads an object run from its ledger alone; a sample never queried is rejected by name
    assert res.exit_code == 1 and "'target/0': not one of the run's queried samples" in res.output, res.output
    # another module (here: a wider one) went on training, and the finished run could then never be loaded
    wider = nn.Sequential(nn.Linear(6, 32), nn.ReLU())
    with pytest.raises(ConfigError, match=r"started with another model \(backbone_class 'user_run.Net' → "
                                          r"'torch.nn.modules.container.Sequential', backbone_dim 12 → 32\); continue "
                                          r"it with the same model="):
        ActiveLoop.resume(tmp_path / "r", **{**objs, "model": wider}, show_progress=False)
    # the same objects: the finished run is loaded, nothing changes
    again = ActiveLoop.resume(tmp_path / "r", **objs, show_progress=False)
    assert len(again.ledger.current_labels()) == 8


def test_run_records_config_fingerprint_and_rebuild_info(tmp_path):
    _, mod = _module(tmp_path, iters=5)
    loop = mod.loop(tmp_path / "r")
    with Ledger(tmp_path / "r" / "ledger.sqlite") as led:
        cfg, fp, info = led.get_meta("config"), led.get_meta("data_fingerprint"), led.get_meta("model")
    assert cfg["data"]["format"] == "objects" and cfg["model"]["backbone"] == "custom"
    assert cfg["objective"]["name"] == "dann" and cfg["query"]["strategy"] == "margin"
    assert cfg["oracle"]["kind"] == "callable"
    assert fp["source"]["size"] == 120 and fp["target"]["shape"] == [6] and set(fp) == {"source", "target"}
    assert info["input_shape"] == [6] and info["classes"] == ["0", "1"] and info["backbone_dim"] == 12
    assert info["feature_dim"] == 8 and info["backbone_class"].endswith("Net")
    assert loop.model.backbone.out_dim == 12  # from the dry forward


class _Items(torch.utils.data.Dataset):
    """A Dataset of (x, y) items, or x only when y is None."""

    def __init__(self, x, y=None):
        self.x, self.y = torch.as_tensor(x), y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] if self.y is None else (self.x[i], int(self.y[i]))


def _arrays(n_s=60, n_t=50, d=5):
    rng = np.random.default_rng(1)
    xs, xt = rng.normal(size=(n_s, d)).astype(np.float32), rng.normal(size=(n_t, d)).astype(np.float32)
    return xs, (xs[:, 0] > 0).astype(int), xt, (xt[:, 0] > 0).astype(int)


SMALL = {"budget": {"total": 6, "rounds": 2}, "model": {"hidden_dim": 8, "bottleneck_dim": 4},
         "train": {"warmup_iters": 5, "round_iters": 3, "threads": 1, "batch_size": 8}}


def test_datasets_with_an_unlabelled_target_need_an_oracle_and_record_no_accuracy(tmp_path):
    xs, ys, xt, yt = _arrays()
    asked = []

    def labels_for(idx):
        asked.append(idx)
        return [["neg", "pos"][int(v)] for v in yt[idx]]  # class names work too

    events = []
    loop = ActiveLoop(SMALL, tmp_path / "r", source=_Items(xs, ys), target=_Items(xt), classes=["neg", "pos"],
                      oracle=labels_for, callbacks=[lambda k, i: events.append(k)], show_progress=False)
    summary = loop.run()
    assert [len(a) for a in asked] == [3, 3] and all(isinstance(a, np.ndarray) for a in asked)
    labels = loop.ledger.current_labels()
    assert {int(s.split("/")[1]): v for s, v in labels.items()} == {int(i): int(yt[i]) for a in asked for i in a}
    assert summary["final_accuracy"] is None and summary["rounds"] == []
    assert events.count("evaluated") == 3 and events[-1] == "done"
    # without an oracle the simulated one refuses the unlabelled target, naming the fix, before any training
    with pytest.raises(DataError, match="50 of 50 pool samples have no label .* oracle='file'"):
        ActiveLoop(SMALL, tmp_path / "r2", source=_Items(xs, ys), target=_Items(xt), show_progress=False)
    assert not (tmp_path / "r2").exists()


def test_report_says_how_many_queries_were_dropped(tmp_path):
    """A dropped query ("nobody can label this") counts in no round's labels: report.md showed fewer labels than
    the budget without saying why."""
    xs, ys, xt, yt = _arrays()

    def some_unlabellable(idx):
        return ["drop" if i % 2 else int(yt[i]) for i in idx]

    loop = ActiveLoop({"seed": 2, **SMALL}, tmp_path / "r", source=(xs, ys), target=(xt, yt),
                      oracle=some_unlabellable, show_progress=False)
    s = loop.run()
    dropped = len(loop.ledger.dropped_pool())
    assert dropped > 0 and s["rounds"][-1]["labels"] == 6 - dropped
    report = (tmp_path / "r" / "report.md").read_text()
    assert f"Note: {dropped} quer{'ies were' if dropped > 1 else 'y was'} dropped (answered that nobody can label " \
        "it): the labels column counts labelled samples only" in report


def test_test_domain_strategy_instance_and_config_sections(tmp_path):
    xs, ys, xt, yt = _arrays()
    strategy = MarginSampling(MarginSampling.Params())
    loop = ActiveLoop({"seed": 2, **SMALL}, tmp_path / "r", source=(torch.as_tensor(xs), torch.as_tensor(ys)),
                      target=(xt, None), test=(xt[:20], yt[:20]), oracle=lambda idx: yt[idx], strategy=strategy,
                      show_progress=False)
    assert loop.strategy is strategy and loop.cfg.query.strategy == "margin"
    assert loop.cfg.data.protocol == "inductive" and len(loop.domains.test) == 20
    assert loop.cfg.model.backbone == "mlp"  # the config's model section stays when no module is given
    s = loop.run()
    assert len(s["rounds"]) == 3 and s["rounds"][-1]["labels"] == 6
    with Ledger(tmp_path / "r" / "ledger.sqlite") as led:
        assert set(led.get_meta("data_fingerprint")) == {"source", "target", "test"}
    # resuming without test= names it with the others (it came as a second error)
    with pytest.raises(ConfigError, match=r"ActiveLoop.resume\(.*source=\.\.\., target=\.\.\., test=\.\.\., "
                                          r"oracle=\.\.\.\)"):
        ActiveLoop.resume(tmp_path / "r")


def test_bad_objects_fail_before_the_run_folder_exists(tmp_path):
    xs, ys, xt, yt = _arrays()
    out = tmp_path / "r"
    with pytest.raises(ConfigError, match="both source= and target="):
        ActiveLoop(SMALL, out, source=(xs, ys))
    with pytest.raises(DataError, match="source: 1 of 60 samples have no label"):
        ActiveLoop(SMALL, out, source=(xs, np.r_[ys[:-1], -1]), target=(xt, yt))
    with pytest.raises(DataError, match=r"domain 'source': 1 class\(es\) \(0\); a classifier needs at least 2"):
        ActiveLoop(SMALL, out, source=(xs, np.zeros_like(ys)), target=(xt, None))
    with pytest.raises(DataError, match="target: samples have shape \\(4,\\)"):
        ActiveLoop(SMALL, out, source=(xs, ys), target=(xt[:, :4], yt))
    with pytest.raises(ConfigError, match="your module failed on a batch of shape \\(2, 5\\)"):
        ActiveLoop(SMALL, out, source=(xs, ys), target=(xt, yt), model=nn.Linear(7, 3))

    class Unregistered(MarginSampling):
        pass

    with pytest.raises(ConfigError, match="Unregistered is not registered.*register_strategy"):
        ActiveLoop(SMALL, out, source=(xs, ys), target=(xt, yt), strategy=Unregistered(MarginSampling.Params()))
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        ActiveLoop(SMALL, out, source=(xs, ys), target=(xt, yt), strategy="nope")
    with pytest.raises(ConfigError, match="oracle=: expected 'simulated', 'file' or a function"):
        ActiveLoop(SMALL, out, source=(xs, ys), target=(xt, yt), oracle=3)
    with pytest.raises(ConfigError, match="data.format=objects: .* source=..., target=..."):
        ActiveLoop({**SMALL, "data": {"format": "objects"}}, out)

    class DictItems(torch.utils.data.Dataset):  # the Hugging Face convention: items are dicts
        def __init__(self, x, y, targets=False):
            self.x, self.y = x, y
            if targets:
                self.targets = y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"pixel_values": torch.as_tensor(self.x[i]), "label": int(self.y[i])}

    dict_items = r"source: dataset items are dicts \(keys 'pixel_values', 'label'\); .* \(input, label\)"
    with pytest.raises(DataError, match=dict_items):
        ActiveLoop(SMALL, out, source=DictItems(xs, ys), target=(xt, yt))
    with pytest.raises(DataError, match=dict_items):  # labels from .targets: the items are still read
        ActiveLoop(SMALL, out, source=DictItems(xs, ys, targets=True), target=(xt, yt))
    assert not out.exists()


def test_test_labels_that_no_training_domain_has_are_warned_about(tmp_path):
    xs, ys, xt, yt = _arrays()
    with pytest.warns(UserWarning, match=r"test: label\(s\) \[7\] occur in neither the source nor the target "
                                         r"pool's known labels; the class list inferred from all labels has 8"):
        loop = ActiveLoop(SMALL, tmp_path / "r", source=(xs, ys), target=(xt, yt), test=(xt, np.r_[yt[:-1], 7]))
    assert len(loop.domains.classes) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same labels everywhere: no warning
        ActiveLoop(SMALL, tmp_path / "s", source=(xs, ys), target=(xt, yt), test=(xt, yt))


def test_callable_oracle_validates_what_the_function_returns():
    from adakit.data.objects import as_domain
    from adakit.ledger import Query

    pool = as_domain((np.zeros((10, 2), np.float32), None), "target", ["a", "b", "c"])
    queries = [Query(f"target/{i}", i, 1, k, 0.0, None) for k, i in enumerate([4, 7])]

    def answered(fn):
        return CallableOracle(fn, pool, ["a", "b", "c"]).label(queries, 1)

    assert answered(lambda idx: idx % 3) == {"target/4": 1, "target/7": 1}
    assert answered(lambda idx: torch.tensor([2.0, 0.0])) == {"target/4": 2, "target/7": 0}
    assert answered(lambda idx: ["c", "a"]) == {"target/4": 2, "target/7": 0}
    with pytest.raises(DataError, match="returned 1 labels for 2 indices"):
        answered(lambda idx: [1])
    with pytest.raises(DataError, match="label 3 for pool index 7 is outside 0..2"):
        answered(lambda idx: [0, 3])
    with pytest.raises(DataError, match="integer class indices"):
        answered(lambda idx: np.array([True, False]))
    for skip in (None, -1, float("nan"), " "):  # no answer (yet): the sample stays open
        assert answered(lambda idx, skip=skip: [skip, "b"]) == {"target/7": 1}
    with pytest.raises(RejectedAnswers, match="label 0.5 for pool index 4 is not an integer class index") as e:
        answered(lambda idx: [0.5, 1.0])
    assert e.value.answers == {"target/7": 1}  # the valid answers travel with the error
    with pytest.raises(RejectedAnswers, match=r"label 'd' for pool index 7 is not in the class list \['a', 'b', 'c'\]"
                       ) as e:
        answered(lambda idx: ["a", "d"])
    assert e.value.answers == {"target/4": 0}
    # a mistyped name says which class it most likely meant, as import-labels does (it listed the classes)
    with pytest.raises(RejectedAnswers, match=r"label 'B' for pool index 7 is not in the class list \(did you mean "
                                              r"'b'\?\)"):
        answered(lambda idx: ["a", "B"])
    many = [f"class{k:02d}" for k in range(31)]  # a long list is cut, and says so (it looked like the whole list)
    with pytest.raises(RejectedAnswers, match=r"'class09', \.\.\. \(31 classes\)\]"):
        CallableOracle(lambda idx: ["class00", "mug"], pool, many).label(queries, 1)
    # what a function returns by mistake is named (None read as "0 labels for 2 indices", a dict as "() labels")
    for returned, named in ((None, r"returned None \(a missing return\?\)"), ({4: 1}, "returned dict"),
                            ((i for i in range(2)), "returned generator"), (3, "returned int")):
        with pytest.raises(DataError, match=named + "; return one label per index"):
            answered(lambda idx, r=returned: r)
    assert answered(lambda idx: [torch.tensor(2), torch.tensor(0)]) == {"target/4": 2, "target/7": 0}


def test_callable_oracle_refuses_index_texts_that_name_another_class():
    """Classes named by digits: numpy turns the index 1 of np.where(unsure, DROP, y) into the text "1", which is
    also the name of class 0. Such an answer is refused, never guessed; names in a list, object arrays and
    unambiguous texts are read as before."""
    from adakit.data.objects import as_domain
    from adakit.ledger import DROPPED, Query

    classes = ["1", "7", "9"]
    pool = as_domain((np.zeros((10, 2), np.float32), None), "target", classes)
    queries = [Query(f"target/{i}", i, 1, k, 0.0, None) for k, i in enumerate([4, 7, 8])]

    def answered(fn):
        return CallableOracle(fn, pool, classes).label(queries, 1)

    y, unsure = np.array([1, 2, 0]), np.array([False, False, True])
    with pytest.raises(RejectedAnswers, match="label '1' for pool index 4 is both the name of class 0 and the index "
                                              "of class 1") as e:
        answered(lambda idx: np.where(unsure, "drop", y))  # ['1', '2', 'drop']: "2" is no class name
    assert e.value.answers == {"target/7": 2, "target/8": DROPPED}
    assert answered(lambda idx: np.where(unsure, "drop", y.astype(object))) == \
        {"target/4": 1, "target/7": 2, "target/8": DROPPED}
    assert answered(lambda idx: ["1", "9", "drop"]) == {"target/4": 0, "target/7": 2, "target/8": DROPPED}
    names = np.array(classes)  # a numpy array of class names only is read as names
    assert answered(lambda idx: names[[0, 2, 1]]) == {"target/4": 0, "target/7": 2, "target/8": 1}
    # with a drop in it, the same texts may be indices numpy turned into text: np.where(unsure, DROP, [1, 1, 1])
    # gives ['1', '1', 'drop'], all class names, which were read as class "1" instead of index 1 ("7")
    for returned in (np.where(unsure, "drop", np.array([1, 1, 1])), np.where(unsure, "drop", names[[0, 2, 1]])):
        with pytest.raises(RejectedAnswers, match="label '1' for pool index 4 is both the name of class 0"):
            answered(lambda idx, r=returned: r)
    assert answered(lambda idx: np.where(unsure, "drop", names[[2, 2, 1]])) == \
        {"target/4": 2, "target/7": 2, "target/8": DROPPED}  # "9" names class 2 and indexes none: not ambiguous


def test_resume_keeps_the_stored_class_list_and_refuses_another_order(tmp_path):
    xs, ys, xt, yt = _arrays()
    names = np.array(["cat", "dog"])
    run = tmp_path / "r"
    with pytest.raises(WaitingForLabels):
        ActiveLoop(SMALL, run, source=(xs, ys), target=(xt, None), classes=["cat", "dog"], oracle=lambda i: [None] *
                   len(i), show_progress=False).run()
    with pytest.raises(ConfigError, match=r"started with the classes \['cat', 'dog'\]; the data now gives "
                                          r"\['dog', 'cat'\]"):
        ActiveLoop.resume(run, source=(xs, ys), target=(xt, None), classes=["dog", "cat"],
                          oracle=lambda i: names[yt[i]], show_progress=False)
    # without classes= the run's own list is used, so names are stored under the classes they name
    loop = ActiveLoop.resume(run, source=(xs, ys), target=(xt, None), oracle=lambda i: names[yt[i]],
                             show_progress=False)
    loop.run()
    truth = {f"target/{i}": int(yt[i]) for i in range(len(yt))}
    labels = loop.ledger.current_labels()
    assert len(labels) == 6 and all(truth[s] == v for s, v in labels.items())
    with pytest.raises(ConfigError, match="leave config= out"):
        ActiveLoop.resume(run, config=SMALL)


def test_a_run_folder_is_checked_and_a_changed_config_is_named(tmp_path):
    xs, ys, xt, yt = _arrays()
    objs = {"source": (xs, ys), "target": (xt, yt), "show_progress": False}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    with pytest.raises(ConfigError, match="run_dir .*mine is not empty and holds no run \\(report.md\\)"):
        ActiveLoop(SMALL, mine, **objs)
    assert (mine / "report.md").read_text() == "my notes" and sorted(p.name for p in mine.iterdir()) == ["report.md"]
    with pytest.raises(ConfigError, match="report.md is a file, not a folder"):
        ActiveLoop(SMALL, mine / "report.md", **objs)
    with pytest.raises(WaitingForLabels):  # a run stopped mid-way: the error says how to continue it
        ActiveLoop(SMALL, tmp_path / "r", oracle="file", **objs).run()
    with pytest.raises(ConfigError, match=r"holds a run \(continue it with ActiveLoop.resume\(.*\) with a different "
                                          r"config \(seed: 0 → 3\); run the new config in another folder"):
        ActiveLoop({**SMALL, "seed": 3}, tmp_path / "r", oracle="file", **objs)
    ActiveLoop.resume(tmp_path / "r", oracle=lambda idx: yt[idx], **objs).run()
    with pytest.raises(ConfigError, match=r"holds a finished run with a different config \(seed: 0 → 3\); run the "
                                          r"new config in another folder"):  # no resume advice: nothing to resume
        ActiveLoop({**SMALL, "seed": 3}, tmp_path / "r", **objs)


def test_a_module_trained_by_one_run_is_named_when_a_new_run_starts_from_it(tmp_path):
    """ActiveLoop trains the user's module in place: a second new run from the same object would start from the
    first run's final weights, which a comparison of strategies must not do silently."""
    xs, ys, xt, yt = _arrays()
    objs = {"source": (xs, ys), "target": (xt, yt), "show_progress": False}
    config = {**SMALL, "model": {"bottleneck_dim": 4}}  # (model.hidden_dim beside a module is a warning of its own)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
    before = net[0].weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first run: no warning
        ActiveLoop(config, tmp_path / "a", model=net, **objs).run()
    assert not torch.equal(before, net[0].weight)  # trained in place, as the README says
    with pytest.warns(RuntimeWarning, match="trained in place by an earlier run"):
        ActiveLoop(config, tmp_path / "b", model=net, **objs).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fresh module, or the run's own module to resume it: no warning
        ActiveLoop(config, tmp_path / "c", model=nn.Sequential(nn.Linear(5, 6), nn.ReLU()), **objs).close()
        ActiveLoop.resume(tmp_path / "a", model=net, **objs).close()


def test_a_source_of_one_sample_is_refused_before_training(tmp_path):
    xs, ys, xt, yt = _arrays()
    with pytest.raises(DataError, match="source: 1 sample; training needs at least 2"):
        ActiveLoop(SMALL, tmp_path / "r", source=(xs[:1], ys[:1]), target=(xt, yt), show_progress=False)


def test_an_unlabelled_tensordataset_target_runs_with_a_callable_oracle(tmp_path):
    xs, ys, xt, yt = _arrays()
    loop = ActiveLoop(SMALL, tmp_path / "r", source=(xs, ys), target=torch.utils.data.TensorDataset(
        torch.as_tensor(xt)), oracle=lambda i: yt[i], show_progress=False)
    assert (loop.domains.pool.y == -1).all()
    loop.run()
    assert len(loop.ledger.current_labels()) == 6


def test_callable_oracle_answers_are_saved_when_some_are_missing_or_rejected(tmp_path):
    """A person who skips a sample or mistypes a label loses no answer: the valid ones are in the ledger
    before the run stops, and the resumed run asks only for the rest, ending as an uninterrupted run."""
    xs, ys, xt, yt = _arrays()
    objs = {"source": (xs, ys), "target": (xt, None), "test": (xt, yt), "show_progress": False}
    ActiveLoop(SMALL, tmp_path / "ref", oracle=lambda idx: yt[idx], **objs).run()
    asked = []

    def skips_first(idx):
        asked.append(idx.tolist())
        return np.r_[-1, yt[idx[1:]]]

    with pytest.raises(WaitingForLabels, match="round 1: 1 of 3 queries got no answer .* 2 answer") as waiting:
        with ActiveLoop(SMALL, tmp_path / "r", oracle=skips_first, **objs) as loop:
            loop.run()
    assert len(Ledger(tmp_path / "r" / "ledger.sqlite").current_labels()) == 2
    # what a pipeline needs, without reopening the ledger: the round and the samples still waiting
    assert waiting.value.round == 1 and waiting.value.run_dir == str(tmp_path / "r")
    assert waiting.value.open == (f"target/{asked[0][0]}",)
    with pytest.raises(Exception, match="closed"):  # the with block closed the loop's ledger
        loop.ledger.queries()

    def mistypes(idx):
        asked.append(idx.tolist())
        return ["7"] * len(idx)

    with pytest.raises(RejectedAnswers, match="1 label.s. rejected: label '7' for pool index"):
        ActiveLoop.resume(tmp_path / "r", oracle=mistypes, **objs).run()
    ActiveLoop.resume(tmp_path / "r", oracle=lambda idx: (asked.append(idx.tolist()), yt[idx])[1], **objs).run()
    assert asked[1] == asked[2] == asked[0][:1]  # only the skipped sample was asked again
    ref, got = (Ledger(tmp_path / d / "ledger.sqlite").current_labels() for d in ("ref", "r"))
    assert got == ref and len(got) == 6


def test_a_run_labelled_through_files_goes_on_with_a_labelling_function(tmp_path):
    """The oracle may change between rounds (every answer is in the ledger): a run that exported its queries goes
    on with a function, which answers the open round, and ends with the labels of a run that used it throughout."""
    xs, ys, xt, yt = _arrays()
    objs = {"source": (xs, ys), "target": (xt, None), "test": (xt, yt), "show_progress": False}
    ActiveLoop(SMALL, tmp_path / "ref", oracle=lambda idx: yt[idx], **objs).run()
    with pytest.raises(WaitingForLabels), ActiveLoop(SMALL, tmp_path / "r", oracle="file", **objs) as loop:
        loop.run()
    asked = []
    with ActiveLoop.resume(tmp_path / "r", oracle=lambda idx: (asked.append(idx.tolist()), yt[idx])[1],
                           **objs) as loop:
        assert loop.cfg.oracle.kind == "callable"
        loop.run()
    ref, got = (Ledger(tmp_path / d / "ledger.sqlite").current_labels() for d in ("ref", "r"))
    assert got == ref and len(got) == 6 and len(asked) == 2  # the open round's queries, then round 2's
    with pytest.raises(ConfigError, match=r"different config \(seed: 0 → 3\)"):  # other keys still must match
        ActiveLoop({**SMALL, "seed": 3}, tmp_path / "r", oracle="file", **objs)


def test_an_answer_given_meanwhile_is_kept_and_the_functions_other_answers_are_saved(tmp_path):
    """A person answers a queried sample on the labelling page while the labelling function is working: the
    function's differing answer for it is left out (first answer wins, named in a warning) and its other answers
    are committed; before, the whole batch was rolled back and the run stopped with a LedgerError."""
    xs, ys, xt, yt = _arrays()
    objs = {"source": (xs, ys), "target": (xt, None), "test": (xt, yt), "show_progress": False}
    seen = []

    def slow_person(idx):
        if not seen:  # the page's write, from another connection, while the function works on round 1
            with Ledger(tmp_path / "r" / "ledger.sqlite") as led:
                assert led.answer(f"target/{idx[0]}", int(1 - yt[idx[0]]), "page")[0] == "new"
        seen.append(idx.tolist())
        return yt[idx]

    with pytest.warns(RuntimeWarning, match=r"round 1: 1 answer\(s\) of the .* differ from answers given "
                                            r"meanwhile, which are kept: target/\d+ \(kept"):
        ActiveLoop(SMALL, tmp_path / "r", oracle=slow_person, **objs).run()
    labels = Ledger(tmp_path / "r" / "ledger.sqlite").current_labels()
    first = f"target/{seen[0][0]}"
    assert len(labels) == 6 and labels[first] == 1 - yt[seen[0][0]]  # the page's answer, kept
    assert all(labels[f"target/{i}"] == yt[i] for i in seen[0][1:] + seen[1])  # the function's others, saved


def test_a_query_nobody_can_label_is_dropped_never_asked_again_and_not_trained_on(tmp_path, monkeypatch):
    """adakit.DROP from the labelling function closes the query: the run goes on (no WaitingForLabels), the
    sample is never offered to the strategy again, the training set and the label counts leave it out, and
    resuming after a drop asks nothing again."""
    import adakit
    from adakit.query.base import Selection

    def first_free(self, view, budget, rng):  # a dropped sample would be picked again if it were offered
        cand = view.unlabelled_indices[:budget]
        return Selection(cand, np.zeros(len(cand)))

    monkeypatch.setattr(MarginSampling, "select", first_free)
    xs, ys, xt, yt = _arrays()
    asked = []

    def drops_the_first(idx):
        asked.append(idx.tolist())
        return [adakit.DROP] + [int(v) for v in yt[idx[1:]]]

    objs = {"source": (xs, ys), "target": (xt, None), "test": (xt, yt), "show_progress": False}
    loop = ActiveLoop({"query": {"strategy": "margin"}, **SMALL}, tmp_path / "r", oracle=drops_the_first, **objs)
    trained_on = []
    fit = loop.trainer.fit

    def spy(*args, **kwargs):
        trained_on.append([int(i) for i in args[2]])  # the labelled pool indices it trains on
        return fit(*args, **kwargs)

    loop.trainer.fit = spy
    s = loop.run()
    assert asked == [[0, 1, 2], [3, 4, 5]]  # without the exclusion round 2 would offer sample 0 again
    with Ledger(tmp_path / "r" / "ledger.sqlite") as led:
        assert led.dropped_pool() == [0, 3] and led.labelled_pool()[0] == [1, 2, 4, 5]
        assert led.open_queries() == [] and led.check() == []
        assert led.current_labels()["target/0"] == -1
    assert [r["labels"] for r in s["rounds"]] == [0, 2, 4]
    assert [1, 2, 4, 5] in trained_on and not any(0 in t or 3 in t for t in trained_on)
    ActiveLoop.resume(tmp_path / "r", oracle=drops_the_first, **objs).run()
    assert len(asked) == 2


def test_drop_is_read_from_answer_files_and_a_class_of_that_name_wins(tmp_path):
    from adakit.data.objects import as_domain
    from adakit.ledger import Query
    from adakit.oracle import resolve_label as _resolve

    assert _resolve("drop", ["a", "b"]) == -1 and _resolve(" DROP ", ["a", "b"]) == -1
    assert _resolve("drop", ["keep", "drop"]) == 1  # a class named "drop" means that class
    for other in ("DROP", " Drop "):  # and no other spelling drops (it did: a CSV "drop" chose the class, "DROP"
        assert _resolve(other, ["keep", "drop"]) is None  # dropped the sample)
    assert _resolve(" drop ", ["keep", "drop"]) == 1 and _resolve("drop", ["keep", "Drop"]) is None
    pool = as_domain((np.zeros((10, 2), np.float32), None), "target", ["a", "drop"])
    q = [Query("target/4", 4, 1, 0, 0.0, None), Query("target/7", 7, 1, 1, 0.0, None)]
    assert CallableOracle(lambda idx: ["drop", "a"], pool, ["a", "drop"]).label(q, 1) == {"target/4": 1,
                                                                                       "target/7": 0}
    pool = as_domain((np.zeros((10, 2), np.float32), None), "target", ["a", "b"])
    assert CallableOracle(lambda idx: ["Drop", "a"], pool, ["a", "b"]).label(q, 1) == {"target/4": -1,
                                                                                     "target/7": 0}
    # numpy turns a mix of adakit.DROP and class indices into text: the indices still count as indices
    mixed = np.where([True, False], "drop", np.array([1, 1]))
    assert mixed.dtype.kind == "U" and CallableOracle(lambda idx: mixed, pool, ["a", "b"]).label(q, 1) == {
        "target/4": -1, "target/7": 1}
    assert CallableOracle(lambda idx: np.where([True, False], "-1", "1"), pool, ["a", "b"]).label(q, 1) == {
        "target/7": 1}  # -1 as text: no answer yet
    # `adakit ledger export` writes a dropped query as label -1, class "drop": it imports back as a drop, also
    # where a class is named drop (its own rows carry that class's index)
    from adakit.labeling.answers import RawAnswer, _indexed_label

    classes = ["keep", "drop"]
    by_name = {c: i for i, c in enumerate(classes)}
    assert _indexed_label(RawAnswer(2, "target/4", "-1", "drop", True), classes, by_name) == (-1, None)
    assert _indexed_label(RawAnswer(3, "target/7", "1", "drop", True), classes, by_name) == (1, None)
    assert "disagree" in _indexed_label(RawAnswer(4, "target/7", "0", "drop", True), classes, by_name)[1]


def test_readme_snippets_of_objects_and_finished_runs_run(tmp_path, monkeypatch, readme_python):
    blocks = readme_python("### Your own data and model", stop="### Your own strategies and objectives")
    assert len(blocks) == 3  # run, resume, load_run
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "readme"}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), ns)
    assert ns["summary"]["rounds"][-1]["labels"] == 30
    assert ns["model"].predict_proba(ns["X_new"]).shape == (5, 3)
    assert ns["model"].classes == ["red", "green", "blue"]


def test_objective_as_instance_or_class_and_a_dataset_run_resumes(tmp_path):
    from adakit.adapt.dann import DANN

    xs, ys, xt, yt = _arrays()
    wrong = DANN(DANN.Params(hidden=8), feature_dim=3, num_classes=2)
    with pytest.raises(ConfigError, match="built for feature_dim=3, num_classes=2, but the model has 4 and 2"):
        ActiveLoop(SMALL, tmp_path / "x", source=(xs, ys), target=(xt, yt), objective=wrong)
    right = DANN(DANN.Params(hidden=8), feature_dim=4, num_classes=2)
    loop = ActiveLoop(SMALL, tmp_path / "a", source=(xs, ys), target=(xt, yt), objective=right, show_progress=False)
    assert loop.objective is right and loop.cfg.objective.name == "dann"
    assert loop.cfg.objective.params() == {"hidden": 8}
    loop = ActiveLoop(SMALL, tmp_path / "b", source=_Items(xs, ys), target=_Items(xt, yt), objective=DANN,
                      show_progress=False)
    assert isinstance(loop.objective, DANN) and loop.cfg.objective.name == "dann"
    first = loop.run()
    again = ActiveLoop.resume(tmp_path / "b", source=_Items(xs, ys), target=_Items(xt, yt), show_progress=False)
    assert again.run()["rounds"] == first["rounds"]
    with pytest.raises(ConfigError, match="target= is not the data .* different labels"):
        ActiveLoop.resume(tmp_path / "b", source=_Items(xs, ys), target=_Items(xt, 1 - yt))


class _Photos(torch.utils.data.Dataset):
    """(PIL image, label) items, as torchvision's ImageFolder gives them without a transform."""

    def __init__(self, y, shift, seed):
        from PIL import Image

        rng = np.random.default_rng(seed)
        base = (rng.random((len(y), 20, 24, 3)) * 60 + shift).astype(np.uint8)
        base[..., 0] += (np.asarray(y) * 120).astype(np.uint8)[:, None, None]  # the class is in the red channel
        self.images, self.y = [Image.fromarray(b) for b in base], list(map(int, y))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.images[i], self.y[i]


def test_a_dataset_of_pil_images_is_read_as_image_files_are(tmp_path):
    """A Dataset of PIL images (ImageFolder without a transform) was stacked as (N, H, W, 3) pixels: the model got
    channels-last inputs. They are read as adakit reads image files: RGB, then the training / evaluation transform
    at data.image_size and data.resize."""
    from adakit.data.transforms import image_transform

    rng = np.random.default_rng(0)
    ys, yt = rng.integers(0, 2, 24), rng.integers(0, 2, 20)
    source, target = _Photos(ys, 10, 0), _Photos(yt, 30, 1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    cfg = {**SMALL, "data": {"image_size": 16, "resize": 18}}
    loop = ActiveLoop(cfg, tmp_path / "r", source=source, target=target, model=net, show_progress=False)
    x = loop.domains.pool.load(np.array([0, 1]))
    expected = torch.stack([image_transform(False, 16, 18)(target.images[i]) for i in (0, 1)])
    torch.testing.assert_close(x, expected)
    assert loop.domains.source.load(np.array([0]), train=True).shape == (1, 3, 16, 16)
    with pytest.raises(ConfigError, match="data.resize=12 is smaller than data.image_size=16"):  # (a raw ValueError)
        ActiveLoop({**SMALL, "data": {"image_size": 16, "resize": 12}}, tmp_path / "small", source=source,
                   target=target, model=net, show_progress=False)
    assert len(loop.run()["rounds"]) == 3
    # the finished run predicts on such a Dataset at its own sizes (it read them at 224 and refused the shape)
    import adakit

    model = adakit.load_run(tmp_path / "r", backbone=net)
    _, logits = loop.infer(loop.domains.pool)
    torch.testing.assert_close(torch.as_tensor(model.predict_proba(target)), torch.softmax(logits, 1))


def test_dataset_targets_follow_the_target_transform_and_are_checked_against_the_items():
    """torchvision's ImageFolder keeps .targets as folder indices while items pass through target_transform
    (how people line one domain's folders up with another's classes): adakit read .targets and trained on the
    untransformed labels, silently. Items (x, None) are unknown labels, not class names."""
    from adakit.data.objects import as_domain

    class Folders(torch.utils.data.Dataset):  # as torchvision.datasets.ImageFolder stores its labels
        def __init__(self, target_transform=None, targets=None):
            self.targets = targets if targets is not None else [0, 1, 2, 3, 0, 1, 2, 3]
            self.target_transform = target_transform

        def __len__(self):
            return 8

        def __getitem__(self, i):
            y = self.targets[i] if self.target_transform is None else self.target_transform(self.targets[i])
            return torch.full((3,), float(i)), y

    flip = {0: 3, 1: 2, 2: 1, 3: 0}
    dom = as_domain(Folders(target_transform=flip.get), "src", classes=["a", "b", "c", "d"])
    assert dom.y.tolist() == [3, 2, 1, 0, 3, 2, 1, 0]
    merged = as_domain(Folders(target_transform=lambda t: t // 2), "src", classes=["ab", "cd"])
    assert merged.y.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]

    class Stale(Folders):  # .targets edited after the fact, the items not
        def __getitem__(self, i):
            return torch.zeros(3), [0, 1, 2, 3, 0, 1, 2, 3][i]

    with pytest.raises(DataError, match=r"src: dataset.targets\[0\] is 3 but dataset\[0\] gives the label 0"):
        as_domain(Stale(targets=[3, 2, 1, 0, 3, 2, 1, 0]), "src", classes=["a", "b", "c", "d"])

    class Unknown(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(2), (None if i else 1)

    assert as_domain(Unknown(), "tgt", classes=["a", "b"]).y.tolist() == [1, -1, -1]


def test_tensor_targets_reach_the_target_transform_as_the_items_give_them():
    """torchvision's MNIST keeps .targets as a tensor and its items pass int(targets[i]) to target_transform. adakit
    passed the 0-d tensors themselves: a transform that looks labels up (a dict: flip.get, flip[...]) found none,
    and a valid dataset was refused as if its .targets disagreed with its items."""
    from adakit.data.objects import as_domain

    flip = {0: 3, 1: 2, 2: 1, 3: 0}

    class Digits(torch.utils.data.Dataset):  # as torchvision.datasets.MNIST stores and gives its labels
        targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
        target_transform = staticmethod(flip.get)

        def __len__(self):
            return 8

        def __getitem__(self, i):
            return torch.full((3,), float(i)), self.target_transform(int(self.targets[i]))

    dom = as_domain(Digits(), "src", classes=["a", "b", "c", "d"])
    assert dom.y.tolist() == [3, 2, 1, 0, 3, 2, 1, 0]


def test_a_module_whose_output_changes_in_training_mode_is_named(tmp_path):
    """torchvision's GoogLeNet returns a tuple of outputs in training mode only: the dry run (eval mode) passed and
    training failed with "'tuple' object has no attribute 'flatten'"; another width with a raw matmul error."""

    class TrainTuple(nn.Module):
        def __init__(self, wider_in_training=False):
            super().__init__()
            self.lin, self.wider = nn.Linear(6, 8), wider_in_training

        def forward(self, x):
            f = self.lin(x)
            if self.training:
                return torch.cat([f, f], 1) if self.wider else (f, f)
            return f

    rng = np.random.default_rng(0)
    data = {"source": (rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)),
            "target": (rng.normal(size=(30, 6)).astype(np.float32), rng.integers(0, 2, 30))}
    for module, got in ((TrainTuple(), "returned tuple"), (TrainTuple(True), r"returned \(\d+, 16\) \(16 features")):
        with pytest.raises(ConfigError, match=f"model=: in training mode your module {got}.*aux_logits=False"):
            ActiveLoop(SMALL, tmp_path / f"r{id(module)}", **data, model=module, show_progress=False).run()


def test_callbacks_and_an_objective_instance_are_checked_before_the_run_folder_exists(tmp_path):
    """callbacks=show (one function) was a raw TypeError, [1] or a one-argument function one after the ledger was
    written; a BIWAA instance built for another pool size an IndexError deep in training."""
    import adakit

    rng = np.random.default_rng(0)
    data = {"source": (rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)),
            "target": (rng.normal(size=(30, 6)).astype(np.float32), rng.integers(0, 2, 30))}
    seen = []

    def show(kind, info):
        seen.append(kind)

    for bad, message in (([1], "1 is not a function"), (3, "expected a list of functions"),
                         (lambda kind: None, r"cannot be called as callback\(kind, info\)")):
        with pytest.raises(ConfigError, match=message):
            ActiveLoop(SMALL, tmp_path / "r", **data, callbacks=bad, show_progress=False)
        assert not (tmp_path / "r").exists()
    biwaa = adakit.objective("biwaa", feature_dim=4, num_classes=2, pool_size=10)
    with pytest.raises(ConfigError, match=r"pool_size=10 target samples, but the target pool has 30; build it with "
                                          r"pool_size=30"):
        ActiveLoop(SMALL, tmp_path / "r", **data, objective=biwaa, show_progress=False)
    assert not (tmp_path / "r").exists()
    ActiveLoop(SMALL, tmp_path / "r", **data, callbacks=show, show_progress=False).run()  # one function, no list
    assert seen[0] == "started" and seen[-1] == "done"


def test_a_module_trained_in_place_by_an_interrupted_warm_up_starts_again_from_its_initial_weights(tmp_path,
                                                                                                     monkeypatch):
    """Interrupted after the warm-up trained your module in place but before its checkpoint: the resumed run
    (given the same object, now half trained) trained on from those weights and ended elsewhere than an
    uninterrupted run. The run folder keeps the module's initial weights until the warm-up's checkpoint exists."""
    from adakit.loop import INITIAL_MODULE

    rng = np.random.default_rng(0)
    data = {"source": (rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)),
            "target": (rng.normal(size=(30, 6)).astype(np.float32), rng.integers(0, 2, 30))}

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.ReLU())

    whole = net()
    expected = ActiveLoop(SMALL, tmp_path / "whole", **data, model=whole, show_progress=False).run()
    real_save = ActiveLoop._save_round

    def killed_before_the_warmup_checkpoint(self, r, iters, stats):
        if r == 0:
            raise KeyboardInterrupt
        real_save(self, r, iters, stats)

    module = net()
    monkeypatch.setattr(ActiveLoop, "_save_round", killed_before_the_warmup_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        ActiveLoop(SMALL, tmp_path / "cut", **data, model=module, show_progress=False).run()
    monkeypatch.setattr(ActiveLoop, "_save_round", real_save)
    assert (tmp_path / "cut" / INITIAL_MODULE).is_file()
    assert not torch.equal(module[0].weight, net()[0].weight)  # trained in place
    resumed = ActiveLoop.resume(tmp_path / "cut", **data, model=module, show_progress=False).run()
    assert [m["accuracy"] for m in resumed["rounds"]] == [m["accuracy"] for m in expected["rounds"]]
    assert torch.equal(module[0].weight, whole[0].weight)  # the same training from the same start
    assert not (tmp_path / "cut" / INITIAL_MODULE).exists()  # dropped once the warm-up's checkpoint was saved


def test_a_dataset_with_random_augmentation_resumes(tmp_path):
    """The fingerprint hashed items drawn through the dataset's random transform, so a run on a Dataset with random
    augmentation was refused on every resume ("not the data ... started with"). Items are read for the fingerprint
    with the global generators fixed; a transform with a generator of its own is warned about (size, shape and
    labels are still compared)."""
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)
    xt, yt = rng.normal(size=(30, 6)).astype(np.float32), rng.integers(0, 2, 30)

    class Jitter(torch.utils.data.Dataset):
        def __init__(self, x, y, own=False):
            self.x, self.y, self.own = x, y, np.random.default_rng() if own else None

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            own = self.own is not None
            noise = self.own.normal(size=6) if own else np.random.normal(size=6) + torch.randn(6).numpy()
            return torch.as_tensor(self.x[i] + 0.3 * noise, dtype=torch.float32), int(self.y[i])

    loop = ActiveLoop(SMALL, tmp_path / "r", source=Jitter(xs, ys), target=Jitter(xt, yt),
                      oracle=lambda idx: yt[idx], show_progress=False)
    loop.close()
    resumed = ActiveLoop.resume(tmp_path / "r", source=Jitter(xs, ys), target=Jitter(xt, yt),
                                oracle=lambda idx: yt[idx], show_progress=False)
    assert len(resumed.run()["rounds"]) == 3
    with pytest.raises(ConfigError, match="source= .* 39 samples instead of 40"):  # still checked
        ActiveLoop.resume(tmp_path / "r", source=Jitter(xs[:39], ys[:39]), target=Jitter(xt, yt),
                          oracle=lambda idx: yt[idx], show_progress=False)
    with pytest.warns(UserWarning, match="source: the dataset gives other values each time a sample is read"):
        ActiveLoop(SMALL, tmp_path / "own", source=Jitter(xs, ys, own=True), target=(xt, yt), show_progress=False)


def test_a_dataset_loader_workers_cannot_receive_is_named_before_the_run_folder_exists(tmp_path):
    """With spawn / forkserver (macOS; Linux from Python 3.14) loader workers get the Dataset pickled: one holding a
    lambda failed with a raw PicklingError at the first batch, after the run folder was made."""
    import multiprocessing

    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(20, 6)).astype(np.float32), rng.integers(0, 2, 20)

    class WithLambda(torch.utils.data.Dataset):
        def __init__(self):
            self.transform = lambda x: x + 1

        def __len__(self):
            return 20

        def __getitem__(self, i):
            return torch.as_tensor(self.transform(xs[i])), int(ys[i])

    cfg = {**SMALL, "train": {**SMALL["train"], "num_workers": 2}}
    real = multiprocessing.get_start_method()
    try:
        multiprocessing.set_start_method("spawn", force=True)
        with pytest.raises(ConfigError, match=r"train.num_workers=2: loader worker processes are started by 'spawn' "
                                              r"here .*no lambdas\), or train.num_workers=0"):
            ActiveLoop(cfg, tmp_path / "r", source=WithLambda(), target=(xs, ys), show_progress=False)
    finally:
        multiprocessing.set_start_method(real, force=True)
    assert not (tmp_path / "r").exists()


def test_a_dataset_holding_nan_keeps_its_value_check():
    """NaN != NaN: a deterministic Dataset with a missing value was taken for one that gives other values each time,
    warned about, and its rows were no longer compared on resume."""
    import warnings

    from adakit.data.objects import as_domain, fingerprint

    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    x[0, 1] = np.nan
    ds = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.tensor([0, 1, 0, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "rows" in fingerprint(as_domain(ds, "source", labelled=True))


def test_the_loader_worker_check_leaves_the_start_method_unset():
    """multiprocessing.get_start_method() fixes the start method as it answers: a script that set its own after
    building an ActiveLoop with train.num_workers > 0 failed with "context has already been set"."""
    import subprocess
    import sys

    code = ("import multiprocessing, numpy as np\n"
            "from adakit.data.objects import as_domain\n"
            "from adakit.data import Domains\n"
            "from adakit.loop import _check_workers_can_have\n"
            "d = as_domain((np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])), 'source', labelled=True)\n"
            "_check_workers_can_have(Domains(source=d, pool=d, test=d, protocol='transductive'), 2)\n"
            "multiprocessing.set_start_method('spawn')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_samples_without_values_are_refused_before_the_run_folder_exists(tmp_path):
    # X of shape (N, 0) used to train an MLP of input width 0 and report chance accuracy, with no word
    xs, ys, xt, yt = _arrays()
    with pytest.raises(DataError, match=r"source: X has shape \(60, 0\).*no values"):
        ActiveLoop(SMALL, tmp_path / "r", source=(xs[:, :0], ys), target=(xt[:, :0], yt), show_progress=False)
    with pytest.raises(DataError, match=r"target: X has shape \(50, 1, 0, 0\).*no values"):
        ActiveLoop(SMALL, tmp_path / "r", source=(np.zeros((60, 1, 4, 4)), ys), target=(np.zeros((50, 1, 0, 0)), yt),
                   show_progress=False)
    assert not (tmp_path / "r").exists()


def test_a_dataset_of_feature_rows_with_standardize_or_without_values_is_named(tmp_path):
    # data.standardize on a Dataset said only "applies to feature domains only"; a Dataset of (0,) rows trained an
    # MLP of input width 0
    xs, ys, xt, yt = _arrays()
    ds = torch.utils.data.TensorDataset
    with pytest.raises(ConfigError, match=r"domain 'source' is a torch Dataset with samples of shape \(5,\): set "
                                          r"data.standardize=false"):
        ActiveLoop({**SMALL, "data": {"standardize": True}}, tmp_path / "r", source=ds(torch.as_tensor(xs),
                   torch.as_tensor(ys)), target=ds(torch.as_tensor(xt), torch.as_tensor(yt)), show_progress=False)
    with pytest.raises(ConfigError, match=r"model.backbone='mlp' takes .* each sample has shape \(0,\)"):
        ActiveLoop(SMALL, tmp_path / "r", source=ds(torch.as_tensor(xs[:, :0]), torch.as_tensor(ys)),
                   target=ds(torch.as_tensor(xt[:, :0]), torch.as_tensor(yt)), show_progress=False)
    assert not (tmp_path / "r").exists()


def test_float64_columns_that_float32_flattens_are_warned_about():
    """Epoch timestamps (~1.7e9, varying by ~1) given as float64 became one value each in adakit's float32, before
    data.standardize: the run trained at chance without a word."""
    import warnings

    from adakit.data.objects import as_domain

    rng = np.random.default_rng(0)
    x = 1.7e9 + rng.normal(size=(50, 3))
    x[:, 1] = rng.normal(size=50)
    with pytest.warns(UserWarning, match=r"domain 'source': 2 of 3 float64 feature columns vary too little .*"
                                         r"column 0: values around 1.7e\+09, spread 1"):
        as_domain((x, rng.integers(0, 2, 50)), "source", labelled=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ordinary float64 rows, and float32 rows with an offset (already cast)
        as_domain((rng.normal(size=(50, 3)) * 1e6, rng.integers(0, 2, 50)), "target")
        as_domain(((1e6 + rng.normal(size=(50, 3))).astype(np.float32), rng.integers(0, 2, 50)), "target")


def test_a_training_loss_that_is_not_finite_is_warned_about(tmp_path):
    """A Dataset whose items hold NaN (not checked ahead of training, unlike arrays) trained NaN weights, and the
    run went on to query and report chance accuracy without a word."""
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)
    xt, yt = rng.normal(size=(30, 6)).astype(np.float32), rng.integers(0, 2, 30)
    xs[:, 2] = np.nan  # (every item: the first batch meets one)
    source = torch.utils.data.TensorDataset(torch.as_tensor(xs), torch.as_tensor(ys))
    with pytest.warns(RuntimeWarning, match=r"the training loss was not finite .*lower train.lr \(now .*; a large "
                                            r"train.weight_decay, now .*\), or look for NaN"):
        ActiveLoop(SMALL, tmp_path / "r", source=source, target=(xt, yt), show_progress=False).run()


def test_a_diverged_model_sends_no_queries_to_people(tmp_path):
    """With people as the oracle (oracle: file), a model whose training diverged (NaN weights) still chose a batch
    (arbitrary picks) and exported it for people to label. The run now stops before recording round 1's queries,
    naming the cause and the lr; with a labelling function the run goes on as before (a sweep records the diverged
    setting)."""
    from adakit.ledger import Ledger

    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)
    xt, yt = rng.normal(size=(30, 6)).astype(np.float32), rng.integers(0, 2, 30)
    xs[:, 2] = np.nan
    source = torch.utils.data.TensorDataset(torch.as_tensor(xs), torch.as_tensor(ys))
    with pytest.warns(RuntimeWarning, match="not finite"), \
            pytest.raises(ConfigError, match=r"round 1: the model's outputs on the target pool are NaN or infinite "
                                             r"\(its training diverged.*no queries were recorded or exported for "
                                             r"people to label\. The 0 label\(s\) given so far are kept in .*"
                                             r"ledger.sqlite\. Start a new run with a lower train.lr \(now"):
        ActiveLoop(SMALL, tmp_path / "people", source=source, target=xt, oracle="file", show_progress=False).run()
    with Ledger(tmp_path / "people" / "ledger.sqlite") as led:
        assert led.round_status(1) is None and led.queries(1) == []
    assert not (tmp_path / "people" / "queries").exists()
    loop = ActiveLoop.resume(tmp_path / "people", source=source, target=xt, show_progress=False)
    with pytest.raises(ConfigError, match="round 1: the model's outputs on the target pool are NaN"):
        loop.select_round(2)  # adakit query: the same
    assert not (tmp_path / "people" / "queries").exists()
    asked = []
    with pytest.warns(RuntimeWarning, match="not finite"):
        ActiveLoop(SMALL, tmp_path / "function", source=source, target=xt, show_progress=False,
                   oracle=lambda idx: asked.append(len(idx)) or yt[idx]).run()
    assert sum(asked) == SMALL["budget"]["total"]


def test_a_strategy_given_as_an_object_keeps_the_query_sections_own_keys():
    """``strategy=`` replaces the strategy and its parameters, not the section's own keys (``probs_from``)."""
    from adakit.loop import _with_objects

    config = {"query": {"strategy": "las", "probs_from": "probe", "k": 7}}
    for given in ("margin", ("margin", {}), MarginSampling(MarginSampling.Params()), MarginSampling):
        cfg = _with_objects(config, None, None, None, None, None, None, None, given, None)[0]
        assert (cfg.query.strategy, cfg.query.probs_from, cfg.query.params()) == ("margin", "probe", {})
    cfg = _with_objects(config, None, None, None, None, None, None, None, ("entropy", {"probs_from": "model"}),
                        None)[0]
    assert cfg.query.probs_from == "model"


def test_complex_and_non_numeric_arrays_are_named_not_cast(tmp_path):
    """Complex X lost its imaginary part with no more than torch's cast warning (a run trained on the real parts);
    an object array holding text was 'expected a numpy array or torch tensor, got ndarray'. Both are now a
    DataError naming the domain and the dtype, for ActiveLoop and for load_run(...).predict alike."""
    import adakit
    from adakit.data.objects import as_domain

    x = np.random.default_rng(0).normal(size=(8, 3))
    for bad in (x.astype(np.complex64), torch.tensor(x, dtype=torch.complex64)):
        with pytest.raises(DataError, match=r"source X: complex values \(.*complex64\); give real numbers"):
            as_domain((bad, np.arange(8) % 2), "source", labelled=True)
    mixed = x.astype(object)
    mixed[0, 0] = "a"
    with pytest.raises(DataError, match=r"target X: must hold numbers, got dtype object"):
        as_domain(mixed, "target")
    assert as_domain(x.astype(object), "target").x.shape == (8, 3)  # numbers stored as objects are numbers
    assert as_domain(x > 0, "target").x.dtype == torch.float32  # (binary features stay accepted)
    with pytest.raises(DataError, match=r"source X: complex values"):  # before the run folder exists
        ActiveLoop(SMALL, tmp_path / "run", source=(x.astype(complex), np.arange(8) % 2), target=x)
    assert not (tmp_path / "run").exists()
    ActiveLoop({**SMALL, "budget": {"total": 2, "rounds": 1}}, tmp_path / "ok", source=(x, np.arange(8) % 2),
               target=(x, np.arange(8) % 2), show_progress=False).run()
    m = adakit.load_run(tmp_path / "ok", device="cpu")
    with pytest.raises(DataError, match=r"input: complex values"):
        m.predict(x.astype(complex))
    assert m.predict(x.astype(object)).shape == (8,)


def test_scipy_sparse_feature_rows_are_read_as_their_dense_rows():
    """ActiveLoop(source=(X_sparse, y)), as load_svmlight_file returns them, failed on np.asarray of the matrix (a 0-d
    object array); load_run(...).predict took them. Both now read the dense rows."""
    sp = pytest.importorskip("scipy.sparse")
    from adakit.data.objects import as_domain

    x = np.random.default_rng(0).normal(size=(8, 3)) * (np.arange(24).reshape(8, 3) % 3 == 0)
    y = np.arange(8) % 2
    for given in ((sp.csr_matrix(x), y), (sp.csr_array(x), y), sp.coo_matrix(x)):
        dom = as_domain(given, "source" if isinstance(given, tuple) else "target", labelled=isinstance(given, tuple))
        np.testing.assert_array_equal(dom.x.numpy(), x.astype(dom.x.numpy().dtype))


def test_a_class_list_as_text_a_set_or_with_blank_names_and_an_oracle_of_another_signature_are_refused(tmp_path):
    """classes="abc" became the classes 'a', 'b', 'c'; a set gave an order that changes between processes (string
    hashing), so a resumed run refused its own class list or meant other classes by the same labels; a blank name
    is what a labelling function or an answers file says for "no answer". An oracle that cannot be called as
    labels_for(indices) failed with a TypeError after the warm-up had trained. All are now refused before the run
    folder exists, naming the argument."""
    xs, ys, xt, yt = _arrays()
    out = tmp_path / "r"
    for classes, message in (("ab", r"classes=: got the text 'ab'; pass a list of class names"),
                             ({"neg", "pos"}, r"classes=: got a set, whose order .* pass a list"),
                             (["neg", " "], r"classes=: class 1 has a blank name ' '")):
        with pytest.raises(ConfigError, match=message):
            ActiveLoop(SMALL, out, source=(xs, ys), target=(xt, yt), classes=classes)
    with pytest.raises(ConfigError, match=r"oracle=: <lambda>\(\) cannot be called as labels_for\(indices\)"):
        ActiveLoop(SMALL, out, source=(xs, ys), target=(xt, None), oracle=lambda: None)
    assert not out.exists()
    loop = ActiveLoop(SMALL, out, source=(xs, ys), target=(xt, None), classes=("neg", "pos"), show_progress=False,
                      oracle=lambda idx, *more, unsure=None: yt[idx])  # (extra optional parameters are fine)
    assert loop.domains.classes == ["neg", "pos"] and loop.run()["rounds"] == []


def test_select_round_from_python_checks_its_budget_before_selecting(tmp_path):
    """loop.select_round(2.5) failed with 'slice indices must be integers' inside the strategy, '3' with a
    comparison TypeError, True asked one sample; the range error named the CLI's --budget only. Now every
    budget that is not a whole number in range is a DataError naming budget= and the range, nothing recorded."""
    xs, ys, xt, yt = _arrays()
    ActiveLoop(SMALL, tmp_path / "r", source=(xs, ys), target=(xt, yt), show_progress=False).run()
    with ActiveLoop.resume(tmp_path / "r", source=(xs, ys), target=(xt, yt), show_progress=False) as loop:
        for bad in (2.5, "3", True, 0, 45):
            with pytest.raises(DataError, match=rf"select_round: budget={bad!r} \(adakit query --budget\): choose a "
                                                r"whole number between 1 and 44"):
                loop.select_round(bad)
        assert loop.ledger.round_status(3) is None
        # under torchrun only rank 0 holds the ledger: select_round is refused there (a script calling it failed on
        # rank 1), nothing recorded
        from adakit.distributed import DistInfo

        single, loop.dist = loop.dist, DistInfo(rank=1, world_size=2, backend="gloo")
        with pytest.raises(ConfigError, match=r"select_round \(adakit query\) runs in one process"):
            loop.select_round(2)
        loop.dist = single
        r = loop.select_round(np.int64(2))
        assert r == 3 and len(loop.ledger.open_queries(r)) == 2


def test_a_strategy_or_objective_of_another_form_is_named_by_its_keyword(tmp_path):
    """strategy=("las", 5) or ["las", {...}] was refused as 'query=: expected ...', a keyword ActiveLoop does not
    have; the error now names strategy= (objective= for the objective) and shows the accepted forms."""
    xs, ys, xt, yt = _arrays()
    for given in (("las", 5), ["las", {"k": 5}], {"strategy": "las"}, 3):
        with pytest.raises(ConfigError, match=r"^strategy=: expected a name \('margin'\), \(name, params dict\) "
                                              r"\(\('las', \{'k': 5\}\)\), or a registered Strategy class or instance; "
                                              rf"got {type(given).__name__}"):
            ActiveLoop(SMALL, tmp_path / "r", source=(xs, ys), target=(xt, yt), strategy=given)
    with pytest.raises(ConfigError, match=r"^objective=: expected a name \('dann'\), .* Objective class or instance"):
        ActiveLoop(SMALL, tmp_path / "r", source=(xs, ys), target=(xt, yt), objective=("dann", 1.0))
    assert not (tmp_path / "r").exists()


def test_a_partly_labelled_test_set_says_how_many_samples_its_accuracy_counts(tmp_path):
    """Accuracy counts the test samples with a label only; nothing said how many those were."""
    xs, ys, xt, yt = _arrays()
    y_test = yt[:20].copy()
    y_test[:5] = -1
    s = ActiveLoop(SMALL, tmp_path / "r", source=(xs, ys), target=(xt, yt), test=(xt[:20], y_test),
                   show_progress=False).run()
    assert (s["test_samples"], s["test_labelled"]) == (20, 15)
    assert "accuracy counts the 15 of the 20 test samples that have a label (the other 5 have none)" in \
        (tmp_path / "r" / "report.md").read_text()
    full = ActiveLoop(SMALL, tmp_path / "f", source=(xs, ys), target=(xt, yt), test=(xt[:20], yt[:20]),
                      show_progress=False).run()
    assert full["test_labelled"] == full["test_samples"] == 20
    assert "test samples that have a label" not in (tmp_path / "f" / "report.md").read_text()
