import pytest

from adakit.config import build_config, load_config, parse_overrides
from adakit.errors import ConfigError


def test_defaults_are_valid():
    cfg = build_config({})
    assert cfg.objective.name == "finetune" and cfg.query.strategy == "random"


def test_overrides_nested_and_typed():
    assert parse_overrides(["a.b=1", "a.c=x", "d=0.5", "e=true"]) == {"a": {"b": 1, "c": "x"}, "d": 0.5, "e": True}
    cfg = build_config({}, ["query.strategy=margin", "budget.rounds=3", "train.lr=0.1"])
    assert (cfg.query.strategy, cfg.budget.rounds, cfg.train.lr) == ("margin", 3, 0.1)


def test_unknown_key_names_path_and_allowed_keys():
    with pytest.raises(ConfigError) as e:
        build_config({"train": {"learning_rate": 0.1}})
    msg = str(e.value)
    assert "train.learning_rate" in msg and "allowed keys" in msg and "warmup_iters" in msg


def test_bad_value_names_key_and_choices():
    with pytest.raises(ConfigError) as e:
        build_config({}, ["data.protocol=sideways"])
    assert "data.protocol" in str(e.value) and "'transductive'" in str(e.value)
    with pytest.raises(ConfigError, match="train.batch_size"):
        build_config({}, ["train.batch_size=0"])


def test_unknown_method_lists_choices():
    with pytest.raises(ConfigError) as e:
        build_config({}, ["query.strategy=psychic"])
    assert "psychic" in str(e.value) and "margin" in str(e.value)
    with pytest.raises(ConfigError, match="unknown objective"):
        build_config({}, ["objective.name=nope"])


def test_method_params_are_validated():
    with pytest.raises(ConfigError) as e:
        build_config({}, ["query.strategy=margin", "query.temperature=3"])
    assert "query.temperature" in str(e.value)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml")):
        load_config(path)
