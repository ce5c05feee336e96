"""Hooks: the events `ActiveLoop` reports, and two optional loggers built on them.

A callback is any function ``callback(kind: str, info: dict) -> None``; pass it as
``ActiveLoop(..., callbacks=[...])`` (or ``on_event=``). It is called for every event of `EVENTS`, in the
order they happen, with an ``info`` dict of plain JSON values (str, int, float, bool, None, lists, dicts).
`TensorBoardLogger` and `MLflowLogger` are such callbacks; the config's ``log:`` section builds them for
a run (`loggers_from_config`).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adakit.errors import ConfigError

Callback = Callable[[str, dict], None]

#: every event: (when it happens, the fields its ``info`` always has)
EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "started": ("`run()` begins, before any training (also when it continues a stopped run; ``evaluated`` lists "
                "the ``evaluated`` infos of the rounds already scored, so a logger can add one a kill kept from it)",
                ("run_dir", "config", "rounds", "budgets", "evaluated")),
    "resumed": ("a continued run restored the checkpoint of its last trained round", ("round",)),
    "queried": ("round *r*'s selection is recorded in the ledger", ("round", "count", "seconds")),
    "labelled": ("the oracle's answers for round *r* are recorded", ("round", "count", "labels")),
    "warmup_run": ("one run of a multi-run warm-up (BIWAA-I) finished", ("round", "run", "runs", "accuracy")),
    "trained": ("round *r*'s training finished and its checkpoint is saved", ("round", "iters")),
    "evaluated": ("round *r*'s model was scored on the target test set",
                  ("round", "labels", "accuracy", "mean_class_accuracy")),
    "done": ("the run finished; ``info`` is the run's summary.json", ("rounds", "final_accuracy")),
}


def _numbers(info: dict, skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The numeric (non-bool) fields of ``info``, as floats."""
    return {k: float(v) for k, v in info.items()
            if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)}


def _require(module: str, extra: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs the {module!r} package, which is not installed; "
                          f"install it with: pip install 'adakit[{extra}]'")


def flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the config as MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


#: the file in a TensorBoard folder given to `TensorBoardLogger` that names the run folder whose logs it holds
RUN_MARKER = ".adakit-run"


class TensorBoardLogger:
    """Writes a run's curves as TensorBoard event files (extra ``tensorboard``).

    Scalars (step = round unless noted): ``target/accuracy``, ``target/mean_class_accuracy``, ``target/labels``;
    ``target_vs_labels/accuracy`` (step = labelled target samples); ``train/<term>`` for the mean of every loss
    term, ``train/loss`` and ``train/sec_per_iter``; ``query/seconds`` and ``query/count``; the config as the
    text ``config``. ``log_dir`` None = ``<run folder>/tensorboard``.
    """

    def __init__(self, log_dir: str | Path | None = None):
        _require("tensorboard", "tensorboard", "TensorBoardLogger (log.tensorboard)")
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer = None

    def check(self, flag: str = "log.tensorboard", run_dir: str | Path | None = None) -> None:
        """Before a run writes anything: its log folder can be a folder and holds no other run's logs (a
        `ConfigError` naming ``flag`` otherwise: two runs' event files in one folder mix their curves)."""
        if self.log_dir is not None:
            from adakit.rundir import check_folder_path

            check_folder_path(self.log_dir, flag, "the TensorBoard logs")
            marker = self.log_dir / RUN_MARKER
            if run_dir is not None and marker.is_file():
                other = marker.read_text(encoding="utf-8").strip()
                if other and Path(other) != Path(run_dir).resolve():
                    raise ConfigError(
                        f"{flag}={str(self.log_dir)!r} holds the TensorBoard logs of another run ({other}): the curves "
                        f"of both would mix in one folder. Give each run its own folder, e.g. "
                        f"{self.log_dir / Path(run_dir).name}, or log.tensorboard: true (its run folder's "
                        "tensorboard/); `tensorboard --logdir` on a parent folder shows the runs side by side")

    def destination(self, run_dir: Path, name: str | None = None) -> str:
        """Where it writes for the run in ``run_dir``, as a phrase: two loggers of one destination record twice. The
        folder with links followed, as its run marker names the run folder: one folder given through a link and
        directly is one destination."""
        return f"a TensorBoardLogger writing to {(self.log_dir or Path(run_dir) / 'tensorboard').resolve()}"

    def __call__(self, kind: str, info: dict) -> None:
        if kind == "started":
            self._open(info)
            logged = self._logged_rounds()
            for row in info.get("evaluated", []):  # rounds a kill kept from the event files (before their event)
                if row["round"] not in logged:
                    self("evaluated", row)
        w = self._writer
        if w is None:
            return
        r = info.get("round")
        if kind == "trained":
            for k, v in _numbers(info, ("round", "iters")).items():
                w.add_scalar(f"train/{k}", v, r)
        elif kind == "queried":
            w.add_scalar("query/seconds", info["seconds"], r)
            w.add_scalar("query/count", info["count"], r)
        elif kind == "warmup_run":
            w.add_scalar("warmup/run_accuracy", info["accuracy"], info["run"])
        elif kind == "evaluated":
            for k, v in _numbers(info, ("round", "labels")).items():
                w.add_scalar(f"target/{k}", v, r)
                w.add_scalar(f"target_vs_labels/{k}", v, info["labels"])
            w.add_scalar("target/labels", info["labels"], r)
        w.flush()
        if kind == "done":
            w.close()
            self._writer = None

    def _open(self, info: dict) -> None:
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        if self._writer is not None:
            self._writer.close()
        log_dir = self.log_dir or Path(info["run_dir"]) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(log_dir))
        self._log_dir = log_dir
        if self.log_dir is not None and not (log_dir / RUN_MARKER).is_file():  # whose logs a given folder holds
            from adakit.rundir import write_atomically

            write_atomically(log_dir / RUN_MARKER, f"{Path(info['run_dir']).resolve()}\n")
        text = yaml.safe_dump(info["config"], sort_keys=False)
        self._writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)  # indented: a code block


    def _logged_rounds(self) -> set[int]:
        """Rounds whose ``target/labels`` the event files in the log folder already hold."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(self._log_dir), size_guidance={"scalars": 0})  # this folder's files only
        events.Reload()
        return ({int(e.step) for e in events.Scalars("target/labels")} if "target/labels" in events.Tags()["scalars"]
                else set())


class MLflowLogger:
    """Records a run in MLflow (extra ``mlflow``), locally, without a server.

    ``tracking_uri``: where; None = the SQLite store ``<run folder>/mlflow.db`` (``sqlite:///...``); a
    ``file:``/``sqlite:``/``http(s):`` URI is used as given, a plain path is a folder for ``mlflow.db``.
    ``experiment``: the MLflow experiment (default: the config's ``name``). One MLflow run per adakit run,
    tagged ``adakit.run_dir``; a continued adakit run logs into the same MLflow run. Logged: the config as
    params (flattened, ``data.source``, ``query.strategy``, ...), and the same metrics as `TensorBoardLogger`
    (``target/accuracy`` per round, ``target_vs_labels/accuracy`` per label count, ``train/<term>``,
    ``query/seconds``, ...) plus ``final_accuracy`` when the run is done.
    """

    TAG = "adakit.run_dir"

    def __init__(self, tracking_uri: str | Path | None = None, experiment: str | None = None,
                 run_name: str | None = None):
        _require("mlflow", "mlflow", "MLflowLogger (log.mlflow)")
        self.tracking_uri = str(tracking_uri) if tracking_uri is not None else None
        self.experiment, self.run_name = experiment, run_name
        self.client = None
        self.run_id: str | None = None

    def check(self, flag: str = "log.mlflow", run_dir: str | Path | None = None) -> None:
        """Before a run writes anything: a store folder can be a folder; a server answers (a run whose server was
        down failed after minutes of retries, with its run folder already made). Errors name ``flag``."""
        from adakit.config import is_uri
        from adakit.rundir import check_folder_path

        uri = self.tracking_uri
        if uri is not None and uri.startswith(("http://", "https://")):
            import http.client
            import ssl
            import urllib.error
            import urllib.parse
            import urllib.request

            parts = urllib.parse.urlsplit(uri.rstrip("/"))  # (user:password@ in it is requests' basic auth,
            probe = parts._replace(netloc=parts.netloc.rpartition("@")[2])  # which urllib takes for the host)
            shown = probe._replace(netloc=("***@" if "@" in parts.netloc else "") + probe.netloc).geturl()
            try:
                urllib.request.urlopen(probe.geturl() + "/health", timeout=5).close()
            except urllib.error.HTTPError:
                pass  # it answers (a proxy or an authentication in front of it): MLflow names what it needs
            except (ValueError, http.client.InvalidURL) as e:  # (a port that is not a number, say)
                raise ConfigError(f"{flag}={shown!r}: not a valid server URI ({e}); write it as "
                                  "http://host:port") from None
            except (urllib.error.URLError, OSError) as e:
                why = getattr(e, "reason", e)
                # it answers, with a certificate MLflow may trust (REQUESTS_CA_BUNDLE, MLFLOW_TRACKING_INSECURE_TLS)
                # where urllib does not
                if isinstance(e, ssl.SSLError) or isinstance(why, ssl.SSLError):
                    return
                raise ConfigError(f"{flag}={shown!r}: no MLflow server answers there ({why}); start it, or set "
                                  "log.mlflow: true to keep the runs in the run folder") from None
        elif uri is not None and not is_uri(uri):
            check_folder_path(Path(uri), flag, "the MLflow store")

    def destination(self, run_dir: Path, name: str | None = None) -> str:
        """Where it writes for the run in ``run_dir`` of config name ``name``, as a phrase without the credentials
        a server URI may hold: two loggers of one store and experiment record into one MLflow run twice."""
        import urllib.parse

        uri = self._uri(Path(run_dir).resolve())[0]
        parts = urllib.parse.urlsplit(uri)
        if "@" in parts.netloc:
            uri = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
        return f"an MLflowLogger writing to {uri} (experiment {self.experiment or name or 'adakit'!r})"

    def _uri(self, run_dir: Path) -> tuple[str, Path | None]:
        """The tracking URI, and the local folder of the store when adakit chose it (for artifacts)."""
        from adakit.config import is_uri

        uri = self.tracking_uri
        if uri is not None and is_uri(uri):
            return uri, None
        folder = (Path(uri) if uri is not None else run_dir).resolve()
        return f"sqlite:///{folder / 'mlflow.db'}", folder

    def __call__(self, kind: str, info: dict) -> None:
        if kind == "started":
            self._start(info)
            if self.client is not None:
                logged = {int(m.step) for m in self.client.get_metric_history(self.run_id, "target/labels")}
                for row in info.get("evaluated", []):  # rounds a kill kept from the store (before their event)
                    if row["round"] not in logged:
                        self("evaluated", row)
        if self.client is None:
            return
        r = info.get("round")
        metrics: list[tuple[str, float, int]] = []
        if kind == "trained":
            metrics = [(f"train/{k}", v, r) for k, v in _numbers(info, ("round", "iters")).items()]
        elif kind == "queried":
            metrics = [("query/seconds", info["seconds"], r), ("query/count", info["count"], r)]
        elif kind == "warmup_run":
            metrics = [("warmup/run_accuracy", info["accuracy"], info["run"])]
        elif kind == "evaluated":
            for k, v in _numbers(info, ("round", "labels")).items():
                metrics += [(f"target/{k}", v, r), (f"target_vs_labels/{k}", v, info["labels"])]
            metrics.append(("target/labels", info["labels"], r))
        elif kind == "done" and info.get("final_accuracy") is not None:
            step, value = len(info["rounds"]) - 1, float(info["final_accuracy"])
            # a finished run resumed (or done again) sends "done" again: its MLflow run records the value once
            if (step, value) not in {(m.step, m.value) for m in self.client.get_metric_history(self.run_id,
                                                                                              "final_accuracy")}:
                metrics = [("final_accuracy", value, step)]
        if metrics:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, int(s)) for k, v, s in metrics])
        if kind == "done":
            self.client.set_terminated(self.run_id, "FINISHED")

    @classmethod
    def _find_run(cls, client: Any, exp_id: str, run_dir: str) -> str | None:
        """The id of the MLflow run of ``run_dir`` in the experiment (tagged `TAG`), or None. A folder whose path
        holds both quote characters cannot be written in a filter string: the experiment's runs are scanned."""
        quote = "'" if "'" not in run_dir else '"' if '"' not in run_dir else None
        if quote is not None:
            found = client.search_runs([exp_id], filter_string=f"tags.`{cls.TAG}` = {quote}{run_dir}{quote}",
                                       max_results=1)
            return found[0].info.run_id if found else None
        token = None
        while True:
            page = client.search_runs([exp_id], max_results=1000, page_token=token)
            for run in page:
                if run.data.tags.get(cls.TAG) == run_dir:
                    return run.info.run_id
            token = page.token
            if not token:
                return None

    def _start(self, info: dict) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        run_dir = Path(info["run_dir"]).resolve()
        uri, folder = self._uri(run_dir)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        name = self.experiment or info["config"].get("name") or "adakit"
        try:
            client = MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(
                name, artifact_location=(folder / "mlartifacts").as_uri() if folder else None)
            found = self._find_run(client, exp_id, str(run_dir))
            if found is not None:
                run_id = found
                client.update_run(run_id, status="RUNNING")
            else:
                run_id = client.create_run(exp_id, run_name=self.run_name or run_dir.name,
                                           tags={self.TAG: str(run_dir)}).info.run_id
            # logged again on a continued run (same values: MLflow accepts that), in case a crash came first; the
            # keys a run may change when it continues (where answers come from) are tags, which may change
            from mlflow.entities import RunTag

            from adakit.rundir import SWITCHABLE_KEYS

            flat = flatten(info["config"])
            switchable = {k for k in flat if any(k == p or k.startswith(p + ".") for p in SWITCHABLE_KEYS)}
            params = [Param(k, str(v)[:6000]) for k, v in flat.items() if k not in switchable]
            for s in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                client.log_batch(run_id, params=params[s:s + 100])
            client.log_batch(run_id, tags=[RunTag(k, str(flat[k])[:5000]) for k in sorted(switchable)])
        except MlflowException as e:
            raise ConfigError(f"MLflow ({uri!r}): {e.message}") from None
        except Exception as e:  # noqa: BLE001 - the store's own errors (sqlalchemy's on a half-created database)
            where = f" {folder / 'mlflow.db'}" if folder is not None else ""
            why = " ".join(str(e).split())[:200]
            raise ConfigError(f"MLflow's store{where} cannot be opened ({type(e).__name__}: {why}); a "
                              "process killed while MLflow created it leaves it half made: move it away and "
                              "resume (the run's results are in its ledger, metrics.jsonl and summary.json)") from None
        self.client, self.run_id = client, run_id


def loggers_from_config(log: Any) -> list[Callback]:
    """The loggers a config's ``log:`` section asks for (``true`` = their default place in the run folder)."""
    out: list[Callback] = []
    if log.tensorboard is not False:
        out.append(TensorBoardLogger(None if log.tensorboard is True else log.tensorboard))
    if log.mlflow is not False:
        out.append(MLflowLogger(None if log.mlflow is True else log.mlflow, experiment=log.experiment))
    return out
