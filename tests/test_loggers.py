"""Hooks: the loop's events (documented fields, JSON values, order) and the TensorBoard / MLflow loggers,
each checked by reading back what it wrote."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from adakit.callbacks import EVENTS, MLflowLogger, TensorBoardLogger, flatten
from adakit.config import build_config
from adakit.errors import ConfigError
from adakit.loop import ActiveLoop

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

TINY = {
    "name": "hooks-test",
    "seed": 1,
    "data": {"format": "demo"},
    "model": {"backbone": "mlp", "hidden_dim": 16, "bottleneck_dim": 8},
    "query": {"strategy": "margin"},
    "budget": {"total": 0.02, "rounds": 2},
    "train": {"warmup_iters": 20, "round_iters": 10, "threads": 1},
}


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One tiny run with both loggers switched on in the config, plus every event it emitted."""
    run_dir = tmp_path_factory.mktemp("hooks") / "run"
    events = []
    values = {**TINY, "log": {"tensorboard": True, "mlflow": True}}
    summary = ActiveLoop(build_config(values), run_dir, show_progress=False,
                         callbacks=[lambda kind, info: events.append((kind, info))]).run()
    return run_dir, events, summary


def _scalars(log_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    texts = {tag: acc.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in acc.Tags()["tensors"]}
    return scalars, texts


def test_events_have_their_documented_fields_json_values_and_order(logged_run):
    run_dir, events, summary = logged_run
    kinds = [k for k, _ in events]
    assert kinds == ["started", "trained", "evaluated",
                     "queried", "labelled", "trained", "evaluated",
                     "queried", "labelled", "trained", "evaluated", "done"]
    for kind, info in events:
        assert set(EVENTS[kind][1]) <= set(info), (kind, sorted(info))
        assert json.loads(json.dumps(info)) == info, kind  # plain JSON values only
        if kind not in ("started", "done"):
            assert isinstance(info["round"], int)
    started = events[0][1]
    assert started["run_dir"] == str(run_dir) and started["config"]["name"] == "hooks-test"
    assert started["budgets"] == summary["budget"]["per_round"] and started["rounds"] == 2
    labelled = [info for kind, info in events if kind == "labelled"]
    assert [i["labels"] for i in labelled] == [m["labels"] for m in summary["rounds"][1:]]
    assert [i["count"] for i in labelled] == summary["budget"]["per_round"]
    trained = [info for kind, info in events if kind == "trained"]
    assert [i["iters"] for i in trained] == [20, 10, 10] and all("loss" in i for i in trained)
    assert events[-1][1] == summary


def test_every_event_is_in_the_readme_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    hooks = readme.split("### Hooks", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \|[^|]*\|([^|]*)\|", hooks, flags=re.M))
    assert set(rows) == set(EVENTS)
    for kind, (_, fields) in EVENTS.items():
        for f in fields:
            assert f"`{f}`" in rows[kind], (kind, f)


def test_tensorboard_logger_from_config_writes_curves_losses_query_time_and_config(logged_run):
    run_dir, events, summary = logged_run
    scalars, texts = _scalars(run_dir / "tensorboard")
    rounds = summary["rounds"]
    assert scalars["target/accuracy"] == [(m["round"], pytest.approx(m["accuracy"])) for m in rounds]
    assert scalars["target_vs_labels/accuracy"] == [(m["labels"], pytest.approx(m["accuracy"])) for m in rounds]
    assert [s for s, _ in scalars["train/loss"]] == [0, 1, 2]
    trained = [info for kind, info in events if kind == "trained"]
    assert [v for _, v in scalars["train/ce_source"]] == pytest.approx([i["ce_source"] for i in trained])
    assert scalars["query/seconds"] == [(r, pytest.approx(s)) for r, s in zip((1, 2), summary["query_seconds"])]
    assert "query:" in texts["config/text_summary"] and "strategy: margin" in texts["config/text_summary"]


def test_mlflow_logger_from_config_writes_params_metrics_and_status(logged_run):
    from mlflow.tracking import MlflowClient

    run_dir, _, summary = logged_run
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("hooks-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags[MLflowLogger.TAG] == str(run_dir.resolve())
    params = run.data.params
    assert params["query.strategy"] == "margin" and params["data.format"] == "demo"
    assert params["train.round_iters"] == "10" and "log.mlflow" not in params  # settings a run may change: tags
    assert run.data.tags["log.mlflow"] == "True" and run.data.tags["train.device"] == "auto"
    hist = client.get_metric_history(run.info.run_id, "target/accuracy")
    assert sorted((m.step, m.value) for m in hist) == [(m["round"], pytest.approx(m["accuracy"]))
                                                      for m in summary["rounds"]]
    by_labels = client.get_metric_history(run.info.run_id, "target_vs_labels/accuracy")
    assert sorted(m.step for m in by_labels) == [m["labels"] for m in summary["rounds"]]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3
    assert len(client.get_metric_history(run.info.run_id, "query/seconds")) == 2
    assert run.data.metrics["final_accuracy"] == pytest.approx(summary["final_accuracy"])


def test_a_round_a_kill_kept_from_the_loggers_is_added_when_the_run_continues(tmp_path, monkeypatch):
    """A kill between the ledger's commit of a round's metrics and the ``evaluated`` event left the round out of
    TensorBoard and MLflow for good. The ``started`` event of the continued run lists the rounds already scored;
    each logger adds those it lacks, once."""
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    values = {**TINY, "log": {"tensorboard": True, "mlflow": True}}
    real = {cls: cls.__call__ for cls in (TensorBoardLogger, MLflowLogger)}

    def killed_at_round_1(cls):
        def call(self, kind, info):
            if kind == "evaluated" and info["round"] == 1:
                raise KeyboardInterrupt  # as a kill after the commit, before any logger got the event
            real[cls](self, kind, info)
        return call

    for cls in real:
        monkeypatch.setattr(cls, "__call__", killed_at_round_1(cls))
    with pytest.raises(KeyboardInterrupt), ActiveLoop(build_config(values), run_dir, show_progress=False) as loop:
        loop.run()
    for cls in real:
        monkeypatch.setattr(cls, "__call__", real[cls])
    started = []
    with ActiveLoop.resume(run_dir, show_progress=False,
                           callbacks=[lambda k, i: started.append(i) if k == "started" else None]) as loop:
        summary = loop.run()
    assert [row["round"] for row in started[0]["evaluated"]] == [0, 1]
    assert started[0]["evaluated"][1]["accuracy"] == pytest.approx(summary["rounds"][1]["accuracy"])
    scalars, _ = _scalars(run_dir / "tensorboard")
    assert sorted(scalars["target/accuracy"]) == [(m["round"], pytest.approx(m["accuracy"]))
                                                  for m in summary["rounds"]]
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("hooks-test").experiment_id])
    hist = client.get_metric_history(run.info.run_id, "target/accuracy")
    assert sorted((m.step, m.value) for m in hist) == [(m["round"], pytest.approx(m["accuracy"]))
                                                      for m in summary["rounds"]]


def _events(run_dir: Path, rounds: range, config: dict | None = None):
    yield "started", {"run_dir": str(run_dir), "config": config or {"name": "kw", "query": {"strategy": "x"}},
                      "rounds": 3, "budgets": [5, 5, 5]}
    for r in rounds:
        yield "trained", {"round": r, "iters": 10, "loss": 1.0 / (r + 1), "ce_source": 0.5, "sec_per_iter": 0.01}
        yield "evaluated", {"round": r, "labels": 5 * r, "accuracy": 0.5 + 0.1 * r, "mean_class_accuracy": 0.4}


def test_tensorboard_logger_as_keyword_writes_into_its_own_folder(tmp_path):
    log = TensorBoardLogger(tmp_path / "tb")
    for kind, info in _events(tmp_path / "run", range(2)):
        log(kind, info)
    log("evaluated", {"round": 2, "labels": 10, "accuracy": None, "mean_class_accuracy": None})  # unlabelled test set
    scalars, _ = _scalars(tmp_path / "tb")
    assert scalars["target/accuracy"] == [(0, pytest.approx(0.5)), (1, pytest.approx(0.6))]
    assert [s for s, _ in scalars["target/labels"]] == [0, 1, 2]
    assert scalars["target_vs_labels/mean_class_accuracy"] == [(0, pytest.approx(0.4)), (5, pytest.approx(0.4))]
    assert not (tmp_path / "run").exists()


def test_mlflow_logger_on_a_file_store_continues_the_same_run_after_a_resume(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3 asks for it to use a file store
    uri = (tmp_path / "mlruns").as_uri()
    for rounds in (range(0, 2), range(2, 3)):  # the process stops after round 1, a new one continues
        log = MLflowLogger(uri, experiment="mine")
        for kind, info in _events(tmp_path / "run", rounds):
            log(kind, info)
        log("done", {"rounds": [{}] * 3, "final_accuracy": 0.7})
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mine").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["query.strategy"] == "x"
    hist = client.get_metric_history(run.info.run_id, "target/accuracy")
    assert sorted(m.step for m in hist) == [0, 1, 2]
    assert run.data.metrics["final_accuracy"] == pytest.approx(0.7)
    # "done" came twice (a finished run resumed sends it again): recorded once, not twice at the same step
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "final_accuracy")] == [(2, 0.7)]


@pytest.mark.parametrize("folder", ["bob's run", """bob's "best" run"""])
def test_mlflow_logger_finds_the_run_of_a_folder_with_quotes_in_its_name(tmp_path, folder):
    """The folder's path is a tag value matched in an MLflow filter string; a quote in it broke the filter."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for rounds in (range(0, 2), range(2, 3)):
        log = MLflowLogger(uri, experiment="mine")
        for kind, info in _events(tmp_path / folder, rounds):
            log(kind, info)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mine").experiment_id])  # one run, continued
    assert run.data.tags[MLflowLogger.TAG] == str((tmp_path / folder).resolve())
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "target/accuracy")) == [0, 1, 2]


def test_mlflow_tracking_uri_default_folder_and_given_uri(tmp_path):
    run = tmp_path / "run"
    assert MLflowLogger()._uri(run) == (f"sqlite:///{run / 'mlflow.db'}", run)
    assert MLflowLogger(tmp_path / "store")._uri(run) == (f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}",
                                                          tmp_path / "store")
    for uri in ("file:///tmp/mlruns", "file:mlruns", "sqlite:///x.db", "http://localhost:5000"):
        assert MLflowLogger(uri)._uri(run) == (uri, None)


def test_missing_extra_is_a_config_error_naming_it_before_the_run_folder_exists(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'adakit\[mlflow\]'"):
        ActiveLoop(build_config({**TINY, "log": {"mlflow": True}}), tmp_path / "r", show_progress=False)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="log.tensorboard"):
        build_config(TINY, ["log.tensorboard=3"])


def test_flatten_config_for_params():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": {}}) == {
        "a.b": 1, "a.c.d": None, "e": [1, 2], "f": {}}


def test_a_run_stored_before_the_log_section_existed_still_resumes(tmp_path):
    from adakit.ledger import Ledger

    ActiveLoop(build_config(TINY), tmp_path, show_progress=False).ledger.close()
    with Ledger(tmp_path / "ledger.sqlite") as led:
        old = {k: v for k, v in led.get_meta("config").items() if k != "log"}
        led.set_meta("config", old)
    loop = ActiveLoop.resume(tmp_path, show_progress=False)  # no "different config" error
    assert loop.cfg.log.tensorboard is False and loop.callbacks == []
    loop.ledger.close()


def test_a_run_continued_with_another_oracle_keeps_logging_and_a_half_made_store_is_named(tmp_path):
    """With log.mlflow, continuing a run with another oracle (allowed) failed: MLflow refuses a changed param
    value (oracle.* are tags now, which may change). A store left half made by a kill while MLflow created its
    tables was a raw sqlalchemy traceback on every resume."""
    from mlflow.tracking import MlflowClient

    from adakit.errors import WaitingForLabels

    run_dir = tmp_path / "run"
    values = {**TINY, "budget": {"total": 0.02, "rounds": 1}, "log": {"mlflow": True}}
    with pytest.raises(WaitingForLabels):
        ActiveLoop(build_config({**values, "oracle": {"kind": "file"}}), run_dir, show_progress=False).run()
    ActiveLoop(build_config({**values, "oracle": {"kind": "simulated"}}), run_dir, show_progress=False).run()
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("hooks-test").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["oracle.kind"] == "simulated"
    assert "oracle.kind" not in run.data.params and run.data.params["query.strategy"] == "margin"

    other = tmp_path / "other"
    other.mkdir()
    (other / "mlflow.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)  # a half-made store
    with pytest.raises(ConfigError, match=r"MLflow's store .*mlflow\.db cannot be opened .*move it away and resume"):
        MLflowLogger(str(other))("started", {"run_dir": str(tmp_path / "r2"), "config": {"name": "x"}})


def test_an_mlflow_server_behind_a_certificate_urllib_does_not_trust_passes_the_check(monkeypatch):
    """MLflow reaches its server through requests, which trusts what REQUESTS_CA_BUNDLE / MLFLOW_TRACKING_INSECURE_TLS
    allow (a company's own certificate authority, a self-signed server); the check's urllib does not. Such a server
    answered the check and was reported as 'no MLflow server answers there', refusing runs that logged to it."""
    import ssl
    import urllib.error
    import urllib.request

    calls = []

    def untrusted(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed "
                                                                    "certificate"))

    monkeypatch.setattr(urllib.request, "urlopen", untrusted)
    MLflowLogger("https://mlflow.example.internal").check()  # it answers: MLflow names what it needs, if anything
    assert calls == ["https://mlflow.example.internal/health"]

    def refused(url, timeout=None):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refused)
    with pytest.raises(ConfigError, match="no MLflow server answers there"):
        MLflowLogger("https://mlflow.example.internal").check()


def test_the_mlflow_server_check_probes_the_server_without_the_credentials_in_its_uri(monkeypatch):
    """log.mlflow=http://user:secret@host:5000 logs through requests, which sends user:secret as basic auth; urllib
    read 'user:secret@host' as the host name, found none, and refused a server that answers."""
    import urllib.request

    calls = []

    class Answer:
        def close(self):
            pass

    def answers(url, timeout=None):
        calls.append(url)
        return Answer()

    monkeypatch.setattr(urllib.request, "urlopen", answers)
    MLflowLogger("http://user:secret@mlflow.example.internal:5000/").check()
    assert calls == ["http://mlflow.example.internal:5000/health"]


def test_the_mlflow_check_names_a_malformed_uri_and_never_shows_the_password(monkeypatch):
    """A port that is not a number raised http.client.InvalidURL (a raw ValueError); the messages printed the
    password of user:secret@ URIs."""
    import urllib.error
    import urllib.request

    with pytest.raises(ConfigError, match=r"log.mlflow='http://localhost:50x0': not a valid server URI .*http://host"):
        MLflowLogger("http://localhost:50x0").check()

    def refused(url, timeout=None):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refused)
    with pytest.raises(ConfigError, match=r"log.mlflow='http://\*\*\*@localhost:1': no MLflow server") as e:
        MLflowLogger("http://user:secret@localhost:1").check()
    assert "secret" not in str(e.value)


def test_a_logger_or_callback_given_twice_is_refused_and_loggers_given_as_callbacks_are_checked(tmp_path):
    """A TensorBoardLogger beside log.tensorboard (or one logger object listed twice) wrote every scalar twice, into
    two event files; an MLflowLogger beside log.mlflow every metric twice into one MLflow run; a function listed
    twice got every event twice. A TensorBoardLogger given a file as its folder was a raw FileExistsError after the
    run folder was made (the config's loggers were checked, those in callbacks= were not)."""
    def show(kind, info):
        pass

    tb = TensorBoardLogger(tmp_path / "tb")
    run = tmp_path / "r"
    for values, kw, message in (
            ({**TINY, "log": {"tensorboard": True}}, {"callbacks": [TensorBoardLogger()]},
             f"callbacks=: a TensorBoardLogger writing to {run / 'tensorboard'} is given twice (also by "
             "log.tensorboard): it would record everything twice; keep one"),
            (TINY, {"callbacks": [tb, show, tb]}, f"a TensorBoardLogger writing to {tmp_path / 'tb'} is given twice "
                                                  "(also by callbacks=)"),
            ({**TINY, "log": {"mlflow": True}}, {"callbacks": [MLflowLogger()]},
             f"callbacks=: an MLflowLogger writing to sqlite:///{run / 'mlflow.db'} (experiment 'hooks-test') is "
             "given twice (also by log.mlflow)"),
            ({**TINY, "log": {"mlflow": "http://bob:secret@localhost:1"}},
             {"callbacks": [MLflowLogger("http://bob:secret@localhost:1", experiment="hooks-test")]},
             "an MLflowLogger writing to http://***@localhost:1 (experiment 'hooks-test') is given twice"),
            (TINY, {"callbacks": [show, show]}, f"callbacks= / on_event=: {show!r} is given twice: it would be "
                                                "called twice on every event; give it once"),
            (TINY, {"callbacks": show, "on_event": show}, "is given twice"),
            (TINY, {"callbacks": [TensorBoardLogger(tmp_path / "afile")]},
             f"TensorBoardLogger(log_dir) {tmp_path / 'afile'} is a file, not a folder")):
        (tmp_path / "afile").touch()
        with pytest.raises(ConfigError, match=re.escape(message)):
            ActiveLoop(build_config(values), run, show_progress=False, **kw)
        assert not run.exists()
    # two places, two experiments: allowed
    ActiveLoop(build_config({**TINY, "log": {"tensorboard": True, "mlflow": True}}), run, show_progress=False,
               callbacks=[TensorBoardLogger(tmp_path / "tb"), MLflowLogger(experiment="other"), show]).close()


def test_one_tensorboard_folder_given_through_a_link_and_directly_is_given_twice(tmp_path):
    """The twice-given check compared TensorBoard folders as absolute paths, links not followed (the run marker
    compares resolved paths): a folder given directly and through a symlink, or a run folder given through a symlink
    with log.tensorboard: true beside a logger of its real tensorboard/, passed, and both loggers wrote every scalar
    into the one folder. Both resolve the path now."""
    (tmp_path / "tb").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "tb", target_is_directory=True)
    (tmp_path / "real").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "real", target_is_directory=True)
    for values, run, loggers, where in (
            (TINY, tmp_path / "r", [TensorBoardLogger(tmp_path / "tb"), TensorBoardLogger(tmp_path / "link")],
             tmp_path / "tb"),
            ({**TINY, "log": {"tensorboard": True}}, tmp_path / "run",
             [TensorBoardLogger(tmp_path / "real" / "tensorboard")], tmp_path / "real" / "tensorboard")):
        with pytest.raises(ConfigError, match=re.escape(f"a TensorBoardLogger writing to {where.resolve()} is given "
                                                        "twice")):
            ActiveLoop(build_config(values), run, show_progress=False, callbacks=loggers)
    assert list((tmp_path / "tb").iterdir()) == [] and list((tmp_path / "real").iterdir()) == []


def test_a_failing_callback_stops_the_run_after_the_others_got_the_event(tmp_path):
    """A callback that raised kept the event from the callbacks after it (a TensorBoardLogger listed after your own
    function lost that round's training losses for good: the event is not sent again on resume); every callback
    now gets it, then the first error stops the run."""
    def fail(kind, info):
        if kind == "trained":
            raise RuntimeError("my logger failed")

    def also_fails(kind, info):
        if kind == "trained":
            raise ValueError("second")

    got = []
    with pytest.raises(RuntimeError, match="my logger failed"):
        ActiveLoop(build_config(TINY), tmp_path / "r", show_progress=False,
                   callbacks=[fail, also_fails, TensorBoardLogger(tmp_path / "tb"), lambda k, i: got.append(k)]).run()
    assert got == ["started", "trained"]
    scalars, _ = _scalars(tmp_path / "tb")
    assert [s for s, _ in scalars["train/loss"]] == [0]


def test_a_tensorboard_folder_holding_another_runs_logs_is_refused_before_the_run(tmp_path):
    """One TensorBoard folder given to two runs (a seed loop reusing TensorBoardLogger("runs/tb"), or
    log.tensorboard: <folder> in a bench) put both runs' event files in one folder: their curves mixed, and a resumed
    run's "rounds already logged" read the other run's."""
    from adakit.bench import run_bench

    tb = tmp_path / "tb"
    ActiveLoop(build_config(TINY), tmp_path / "a", show_progress=False, callbacks=[TensorBoardLogger(tb)]).run()
    assert (tb / ".adakit-run").read_text().strip() == str((tmp_path / "a").resolve())
    with pytest.raises(ConfigError, match=r"TensorBoardLogger\(log_dir\)=.* holds the TensorBoard logs of "
                                          r"another run \(.*[/\\]a\).* e\.g\. .*tb[/\\]b"):
        ActiveLoop(build_config(TINY), tmp_path / "b", show_progress=False, callbacks=[TensorBoardLogger(tb)])
    assert not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match=r"log\.tensorboard=.* holds the TensorBoard logs of another run"):
        ActiveLoop(build_config({**TINY, "log": {"tensorboard": str(tb)}}), tmp_path / "c", show_progress=False)
    # the same run continued (or a finished one resumed) writes there again; another folder is fine
    ActiveLoop.resume(tmp_path / "a", callbacks=[TensorBoardLogger(tb)], show_progress=False).run()
    ActiveLoop(build_config(TINY), tmp_path / "b", show_progress=False, callbacks=[TensorBoardLogger(tb / "b")]).run()
    # a bench whose config names one folder for all its runs: refused before any run
    (tmp_path / "base.yaml").write_text(json.dumps({**TINY, "log": {"tensorboard": str(tmp_path / "tb2")}}))
    spec = {"base": str(tmp_path / "base.yaml"), "seeds": [0, 1], "pairs": [["digits", "digits-shifted"]],
            "methods": {"margin": ["query.strategy=margin"]}}
    with pytest.raises(ConfigError, match=r"every run of this grid would write its TensorBoard logs into that one "
                                          r"folder.*log\.tensorboard: true"):
        run_bench(spec, tmp_path / "bench")
    assert not (tmp_path / "bench").exists()


def test_readme_snippet_of_hooks_runs(tmp_path, monkeypatch, readme_python, capsys):
    """The README's Hooks example, as written, from a fresh folder: both loggers write, the callback prints."""
    (code,) = readme_python("### Hooks", stop="\n## ")[:1]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Hooks)", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert [line.split(":")[0] for line in printed.splitlines() if line.startswith("round ")] == \
        ["round 0", "round 1", "round 2"]
    scalars, _ = _scalars(tmp_path / "runs" / "tb")
    assert [s for s, _ in scalars["target/accuracy"]] == [0, 1, 2]
    assert (tmp_path / "runs" / "hooks-demo" / "mlflow.db").is_file()
