"""Strategies and objectives registered from user code: by name in configs, `adakit.select` and `adakit methods`."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from typer.testing import CliRunner

import adakit
from adakit.adapt.base import ObjectiveParams
from adakit.errors import ConfigError
from adakit.params import Params
from adakit.query.base import top_k
from adakit.registry import OBJECTIVES, STRATEGIES

CALLS: dict[str, list] = {"strategy": [], "objective": []}


class LogitGap(adakit.Strategy):
    """Smallest gap between the two largest logits first (a user strategy for the tests)."""

    class Params(Params):
        temperature: float = Field(1.0, gt=0, description="divides the logits before the gap is taken")

    def select(self, view, budget: int, rng: np.random.Generator) -> adakit.Selection:
        cand = view.unlabelled_indices
        top2 = (view.logits[cand] / self.params.temperature).topk(2, dim=1).values
        CALLS["strategy"].append((len(view), budget))
        return top_k(-(top2[:, 0] - top2[:, 1]), cand, budget, rng)


class EntropyMin(adakit.Objective):
    """Cross-entropy plus entropy minimisation on the unlabelled target (a user objective for the tests)."""

    class Params(ObjectiveParams):
        weight: float = Field(0.1, ge=0, description="weight of the mean target entropy")

    uses_unlabelled = True

    def transfer_terms(self, model, batch, progress: float) -> dict[str, torch.Tensor]:
        p = F.softmax(batch.zu, dim=1)
        CALLS["objective"].append(len(batch.zu))
        return {"entropy_min": self.params.weight * -(p * torch.log(p + 1e-12)).sum(1).mean()}


@pytest.fixture(autouse=True)
def registered():
    """Register the user classes as user code does; unregister afterwards (other tests see only built-ins)."""
    adakit.register_strategy("my_logit_gap")(LogitGap)
    adakit.register_objective("my_entropy_min")(EntropyMin)
    for v in CALLS.values():
        v.clear()
    yield
    STRATEGIES._items.pop("my_logit_gap", None)
    OBJECTIVES._items.pop("my_entropy_min", None)


def test_user_methods_run_by_name_in_a_config_run(tmp_path):
    from adakit.config import build_config
    from adakit.loop import ActiveLoop

    cfg = build_config({"seed": 0, "data": {"format": "demo", "source": "digits", "target": "digits-shifted"},
                        "model": {"backbone": "mlp", "hidden_dim": 16, "bottleneck_dim": 8},
                        "objective": {"name": "my_entropy_min", "weight": 0.5},
                        "query": {"strategy": "my_logit_gap", "temperature": 2.0},
                        "budget": {"total": 0.02, "rounds": 2},
                        "train": {"warmup_iters": 5, "round_iters": 3, "batch_size": 16, "device": "cpu"}})
    summary = ActiveLoop(cfg, tmp_path / "run", show_progress=False).run()
    assert summary["strategy"] == "my_logit_gap" and summary["objective"] == "my_entropy_min"
    per_round = summary["budget"]["per_round"]
    assert [budget for _, budget in CALLS["strategy"]] == per_round and sum(per_round) > 0
    assert summary["rounds"][-1]["labels"] == sum(per_round)
    assert len(CALLS["objective"]) == 5 + 3 * 2  # every training step of warm-up and both rounds


def test_user_strategy_in_select_and_its_params_validated():
    logits = torch.tensor([[3.0, 0.0, 0.0], [1.0, 0.9, 0.0], [2.0, 1.0, 0.0], [0.5, 0.5, 0.4]])
    sel = adakit.select("my_logit_gap", logits=logits, budget=2, temperature=0.5)
    assert sel.indices.tolist() == [3, 1]
    with pytest.raises(ConfigError, match="select\\('my_logit_gap'\\).bogus: unknown key; allowed keys: temperature"):
        adakit.select("my_logit_gap", logits=logits, budget=2, bogus=1)


def test_methods_lists_user_methods_and_their_parameters():
    from adakit.cli import app

    runner = CliRunner()
    listing = runner.invoke(app, ["methods"], env={"COLUMNS": "200"}).output
    assert "my_logit_gap" in listing and "Smallest gap between the two largest logits" in listing
    assert "my_entropy_min" in listing
    detail = runner.invoke(app, ["methods", "my_entropy_min"], env={"COLUMNS": "200"})
    assert detail.exit_code == 0 and "weight of the mean target entropy" in detail.output


def test_registration_rules():
    # the same class again, and a redefinition of it (a re-run notebook cell), are fine
    assert adakit.register_strategy("my_logit_gap")(LogitGap) is LogitGap
    redefined = type("LogitGap", (LogitGap,), {"__module__": LogitGap.__module__, "__qualname__": "LogitGap"})
    adakit.register_strategy("my_logit_gap")(redefined)
    assert STRATEGIES.get("my_logit_gap") is redefined

    class Other(adakit.Strategy):
        """Another strategy."""

        def select(self, view, budget, rng):
            return top_k(view.probs.max(1).values, view.unlabelled_indices, budget, rng)

    class NoSelect(adakit.Strategy):
        """Forgot select: it registered, and the run failed after its warm-up with an empty NotImplementedError."""

    with pytest.raises(ConfigError, match=r"register_strategy\('no_select'\): NoSelect must implement select\(\)"):
        adakit.register_strategy("no_select")(NoSelect)
    with pytest.raises(ConfigError, match="strategy 'my_logit_gap' is already registered by .*LogitGap"):
        adakit.register_strategy("my_logit_gap")(Other)
    with pytest.raises(ConfigError, match="strategy 'margin' is already registered"):  # built-ins load first
        adakit.register_strategy("margin")(Other)
    with pytest.raises(ConfigError, match="must be a subclass of adakit.query.base.Strategy"):
        adakit.register_strategy("plain")(type("Plain", (), {}))

    class BadParams(adakit.Objective):
        """Params that are not ObjectiveParams."""

        class Params(Params):
            x: int = 1

    with pytest.raises(ConfigError, match="Params must subclass adakit.adapt.base.ObjectiveParams"):
        adakit.register_objective("bad_params")(BadParams)
    assert "plain" not in STRATEGIES.names() and "bad_params" not in OBJECTIVES.names()
    assert "no_select" not in STRATEGIES.names()


def test_installed_packages_register_methods_through_entry_points(monkeypatch):
    """``[project.entry-points."adakit.methods"]``: the module is imported on first lookup; a broken one warns."""
    import importlib.metadata

    import adakit.registry as registry

    class Plugin(adakit.Strategy):
        """A strategy from an installed package."""

        def select(self, view, budget, rng):
            return top_k(view.probs.max(1).values, view.unlabelled_indices, budget, rng)

    class EntryPoint:
        def __init__(self, name, value, load):
            self.name, self.value, self.load = name, value, load

    def broken():
        raise ImportError("no module named 'gone'")

    eps = [EntryPoint("ok", "pkg.methods", lambda: adakit.register_strategy("from_plugin")(Plugin)),
           EntryPoint("bad", "gone.methods", broken)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps if group == "adakit.methods" else [])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    try:
        with pytest.warns(UserWarning, match="entry point 'bad' = 'gone.methods' failed to load"):
            registry.load_plugins()
        assert STRATEGIES.get("from_plugin") is Plugin
        registry.load_plugins()  # once only
    finally:
        STRATEGIES._items.pop("from_plugin", None)


def test_registering_before_any_lookup_keeps_both_user_and_built_in_methods():
    """In a fresh interpreter the user's decorator runs before the registry has loaded the built-ins."""
    import subprocess
    import sys

    code = """
import adakit

@adakit.register_strategy("first_thing")
class First(adakit.Strategy):
    '''Registered before any lookup.'''

    def select(self, view, budget, rng):
        raise AssertionError("not called")

from adakit.registry import STRATEGIES
names = STRATEGIES.names()
assert "first_thing" in names and "margin" in names and "badge" in names, names
sel = adakit.select("margin", probs=[[0.5, 0.5], [0.9, 0.1]], budget=1)
assert sel.indices.tolist() == [0]
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("returned, message", [
    (lambda cand: cand[:3].tolist(), r"select\(\) returned list, not an adakit.Selection"),
    (lambda cand: adakit.Selection(np.array([cand[0]] * 3), np.zeros(3)), r"index \d+ picked twice"),
    (lambda cand: adakit.Selection(np.array([0, cand[0], cand[1]]), np.zeros(3)), "index 0 is labelled"),
    (lambda cand: adakit.Selection(cand[:2], np.zeros(2)), "2 indices, expected 3"),
    (lambda cand: adakit.Selection(cand[:3], np.zeros(2)), "2 scores for 3 indices"),
    (lambda cand: adakit.Selection(np.array([cand[0], cand[1], 10**6]), np.zeros(3)), "index 1000000 outside"),
])
def test_a_user_strategys_invalid_selection_is_named_by_select_and_by_the_loop(returned, message, tmp_path):
    """`adakit.select` handed back whatever a user strategy returned (labelled samples, duplicates); the loop
    failed with an AttributeError on a list, or one message for every kind of mistake."""

    class Broken(adakit.Strategy):
        """Returns what the test says."""

        def select(self, view, budget, rng):
            return returned(view.unlabelled_indices)

    adakit.register_strategy("my_broken")(Broken)
    try:
        probs = np.full((20, 2), 0.5)
        with pytest.raises(ConfigError, match=f"my_broken.*invalid selection: {message}"):
            adakit.select("my_broken", probs=probs, labelled=np.arange(2), budget=3)
        cfg = {"data": {"format": "demo"}, "model": {"hidden_dim": 8, "bottleneck_dim": 4},
               "query": {"strategy": "my_broken"}, "budget": {"total": 3, "rounds": 1},
               "train": {"warmup_iters": 2, "round_iters": 1, "threads": 1}}
        if "labelled" in message:  # the run's round 1 has no labelled sample yet: another rule breaks there
            return
        with pytest.raises(ConfigError, match=f"query.strategy='my_broken'.*{message}"):
            adakit.ActiveLoop(cfg, tmp_path / "run", show_progress=False).run()
    finally:
        STRATEGIES._items.pop("my_broken", None)


def test_a_user_objectives_term_that_clashes_or_is_not_a_scalar_tensor_is_named():
    """A transfer term named ce_target replaced the labelled cross-entropy silently; a float term crashed the
    trainer with an AttributeError."""

    class Clash(adakit.Objective):
        """Returns what the test sets."""

        term: dict = {}

        def transfer_terms(self, model, batch, progress):
            return self.term

    adakit.register_objective("my_clash")(Clash)
    try:
        obj = adakit.objective("my_clash", feature_dim=4, num_classes=2)
        f, z, y = torch.randn(3, 4), torch.randn(3, 2), torch.tensor([0, 1, 0])
        kw = {"source_features": f, "source_logits": z, "source_labels": y, "labelled_features": f,
              "labelled_logits": z, "labelled_labels": y, "progress": 0.5}
        Clash.term = {"ce_target": torch.tensor(0.0)}
        with pytest.raises(ConfigError, match="two of its parts return a loss term named 'ce_target'"):
            obj.losses(**kw)
        Clash.term = {"x": 0.5}
        with pytest.raises(ConfigError, match="loss term 'x' must be a 0-dim floating-point tensor .*got 0.5"):
            obj.losses(**kw)
        Clash.term = {"x": torch.ones(3)}
        with pytest.raises(ConfigError, match=r"got a tensor of shape \(3,\)"):
            obj.losses(**kw)
        Clash.term = {"x": torch.tensor(0.25)}
        assert set(obj.losses(**kw)) == {"ce_source", "ce_target", "x"}
    finally:
        OBJECTIVES._items.pop("my_clash", None)


def test_readme_snippets_of_own_methods_and_validators_run(tmp_path, monkeypatch, readme_python, capsys):
    """The README's "Your own strategies and objectives" blocks run as written (no test ran them; the validator
    block is new: `adakit.register_validator` was exported but documented nowhere), and a run with the user's
    strategy, objective and validator uses all three and records the validator as val/<name>."""
    from adakit.loop import ActiveLoop
    from adakit.registry import VALIDATORS

    blocks = readme_python("### Your own strategies and objectives")
    assert len(blocks) == 2 and "register_validator" in blocks[1]
    for name in ("my_logit_gap", "my_entropy_min"):  # (the fixture registered the test's classes under them)
        (STRATEGIES if name == "my_logit_gap" else OBJECTIVES)._items.pop(name, None)
    monkeypatch.chdir(tmp_path)
    try:
        space: dict = {}
        exec(blocks[0], space)
        assert len(space["sel"].indices) == 5
        exec(blocks[1], {})
        assert capsys.readouterr().out.startswith("0.444")
        config = {**space["config"], "train": {"warmup_iters": 5, "round_iters": 3}}
        summary = ActiveLoop(config, tmp_path / "mine", show_progress=False).run()
        assert summary["strategy"] == "my_logit_gap" and summary["objective"] == "my_entropy_min"
        assert all(0 < r["val/my_confidence"] <= 1 for r in summary["rounds"])
    finally:
        VALIDATORS._items.pop("my_confidence", None)
