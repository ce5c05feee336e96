"""`adakit.load_run`: a finished run as a model, rebuilt from the ledger and its last checkpoint."""

import os

import numpy as np
import pytest
import torch
from torch import nn

import adakit
from adakit.config import build_config
from adakit.errors import ConfigError, DataError
from adakit.inference import forward_domain
from adakit.loop import ActiveLoop
from adakit.rundir import CheckpointError

SMALL = {"seed": 0, "model": {"hidden_dim": 16, "bottleneck_dim": 8}, "query": {"strategy": "margin"},
         "budget": {"total": 10, "rounds": 1}, "train": {"warmup_iters": 10, "round_iters": 5, "threads": 1}}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo-run")
    loop = ActiveLoop(build_config(SMALL), run_dir, show_progress=False)
    loop.run()
    return loop


class _X(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_load_run_predicts_like_the_run_without_its_data(demo_run, monkeypatch):
    import adakit.data

    def no_data(*a, **k):
        raise AssertionError("load_run must not load the experiment's data")

    monkeypatch.setattr(adakit.data, "load_domains", no_data)
    m = adakit.load_run(demo_run.run_dir, device="cpu")
    test = demo_run.domains.test
    feats, logits = forward_domain(demo_run.model, test, 256, "cpu")
    x = test.x.numpy()
    np.testing.assert_allclose(m.predict_proba(x), torch.softmax(logits, 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(m.embed(torch.as_tensor(x)), feats.numpy(), atol=1e-5)
    assert (m.predict(x) == logits.argmax(1).numpy()).all()
    assert (m.predict(_X(test.x)) == m.predict(x)).all()  # a Dataset, batched
    assert (m.predict((x, test.y)) == m.predict(x)).all()  # an (X, y) pair: y ignored
    assert (m.predict(x[:2].tolist()) == m.predict(x[:2])).all()  # a list of rows is rows, not an (X, y) pair
    assert m.classes == list(test.classes) and m.config.query.strategy == "margin" and m.round == 1
    assert [r["round"] for r in m.metrics] == [0, 1] and m.metrics[-1]["labels"] == 10
    labels = m.labels
    assert len(labels) == 10 and {r["annotator"] for r in labels} == {"oracle"}
    assert all(test.y[r["pool_index"]] == r["label"] and r["class"] == m.classes[r["label"]] for r in labels)
    with pytest.raises(DataError, match="samples of shape \\(3,\\), but the run .* shape \\(64,\\)"):
        m.predict(np.zeros((2, 3), np.float32))
    # no samples: empty outputs of the right widths; a dict is named, not read as a Dataset
    assert m.predict(x[:0]).shape == (0,) and m.predict_proba(x[:0]).shape == (0, len(m.classes))
    assert m.embed(x[:0]).shape == (0, feats.shape[1])
    with pytest.raises(DataError, match="samples of shape \\(3,\\)"):
        m.predict(np.zeros((0, 3), np.float32))
    with pytest.raises(DataError, match=r"input: one sample of shape \(64,\); pass a batch of shape \(N, \*\(64,\)\), "
                       r"e.g. X\[None\]"):  # it said "samples of shape ()"
        m.predict(x[0])
    assert (m.predict(x[0][None]) == m.predict(x)[:1]).all()
    with pytest.raises(DataError, match="input: got a dict; pass the samples as an array"):
        m.predict({"x": x})
    for device, msg in (("gpu0", "device='gpu0' is not a torch device"), ("mps", "runs on cpu or cuda devices")):
        with pytest.raises(ConfigError, match=msg):
            adakit.load_run(demo_run.run_dir, device=device)


class Net(nn.Module):
    def __init__(self, width: int = 12):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, width), nn.Tanh())

    def forward(self, x):
        return self.body(x)


def test_a_dataframe_is_rows_not_a_dataset_of_columns(demo_run, tmp_path):
    """df[i] is column i: a DataFrame (anything with __array__ or to_numpy) must be read as an array of rows."""
    pd = pytest.importorskip("pandas")
    x = demo_run.domains.test.x.numpy()[:64]  # square: 64 rows of 64 features, where columns would fit too
    m = adakit.load_run(demo_run.run_dir, device="cpu")
    assert (m.predict(pd.DataFrame(x)) == m.predict(x)).all() and (m.predict(x) != m.predict(x.T)).any()
    src, tgt = demo_run.domains.source, demo_run.domains.pool
    loop = ActiveLoop({**SMALL, "budget": {"total": 0, "rounds": 0}}, tmp_path / "r", show_progress=False,
                      source=(pd.DataFrame(src.x.numpy()), pd.Series(src.y)), target=pd.DataFrame(tgt.x.numpy()))
    assert tuple(loop.domains.pool.x.shape) == tuple(tgt.x.shape)
    loop.close()


def test_load_run_of_a_custom_backbone_run_needs_the_module(tmp_path):
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(40, 5)).astype(np.float32), rng.normal(size=(30, 5)).astype(np.float32)
    ys, yt = (xs[:, 0] > 0).astype(int), (xt[:, 0] > 0).astype(int)
    loop = ActiveLoop({**SMALL, "budget": {"total": 4, "rounds": 1}}, tmp_path, source=(xs, ys), target=(xt, yt),
                      model=Net(), classes=["no", "yes"], show_progress=False)
    loop.run()
    with pytest.raises(ConfigError, match="your own backbone .*Net.*backbone=MyNet"):
        adakit.load_run(tmp_path)
    from typer.testing import CliRunner

    from adakit.cli import app

    np.savez(tmp_path / "new.npz", feat=xt)  # from the command line: how to get the CSV without it
    res = CliRunner().invoke(app, ["predict", str(tmp_path), str(tmp_path / "new.npz"), "--out",
                                   str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and "adakit predict cannot build your module" in res.output \
        and ".predict_file(INPUT, 'preds.csv')" in res.output, res.output
    with pytest.raises(ConfigError, match="trained with a .*Net, not a .*Linear"):
        adakit.load_run(tmp_path, backbone=nn.Linear(5, 12))
    with pytest.raises(ConfigError, match="gives 7 features, but the run's backbone gave 12"):
        adakit.load_run(tmp_path, backbone=Net(width=7))
    m = adakit.load_run(tmp_path, backbone=Net())
    _, logits = forward_domain(loop.model, loop.domains.test, 256, "cpu")
    np.testing.assert_allclose(m.predict_proba(xt), torch.softmax(logits, 1).numpy(), atol=1e-5)
    assert m.classes == ["no", "yes"]


def test_load_run_names_a_missing_or_damaged_checkpoint(tmp_path):
    loop = ActiveLoop(build_config(SMALL), tmp_path / "fresh", show_progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        adakit.load_run(tmp_path / "fresh")
    loop.ledger.close()
    run = tmp_path / "run"
    ActiveLoop(build_config({**SMALL, "budget": {"total": 0, "rounds": 0}}), run, show_progress=False).run()
    ck = run / "checkpoints" / "round-0.pt"
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="round 0 is unreadable: .*round-0.pt"):
        adakit.load_run(run)
    ck.unlink()
    with pytest.raises(CheckpointError, match="round 0 is missing: .*round-0.pt"):
        adakit.load_run(run)
    with pytest.raises(ConfigError, match="nowhere does not exist: give the folder of a run"):
        adakit.load_run(tmp_path / "nowhere")  # (it said "not a run folder")
    with pytest.raises(ConfigError, match="not a run folder"):
        adakit.load_run(tmp_path)


@pytest.mark.parametrize("source_val", [0.0, 0.25])
def test_load_run_standardizes_raw_features_like_the_run(tmp_path, source_val):
    """Also with a held-out source split: the training source is then a subset of the loaded one, and the subset
    lost the standardisation statistics, so load_run fed raw features to the model (probabilities far off)."""
    rng = np.random.default_rng(2)
    for name in ("s", "t"):
        np.savez(tmp_path / f"{name}.npz", feat=rng.normal(5.0, 3.0, size=(40, 4)).astype(np.float32),
                 y=np.arange(40) % 2, classes=np.array(["a", "b"]))
    cfg = {**SMALL, "budget": {"total": 0, "rounds": 0},
           "data": {"format": "npz", "root": str(tmp_path), "source": "s", "target": "t", "standardize": True,
                    "source_val": source_val}}
    loop = ActiveLoop(build_config(cfg), tmp_path / "run", show_progress=False)
    loop.run()
    _, logits = forward_domain(loop.model, loop.domains.test, 256, "cpu")  # standardized in memory
    raw = np.load(tmp_path / "t.npz")["feat"]
    m = adakit.load_run(tmp_path / "run")
    np.testing.assert_allclose(m.predict_proba(raw), torch.softmax(logits, 1).numpy(), atol=1e-5)


def test_run_with_a_relative_data_root_resumes_from_another_folder(tmp_path, monkeypatch):
    """The stored config holds the absolute root, so `adakit resume` and load_run find the data from anywhere."""
    rng = np.random.default_rng(3)
    (tmp_path / "proj" / "data").mkdir(parents=True)
    for name in ("s", "t"):
        np.savez(tmp_path / "proj" / "data" / f"{name}.npz", feat=rng.normal(size=(30, 4)).astype(np.float32),
                 y=np.arange(30) % 3)
    monkeypatch.chdir(tmp_path / "proj")
    cfg = {**SMALL, "data": {"format": "npz", "root": "data", "source": "s", "target": "t"}}
    ActiveLoop(build_config(cfg), "run", show_progress=False).run()
    monkeypatch.chdir(tmp_path)
    loop = ActiveLoop.resume(tmp_path / "proj" / "run", show_progress=False)  # loads the data: no DataError
    assert loop.cfg.data.root == str(tmp_path / "proj" / "data")
    assert len(loop.domains.pool) == 30
    loop.close()


def test_a_chosen_checkpoint_whose_file_is_gone_is_named_as_chosen(tmp_path):
    """A deleted warm-up checkpoint was reported as "checkpoint of round 0 is missing", and a deleted round-0.pt
    (which a run keeps) as an intermediate round's weights deleted by the run."""
    run = tmp_path / "run"
    cfg = {**SMALL, "budget": {"total": 4, "rounds": 2}, "train": {**SMALL["train"], "eval_checkpoints": 2}}
    ActiveLoop(build_config(cfg), run, show_progress=False).run()
    with adakit.load_run(run)._ledger() as led:
        steps = [row["step"] for row in led.get_meta("warmup_checkpoints")]
    warm = run / "checkpoints" / f"warmup-{steps[0]}.pt"
    assert warm.is_file()
    warm.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=f"checkpoint of warm-up step {steps[0]} is unreadable: .*warmup-"):
        adakit.load_run(run, checkpoint=f"warm-up step {steps[0]}")
    warm.unlink()
    with pytest.raises(CheckpointError, match=f"checkpoint of warm-up step {steps[0]} is missing: .*warmup-"):
        adakit.load_run(run, checkpoint=f"warm-up step {steps[0]}")
    (run / "checkpoints" / "round-0.pt").unlink()
    with pytest.raises(CheckpointError, match=r"the model of round 0 is missing: .*round-0.pt \(a run keeps round 0"):
        adakit.load_run(run, checkpoint=0)
    with pytest.raises(CheckpointError, match="the model of round 1 is not kept"):
        adakit.load_run(run, checkpoint="round 1")
    assert adakit.load_run(run, checkpoint=2).round == 2


def test_a_run_trained_on_a_device_this_machine_lacks_says_to_pass_another(tmp_path):
    """A run trained with train.device=cuda:N and loaded on a machine without that GPU: the error advised
    `adakit resume --set train.device=cpu`, which does not apply to predicting; it now names --device / device=."""
    from typer.testing import CliRunner

    from adakit.cli import app
    from adakit.ledger import Ledger

    run = tmp_path / "run"
    ActiveLoop(build_config({**SMALL, "budget": {"total": 0, "rounds": 0}}), run, show_progress=False).run()
    with Ledger(run / "ledger.sqlite") as led:  # as if it had trained on a GPU this machine does not have
        cfg = led.get_meta("config")
        led.set_meta("config", {**cfg, "train": {**cfg["train"], "device": "cuda:99"}})
    with pytest.raises(ConfigError, match=r"trained on train.device='cuda:99', which this machine cannot use .*"
                                          r"--device cpu \(device='cpu'\)"):
        adakit.load_run(run)
    assert adakit.load_run(run, device="cpu").device == torch.device("cpu")
    x = np.zeros((2, 64), np.float32)
    np.savez(tmp_path / "x.npz", feat=x)
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "x.npz"), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and "--device cpu" in res.output, res.output
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "x.npz"), "--out", str(tmp_path / "p.csv"),
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output


def test_load_run_of_a_run_training_now_takes_the_round_saved_meanwhile(tmp_path, monkeypatch):
    """While a run trains, its last checkpoint can be superseded (the next round saved, this one deleted) between
    load_run reading the ledger and reading the file: that said "checkpoint of round 1 is missing; restore it from
    a backup, or start the run again". It now takes the round saved meanwhile."""
    from adakit.ledger import Ledger

    run = tmp_path / "run"
    ActiveLoop(build_config({**SMALL, "budget": {"total": 4, "rounds": 2}}), run, show_progress=False).run()
    assert not (run / "checkpoints" / "round-1.pt").exists()  # round 1's file was deleted when round 2 was saved
    real = Ledger.last_checkpoint
    calls = []

    def as_read_before_round_2(self):
        calls.append(1)
        return (1, "checkpoints/round-1.pt") if len(calls) == 1 else real(self)

    monkeypatch.setattr(Ledger, "last_checkpoint", as_read_before_round_2)
    (run / "summary.json").rename(run / "summary.json.bak")  # (training now: not finished)
    with pytest.warns(UserWarning, match="is not finished"):
        m = adakit.load_run(run)
    assert m.round == 2 and len(calls) == 2
    # a run training right now (its lock held) is named as such, not sent to `adakit resume`
    from adakit.rundir import acquire

    release = acquire(run)
    try:
        with pytest.warns(UserWarning, match=rf"is not finished: .*\(it is training now, in PID {os.getpid()} "):
            adakit.load_run(run)
    finally:
        release()
    with pytest.warns(UserWarning, match="adakit resume"):
        adakit.load_run(run)


@pytest.mark.parametrize("model, key, value, loaded", [
    ({"backbone": "identity", "bottleneck_dim": 8}, "model.weights", "never-read.pt", None),  # refused since 12-04
    ({"backbone": "identity", "bottleneck_dim": 0}, "model.dropout", 0.5, 0.0),  # no layer applied it; since 12-05
    # refused since 2026-12-05 (`adakit.config.unread_settings`): no mlp, no cosine head, no pretrained backbone
    ({"backbone": "identity", "bottleneck_dim": 8}, "model.hidden_dim", 64, 1024),
    ({"hidden_dim": 16, "bottleneck_dim": 8}, "model.temperature", 0.5, 0.05),
    ({"hidden_dim": 16, "bottleneck_dim": 8}, "train.backbone_lr_mult", 1.0, 0.1),
])
def test_a_stored_run_with_a_setting_it_ignored_loads_and_resumes(tmp_path, model, key, value, loaded):
    """Runs stored while a setting was ignored (model.weights beside the identity backbone, model.dropout without an
    mlp backbone or a bottleneck, model.hidden_dim without the mlp, model.temperature without the cosine head,
    train.backbone_lr_mult without a pretrained backbone; each refused since) load, resume and compare equal to the
    same config without it."""
    from adakit.ledger import Ledger
    from adakit.rundir import config_changes

    section, field = key.split(".")
    run = tmp_path / "run"
    cfg = build_config({**SMALL, "model": model})
    ActiveLoop(cfg, run, show_progress=False).run()
    with Ledger(run / "ledger.sqlite") as led:
        stored = led.get_meta("config")
        stored[section][field] = str(tmp_path / value) if field == "weights" else value
        led.set_meta("config", stored)
    assert getattr(getattr(adakit.load_run(run).config, section), field) == loaded  # (each raised the refusal)
    assert getattr(getattr(ActiveLoop.resume(run, show_progress=False).cfg, section), field) == loaded
    assert config_changes(stored, cfg) == ""


def test_a_stored_run_with_every_default_written_out_resumes_and_runs_again(tmp_path):
    """A run's stored config and config.yaml hold every key, model.hidden_dim, model.temperature and
    train.backbone_lr_mult included, whatever the backbone and head: it resumes, and its config.yaml runs again in
    another folder (`adakit run RUN/config.yaml --out NEW`, as adakit's messages suggest)."""
    from typer.testing import CliRunner

    from adakit.cli import app
    from adakit.config import load_config

    run = tmp_path / "run"
    cfg = build_config({**SMALL, "model": {"backbone": "identity", "bottleneck_dim": 8}})
    ActiveLoop(cfg, run, show_progress=False).run()
    written = (run / "config.yaml").read_text()
    assert "hidden_dim: 1024" in written and "temperature: 0.05" in written and "backbone_lr_mult: 0.1" in written
    assert "hidden_dim" in load_config(run / "config.yaml").model.model_fields_set
    assert ActiveLoop.resume(run, show_progress=False).cfg == cfg
    res = CliRunner().invoke(app, ["run", str(run / "config.yaml"), "--out", str(tmp_path / "again"), "--quiet"])
    assert res.exit_code == 0, res.output


def test_load_run_refuses_a_batch_size_that_is_not_a_positive_integer(demo_run):
    """batch_size=-1 gave empty predictions without a word (range(0, N, -1) is empty), 2.5 a TypeError from range,
    0 the run's default: each is now a ConfigError naming batch_size= before anything is loaded (as `adakit predict
    --batch-size` refuses them)."""
    x = demo_run.domains.test.x.numpy()[:5]
    for bad in (-1, 0, 2.5, True, "8"):
        with pytest.raises(ConfigError, match=rf"load_run: batch_size= must be a whole number ≥ 1 .*got {bad!r}"):
            adakit.load_run(demo_run.run_dir, device="cpu", batch_size=bad)
    m = adakit.load_run(demo_run.run_dir, device="cpu", batch_size=np.int64(2))
    assert m.batch_size == 2 and m.predict(x).shape == (5,)
    assert (m.predict(x) == adakit.load_run(demo_run.run_dir, device="cpu").predict(x)).all()


def test_a_tuple_of_rows_is_rows_and_an_x_y_pair_is_a_pair(demo_run):
    """predict(tuple(X)) took the tuple for an (X, y) pair and said 'one sample of shape (64,); pass a batch', though
    it holds N rows; a tuple is now an (X, y) pair only when it has two items and the first is a batch."""
    x = demo_run.domains.test.x.numpy()[:5]
    m = adakit.load_run(demo_run.run_dir, device="cpu")
    ref = m.predict(x)
    assert (m.predict(tuple(x)) == ref).all()
    assert (m.predict((x[0], x[1])) == ref[:2]).all()  # two rows, not (X, y)
    assert (m.predict((x, None)) == ref).all() and (m.predict((x, np.zeros(5))) == ref).all()
    assert (m.predict((x[:1], [0])) == ref[:1]).all()  # a pair whose X holds one sample
