"""`adakit methods [NAME]`: the list of methods, and one method's parameters with type, default and meaning."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from adakit.cli import app
from adakit.registry import OBJECTIVES, STRATEGIES

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, ["methods", *args], env={"COLUMNS": "200"})


def test_plain_methods_still_lists_everything():
    res = _invoke()
    assert res.exit_code == 0, res.output
    for name in STRATEGIES.names() + OBJECTIVES.names():
        assert name in res.output
    assert "adakit methods NAME" in res.output


def test_method_name_prints_each_parameter_with_type_default_and_description():
    res = _invoke("las")
    assert res.exit_code == 0, res.output
    assert "strategy las" in res.output and "query.strategy: las" in res.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in res.output.splitlines() if line.startswith("│") and line.split("│")[1].strip()}
    assert rows["neighbours"] == ["'unlabelled' | 'pool'", "'unlabelled'", rows["neighbours"][2]]
    assert rows["neighbours"][2].startswith("where neighbours come from")
    assert rows["k"][:2] == ["int", "10"] and rows["k"][2].startswith("neighbourhood size K")
    assert rows["budget_ratio"][:2] == ["float", "0.05"]


def test_an_objective_shows_its_config_key_and_what_it_provides():
    res = _invoke("dann")
    assert res.exit_code == 0, res.output
    assert "objective dann" in res.output and "provides: domain_discriminator" in res.output
    assert "grl_alpha" in res.output and "10.0" in res.output and "GRL schedule steepness" in res.output
    sage = _invoke("sage")
    assert "needs an objective that provides: class_discriminator" in sage.output


def test_a_name_in_both_registries_prints_both():
    res = _invoke("sdm")
    assert res.exit_code == 0, res.output
    assert "objective sdm" in res.output and "strategy sdm" in res.output


def test_unknown_name_is_an_error_listing_the_names():
    res = _invoke("nope")
    assert res.exit_code == 2
    assert "unknown method 'nope'" in res.output and "margin" in res.output and "dann" in res.output


@pytest.mark.parametrize("reg", [STRATEGIES, OBJECTIVES], ids=["strategies", "objectives"])
def test_every_parameter_of_every_method_has_a_description(reg):
    builtin = [n for n in reg.names() if reg.get(n).__module__.startswith("adakit.")]
    missing = [(name, key) for name in builtin for key, _, _, doc in reg.parameters(name) if not doc]
    assert not missing, f"Params fields without description=: {missing}"
