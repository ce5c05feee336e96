"""Property-based fuzzing of the config parser: every input is a valid config or a `ConfigError`, never
another exception (issue 11). Bounded to stay fast in CI."""

import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adakit.config import ExperimentConfig, build_config, load_config
from adakit.errors import ConfigError


def _vocabulary() -> list[str]:
    """Every section and field name of the config (so the fuzzer reaches the validators), plus a few extra."""
    names = set()

    def walk(model):
        for name, field in model.model_fields.items():
            names.add(name)
            if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
                walk(field.annotation)

    walk(ExperimentConfig)
    return sorted(names | {"margin", "dann", "mme", "lambda_", "probe_domain", "kind", ""})


KEYS = st.sampled_from(_vocabulary()) | st.text(max_size=8)
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["auto", "cpu", "cuda:1", "tpu", "{root}/{domain}.npz", "{x}", "{", "demo", "npz",
                              "margin", "dann", "inductive", "0.5", "1e309", "-1", ".inf", ".nan", "random"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=12)
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=6)
SECTION_MAPPINGS = st.fixed_dictionaries({}, optional={
    s: st.dictionaries(KEYS, VALUES, max_size=5)
    for s in ("data", "model", "objective", "query", "budget", "train", "oracle", "anchor")})
OVERRIDES = st.lists(
    st.builds(lambda k, v: f"{k}={v}", st.lists(KEYS, min_size=1, max_size=3).map(".".join),
              SCALARS.map(str) | st.text(max_size=10))
    | st.text(max_size=15), max_size=4)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _build_or_config_error(values, overrides=None):
    try:
        cfg = build_config(values, overrides)
    except ConfigError as e:
        assert str(e)  # a message for the user
        return None
    assert isinstance(cfg, ExperimentConfig)
    assert math.isfinite(cfg.budget.total) and 0 <= cfg.seed < 2**32
    return cfg


@FUZZ
@given(values=MAPPINGS | SECTION_MAPPINGS, overrides=OVERRIDES)
def test_build_config_gives_a_config_or_a_config_error(values, overrides):
    _build_or_config_error(values, overrides)


@settings(FUZZ, max_examples=60)
@given(overrides=OVERRIDES)
@example(overrides=["seed=" + "[" * 5000, "a.b=1", "a.b.c=2"])
def test_overrides_alone_give_a_config_or_a_config_error(overrides):
    _build_or_config_error({}, overrides)


@settings(FUZZ, max_examples=100)
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=100), VALUES.map(lambda v: yaml.safe_dump(v)),
                      SECTION_MAPPINGS.map(lambda v: yaml.safe_dump(v))))
@example(text="[" * 5000)  # nested beyond Python's recursion limit
@example(text=b"\xff\xfe not utf-8")
@example(text="a: &a [*a]")  # a self-referencing alias
def test_load_config_gives_a_config_or_a_config_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cfg.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as e:
            assert str(path) in str(e)
