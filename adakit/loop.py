"""`ActiveLoop`: warm-up, then for each round query → label → train → evaluate, resumable.

Every step's outcome lands in the ledger before the next step starts: the selection, then the labels,
then the checkpoint, then the metrics. After a crash (even SIGKILL) `ActiveLoop.resume` loads the last
checkpoint and continues; rounds use seeds derived from (seed, round), so a resumed run queries and
trains exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from adakit.config import ExperimentConfig, build_config
from adakit.data import Domains, load_domains
from adakit.errors import ConfigError, DataError, WaitingForLabels
from adakit.inference import accuracy, forward_domain
from adakit.ledger import Ledger
from adakit.models import build_model
from adakit.oracle import FileOracle, SimulatedOracle
from adakit.pool import PoolView
from adakit.registry import OBJECTIVES, STRATEGIES
from adakit.train import Trainer


def round_budgets(total: float, rounds: int, pool_size: int) -> list[int]:
    """Per-round budgets b = B // R with the remainder in the last round (METHODS.md, Protocols).

    ``total`` < 1 is a fraction of the pool, otherwise a count.
    """
    if rounds == 0:
        return []
    budget = int(round(total * pool_size)) if total < 1 else int(total)
    if budget > pool_size:
        raise DataError(f"budget.total={total} asks for {budget} labels but the target pool has only "
                        f"{pool_size} samples; lower budget.total")
    if budget < rounds:
        raise ConfigError(f"budget.total={total} gives {budget} labels, fewer than budget.rounds={rounds}; "
                          "raise the budget or use fewer rounds")
    b = budget // rounds
    return [b] * (rounds - 1) + [budget - b * (rounds - 1)]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def _warmup_key(config: dict) -> str:
    return json.dumps({k: config[k] for k in ("seed", "data", "model", "objective", "train")}, sort_keys=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ActiveLoop:
    """One experiment in ``run_dir``: config.yaml, ledger.sqlite, metrics.jsonl, summary.json, report."""

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, show_progress: bool = True,
                 on_event: Callable[[str, dict], None] | None = None, domains: Domains | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.show_progress = show_progress
        self.on_event = on_event or (lambda kind, info: None)
        ledger_path = self.run_dir / "ledger.sqlite"
        if ledger_path.is_file():
            with Ledger(ledger_path) as led:
                stored = led.get_meta("config")
            if stored is not None and stored != cfg.to_dict():
                raise ConfigError(f"{self.run_dir} holds a run with a different config; use `adakit resume "
                                  f"{self.run_dir}` to continue it, or choose another --out folder")
        self._setup(domains)  # everything that can fail on bad input fails before the run folder exists
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(ledger_path)
        if self.ledger.get_meta("config") is None:
            self.ledger.set_meta("config", cfg.to_dict())
            _atomic_write(self.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    @classmethod
    def resume(cls, run_dir: str | Path, **kwargs) -> ActiveLoop:
        run_dir = Path(run_dir)
        if not (run_dir / "ledger.sqlite").is_file():
            raise ConfigError(f"{run_dir} is not a run folder (no ledger.sqlite); start one with `adakit run`")
        with Ledger(run_dir / "ledger.sqlite") as led:
            values = led.get_meta("config")
        return cls(build_config(values), run_dir, **kwargs)

    # -- set-up: everything that can fail on bad input fails here, before training ----------------
    def _build_model_and_objective(self, obj_cls: type, obj_params) -> None:
        """``self.model`` with the head the objective needs (cosine for MME / omega=mme), then ``self.objective``."""
        model_cfg, d = self.cfg.model, self.domains
        head = obj_cls.head_for(obj_params)
        if head and model_cfg.head != head:
            model_cfg = model_cfg.model_copy(update={"head": head})
        self.model = build_model(model_cfg, tuple(d.source.input_shape), len(d.classes)).to(self.device)
        self.objective = obj_cls(obj_params, feature_dim=self.model.feature_dim, num_classes=len(d.classes),
                                 pool_size=len(d.pool)).to(self.device)

    def _setup(self, domains: Domains | None) -> None:
        cfg = self.cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.train.device)
        self.domains = domains or load_domains(cfg.data, cfg.seed)
        d = self.domains
        self.budgets = round_budgets(cfg.budget.total, cfg.budget.rounds, len(d.pool))
        obj_cls = OBJECTIVES.get(cfg.objective.name)
        strat_cls = STRATEGIES.get(cfg.query.strategy)
        obj_params = cfg.objective_params()
        missing = set(strat_cls.needs) - set(obj_cls.provides_for(obj_params))
        if missing and self.budgets:
            providers = [n for n in OBJECTIVES.names() if set(strat_cls.needs) <= set(OBJECTIVES.get(n).provides)]
            probe = " (or set objective.probe_domain=true)" if missing == {"domain_discriminator"} else ""
            raise ConfigError(f"query.strategy={cfg.query.strategy!r} needs {sorted(missing)}, which "
                              f"objective.name={cfg.objective.name!r} does not provide; use one of: "
                              f"{', '.join(providers) or '(none)'}{probe}")
        torch.manual_seed(cfg.seed)
        self._build_model_and_objective(obj_cls, obj_params)
        query_params = cfg.query_params()
        if "budget_ratio" in type(query_params).model_fields and "budget_ratio" not in cfg.query.params() \
                and self.budgets:
            query_params.budget_ratio = sum(self.budgets) / len(d.pool)  # the run's total budget B (LAS's M)
        self.strategy = strat_cls(query_params)
        self.trainer = Trainer(self.model, self.objective, cfg.train, self.device, anchor=cfg.anchor)
        if cfg.oracle.kind == "file":
            self.oracle = FileOracle(d.pool, self.run_dir, d.classes)
        else:
            self.oracle = SimulatedOracle(d.pool)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> dict:
        led = self.ledger
        last = self.restore()
        if last is not None:
            self.on_event("resumed", {"round": last})
        # rounds beyond the schedule exist when `adakit query` added them: they are trained too
        for r in range(last or 0, max(len(self.budgets), led.last_round()) + 1):
            if last is None or r > last:
                if r > 0:
                    self._query_and_label(r)
                self._train(r)
            if not led.round_reached(r, "evaluated"):
                self._evaluate(r)
        summary = self.write_outputs()
        self.on_event("done", summary)
        return summary

    def _labelled(self) -> tuple[np.ndarray, np.ndarray]:
        idx, y = self.ledger.labelled_pool()
        return np.asarray(idx, dtype=np.int64), np.asarray(y, dtype=np.int64)

    def _query_and_label(self, r: int) -> None:
        led = self.ledger
        if not led.round_reached(r, "queried"):
            self._select(r, self.budgets[r - 1])
        pending = led.open_queries(r)
        if pending:
            answers = self.oracle.label(pending, r)
            if answers is None:
                raise WaitingForLabels(
                    f"round {r}: {len(pending)} queries wait for labels in {self.run_dir / 'queries'}; "
                    f"answer them, then `adakit import-labels {self.run_dir} FILE` and `adakit resume {self.run_dir}`")
            led.record_labels(answers, self.oracle.annotator)
        with led.transaction() as c:
            led.set_round_status(r, "labelled", conn=c)

    def _select(self, r: int, budget: int) -> None:
        """Round r's selection with the current model, recorded in the ledger as open queries."""
        led, pool = self.ledger, self.domains.pool
        idx, y = self._labelled()
        mask = np.zeros(len(pool), dtype=bool)
        mask[idx] = True
        labels = np.full(len(pool), -1, dtype=np.int64)
        labels[idx] = y
        view = PoolView(self.model, pool, mask, labels, objective=self.objective, source=self.domains.source,
                        device=self.device, batch_size=self.cfg.train.eval_batch_size)
        t0 = time.perf_counter()
        sel = self.strategy.select(view, budget, np.random.default_rng([self.cfg.seed, r]))
        seconds = time.perf_counter() - t0
        self._check_selection(sel.indices, mask, budget)
        suggested = view.probs[torch.as_tensor(sel.indices)].argmax(1).tolist()
        led.record_queries(r, pool.ids[sel.indices].tolist(), sel.indices.tolist(), sel.scores.tolist(),
                           suggested)
        led.set_meta(f"query_seconds/{r}", seconds)
        self.on_event("queried", {"round": r, "count": len(sel.indices), "seconds": seconds})

    # -- working on a stopped run without training (adakit query / adakit label) ------------------
    def restore(self) -> int | None:
        """Load the last checkpoint's weights (no training); its round, or None when there is none."""
        last = self.ledger.last_checkpoint()
        if last is None:
            return None
        path = self._checkpoint(last[1])
        if not path.is_file() and (self.run_dir / "checkpoints" / path.name).is_file():
            path = self.run_dir / "checkpoints" / path.name  # a run folder of an older adakit, moved
        self.trainer.load_state_dict(torch.load(path, map_location=self.device, weights_only=False))
        return last[0]

    def _checkpoint(self, stored: str) -> Path:
        """Checkpoint paths are stored relative to the run folder, so a moved run folder still resumes."""
        p = Path(stored)
        return p if p.is_absolute() else self.run_dir / p

    def select_round(self, budget: int) -> int:
        """One selection round on the last checkpoint (``adakit query``): records round K's queries as
        open and exports ``queries/round-K.csv`` + ``.json``; returns K. `run` (resume) trains on them
        once they are answered, also when K lies beyond the configured rounds.
        """
        from adakit.errors import LedgerError
        from adakit.oracle import export_queries

        done = self.restore()
        if done is None:
            raise ConfigError(f"{self.run_dir} has no trained model yet; `adakit resume {self.run_dir}` trains "
                              "the warm-up round first")
        r = done + 1
        if self.ledger.round_status(r) is not None:
            n_open = len(self.ledger.open_queries(r))
            raise LedgerError(f"round {r} was already queried ({n_open} of its queries still open); answer them "
                              f"(`adakit label` or `adakit import-labels`), then `adakit resume {self.run_dir}`")
        free = len(self.domains.pool) - len(self._labelled()[0])
        if budget < 1 or budget > free:
            raise DataError(f"--budget {budget}: choose between 1 and {free} (unlabelled samples in the target pool)")
        self._select(r, budget)
        export_queries(self.domains.pool, self.domains.classes, self.ledger.queries(r),
                       self.run_dir / "queries" / f"round-{r}")
        return r

    @torch.no_grad()
    def pool_probabilities(self, indices) -> torch.Tensor:
        """Class probabilities (len(indices), C) of target-pool samples under the current model."""
        idx, bs = np.asarray(indices, dtype=np.int64), self.cfg.train.eval_batch_size
        was_training = self.model.training
        self.model.eval()
        out = []
        for s in range(0, len(idx), bs):
            _, z = self.model(self.domains.pool.load(idx[s:s + bs]).to(self.device))
            out.append(torch.softmax(z.float(), 1).cpu())
        self.model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, len(self.domains.classes))

    @staticmethod
    def _check_selection(indices: np.ndarray, labelled: np.ndarray, budget: int) -> None:
        expected = min(budget, int((~labelled).sum()))
        if len(np.unique(indices)) != len(indices) or labelled[indices].any() or len(indices) != expected:
            raise RuntimeError(f"strategy returned an invalid selection ({len(indices)} indices, expected "
                               f"{expected} distinct unlabelled ones); this is a bug in the strategy")

    def _train(self, r: int) -> None:
        cfg = self.cfg
        idx, y = self._labelled()
        iters = cfg.train.warmup_iters if r == 0 else cfg.train.round_iters
        if r == 0 and getattr(self.objective, "warmup_runs", 1) > 1:
            stats = self._warmup_runs(idx, y, iters)
        else:
            self.objective.on_round_start(r)
            stats = self.trainer.fit(self.domains.source, self.domains.pool, idx, y, iters,
                                     seed=cfg.seed * 100_003 + r, desc=f"round {r} train",
                                     show_progress=self.show_progress)
        ck_dir = self.run_dir / "checkpoints"
        ck_dir.mkdir(exist_ok=True)
        path = ck_dir / f"round-{r}.pt"
        tmp = path.with_suffix(".pt.tmp")
        torch.save(self.trainer.state_dict(), tmp)
        os.replace(tmp, path)
        prev = self.ledger.last_checkpoint()
        self.ledger.record_checkpoint(r, str(path.relative_to(self.run_dir)))
        self.ledger.set_meta(f"train/{r}", stats)
        if prev is not None and prev[0] not in (0, r):  # the warm-up checkpoint is kept (see adopt_warmup)
            self._checkpoint(prev[1]).unlink(missing_ok=True)
        self.on_event("trained", {"round": r, **stats})

    def _warmup_runs(self, idx: np.ndarray, y: np.ndarray, iters: int) -> dict:
        """Warm-up of an objective with ``warmup_runs`` > 1 (BIWAA-I, seed 003 §3.3): train from scratch that
        many times. Run 0 is the plain warm-up (same seeds); run k ≥ 1 rebuilds model, objective and trainer
        with seeds derived from (seed, k), gets ``begin_warmup_run(k, carry)`` -> sampling weights over the pool
        for the unlabelled stream, and hands ``end_warmup_run(pool probabilities)`` -> carry to the next run.
        The last run's model goes on; the warm-up stays one round-0 checkpoint (a crash restarts all runs).
        """
        cfg, d = self.cfg, self.domains
        runs = int(self.objective.warmup_runs)
        carry, stats, accs = None, {}, {}
        for k in range(runs):
            seed = cfg.seed * 100_003
            if k > 0:
                seed = int(np.random.SeedSequence([cfg.seed, 0, k]).generate_state(1)[0])
                seed_everything(seed)
                self._build_model_and_objective(type(self.objective), self.objective.params)
                self.trainer = Trainer(self.model, self.objective, cfg.train, self.device, anchor=cfg.anchor)
            weights = self.objective.begin_warmup_run(k, carry)
            self.objective.on_round_start(0)
            stats = self.trainer.fit(d.source, d.pool, idx, y, iters, seed=seed, desc=f"round 0 run {k + 1}/{runs}",
                                     show_progress=self.show_progress, target_weights=weights)
            _, logits = forward_domain(self.model, d.pool, cfg.train.eval_batch_size, self.device)
            carry = self.objective.end_warmup_run(torch.softmax(logits, 1))
            _, test_logits = forward_domain(self.model, d.test, cfg.train.eval_batch_size, self.device)
            accs[f"run{k}_accuracy"] = accuracy(test_logits, d.test.y)["accuracy"]
            self.on_event("warmup_run", {"run": k, "runs": runs, "accuracy": accs[f"run{k}_accuracy"]})
        return {**stats, **accs, "warmup_runs": runs}

    def _evaluate(self, r: int) -> None:
        _, logits = forward_domain(self.model, self.domains.test, self.cfg.train.eval_batch_size, self.device)
        metrics = accuracy(logits, self.domains.test.y)
        n_labels = len(self._labelled()[0])
        self.ledger.record_metrics(r, metrics, n_labels)
        _atomic_write(self.run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in self.ledger.metrics()))
        self.on_event("evaluated", {"round": r, "labels": n_labels, **metrics})

    def warmup_key(self) -> str:
        """What determines the warm-up (round 0): runs with equal keys train the same round-0 model."""
        return _warmup_key(self.cfg.to_dict())

    def adopt_warmup(self, other_run_dir: str | Path) -> bool:
        """Start from another run's finished warm-up instead of training the same one again.

        Exact, not an approximation: the warm-up depends only on `warmup_key`, which is checked.
        Returns False (and does nothing) when this run already has a checkpoint, the keys differ or
        the other run has no evaluated warm-up.
        """
        other_run_dir = Path(other_run_dir)
        src = other_run_dir / "checkpoints" / "round-0.pt"
        if self.ledger.last_checkpoint() is not None or not src.is_file():
            return False
        with Ledger(other_run_dir / "ledger.sqlite") as other:
            if (_warmup_key(other.get_meta("config")) != self.warmup_key()
                    or not other.round_reached(0, "evaluated")):
                return False
            stats, m = other.get_meta("train/0"), other.metrics()[0]
        ck_dir = self.run_dir / "checkpoints"
        ck_dir.mkdir(exist_ok=True)
        dst = ck_dir / "round-0.pt"
        shutil.copyfile(src, dst)
        self.ledger.record_checkpoint(0, str(dst.relative_to(self.run_dir)))
        self.ledger.set_meta("train/0", stats)
        self.ledger.record_metrics(0, {k: v for k, v in m.items() if k not in ("round", "labels")}, 0)
        return True

    # -- outputs ----------------------------------------------------------------------------------
    def summary(self) -> dict:
        cfg = self.cfg
        rounds = self.ledger.metrics()
        return {
            "name": cfg.name, "label": cfg.label, "strategy": cfg.query.strategy, "objective": cfg.objective.name,
            "protocol": cfg.data.protocol, "seed": cfg.seed,
            "data": {"format": cfg.data.format, "source": cfg.data.source, "target": cfg.data.target},
            "budget": {"total": cfg.budget.total, "rounds": cfg.budget.rounds, "per_round": self.budgets},
            "rounds": rounds,
            "final_accuracy": rounds[-1]["accuracy"] if rounds else None,
            "train_sec_per_iter": self.ledger.get_meta(f"train/{len(self.budgets)}", {}).get("sec_per_iter"),
            "query_seconds": [self.ledger.get_meta(f"query_seconds/{r}") for r in range(1, len(self.budgets) + 1)],
        }

    def write_outputs(self) -> dict:
        from adakit.report import write_run_report

        summary = self.summary()
        _atomic_write(self.run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in summary["rounds"]))
        _atomic_write(self.run_dir / "summary.json", json.dumps(summary, indent=1))
        write_run_report(self.run_dir, summary)
        return summary
