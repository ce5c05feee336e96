import pytest
import torch

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
    with pytest.raises(ConfigError, match="budget.total: .*2.5 is neither a fraction of the pool"):
        build_config({}, ["budget.total=2.5"])  # was truncated to 2 labels
    assert build_config({}, ["budget.total=30"]).budget.total == 30


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


@pytest.mark.parametrize("override, key, hint", [
    ("budget.total=.inf", "budget.total", "finite"),
    ("budget.total=.nan", "budget.total", "finite"),
    ("train.lr=.inf", "train.lr", "finite"),
    ("seed=-1", "seed", "greater than or equal to 0"),
    ("seed=4294967296", "seed", "less than or equal to 4294967295"),
    ("train.device=tpu", "train.device", "auto, cpu, cuda, cuda:N"),
    ("train.device=cuda:x", "train.device", "auto, cpu, cuda, cuda:N"),
    ("train.device=mps", "train.device", "adakit runs on cpu or cuda devices; use one of: auto, cpu, cuda, cuda:N"),
    ("data.pattern={root}/{dom}.npz", "data.pattern", "{dom}"),
    ("data.pattern={root}/{0}.npz", "data.pattern", "only {root} and {domain}"),
    ("data.pattern={root", "data.pattern", "not a valid pattern"),
])
def test_values_checked_before_work_name_the_key(override, key, hint):
    with pytest.raises(ConfigError) as e:
        build_config({}, [override])
    assert key in str(e.value) and hint in str(e.value)


def test_valid_devices_seeds_and_patterns_are_accepted():
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert build_config({}, [f"train.device={device}"]).train.device == device
    assert build_config({}, [f"seed={2**32 - 1}"]).seed == 2**32 - 1
    cfg = build_config({"data": {"pattern": "{root}/{{literal}}/{domain}.npz"}})
    assert cfg.data.path_of("amazon", "/d") == "/d/{literal}/amazon.npz"


def test_device_forms_advertise_only_what_the_loop_runs_on():
    from adakit.config import DEVICE_FORMS, TrainConfig

    assert "mps" not in DEVICE_FORMS and "mps" not in TrainConfig.model_fields["device"].description


def test_deeply_nested_or_unreadable_config_is_a_config_error(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="bin.yaml"):
        load_config(binary)


def test_relative_paths_become_absolute_against_the_current_folder(tmp_path, monkeypatch):
    """A run stores its config; a relative data.root / data.pattern / model.weights would be looked up relative to
    wherever `adakit resume` or `adakit predict` runs later, so they are made absolute when the config is built."""
    odd = tmp_path / "a{b}c"  # braces in the folder name must not become pattern keys
    odd.mkdir()
    monkeypatch.chdir(odd)
    cfg = build_config({"data": {"format": "npz", "root": "data", "pattern": "feats/{domain}.npz"},
                        "model": {"weights": "w/r18.pth"}})
    assert cfg.data.root == str(odd / "data")
    assert cfg.data.path_of("amazon", cfg.data.root) == str(odd / "feats" / "amazon.npz")
    assert cfg.model.weights == str(odd / "w" / "r18.pth")
    again = build_config(cfg.to_dict())  # a stored config rebuilt elsewhere keeps its paths
    monkeypatch.chdir(tmp_path)
    assert build_config(cfg.to_dict()) == again == cfg
    kept = {"root": "${ADAKIT_DATA}/office31", "pattern": "{root}/{domain}.npz"}
    cfg = build_config({"data": {"format": "npz", **kept}, "model": {"weights": "imagenet", "backbone": "resnet18"}})
    assert (cfg.data.root, cfg.data.pattern, cfg.model.weights) == (*kept.values(), "imagenet")
    assert build_config({"data": {"root": "~/data"}}).data.root == "~/data"


def test_a_key_given_twice_and_true_false_for_a_number_are_errors(tmp_path):
    """PyYAML keeps the last of two equal keys, so a second train: section silently dropped the first; pydantic's
    lax mode read `seed: true` as seed 1. A number where a name is expected is that name (a domain named 123)."""
    (tmp_path / "dup.yaml").write_text("train: {lr: 0.5}\nseed: 3\ntrain: {warmup_iters: 10}\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: not valid YAML: the key 'train' is given twice \(lines 1 and 3"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "dup.yaml").write_text("train: {lr: 0.5, lr: 0.1}\n")  # twice on one line
    with pytest.raises(ConfigError, match=r"the key 'lr' is given twice \(lines 1 and 1"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "merge.yaml").write_text("x: &b {lr: 0.5}\ntrain:\n  <<: *b\n  lr: 0.2\n")  # a merge key is no repeat
    with pytest.raises(ConfigError, match="x: unknown key"):
        load_config(tmp_path / "merge.yaml")
    for override, key in (("seed=true", "seed"), ("train.lr=yes", "train.lr"), ("budget.rounds=false", "budget.rounds"),
                          ("query.k=true", "query.k")):
        with pytest.raises(ConfigError, match=rf"{key}: .*expected a number, not true/false"):
            build_config({"query": {"strategy": "las"}}, [override])
    cfg = build_config({}, ["data.source=123", "train.fused_sgd=true", "data.zero_based=true"])
    assert (cfg.data.source, cfg.train.fused_sgd, cfg.data.zero_based) == ("123", True, True)


def test_numbers_are_read_as_yaml_1_2_reads_them():
    """PyYAML reads YAML 1.1: a domain named 010 was the number 8, 12:30 was 750, 1_000 was 1000 and 1e-3 was text;
    YAML 1.2 numbers are decimal only. An integer with a leading zero (01) stays the text written, which a number
    setting reads as that number and a name keeps."""
    from adakit.config import read_yaml

    assert read_yaml("[5, -3, +4, 0, 0.05, 0.10, 1e-3, 1E3, true, null]") == [5, -3, 4, 0, 0.05, 0.1, 0.001, 1000.0,
                                                                             True, None]
    assert read_yaml("[010, 12:30, 1_000, 0x10, 01, -01]") == ["010", "12:30", "1_000", "0x10", "01", "-01"]
    assert read_yaml("[.inf, -.inf]") == [float("inf"), float("-inf")]
    cfg = build_config({}, ["data.source=010", "data.target=01", "train.lr=1e-3", "budget.rounds=02"])
    assert (cfg.data.source, cfg.data.target, cfg.train.lr, cfg.budget.rounds) == ("010", "01", 0.001, 2)
    with pytest.raises(ConfigError, match="seed"):
        build_config({}, ["seed=12:30"])  # (was seed 750)


def test_train_threads_is_capped():
    """torch crashed (exit 139) on train.threads=100000."""
    from adakit.config import MAX_THREADS

    assert build_config({}, [f"train.threads={MAX_THREADS}"]).train.threads == MAX_THREADS
    with pytest.raises(ConfigError, match="train.threads"):
        build_config({}, ["train.threads=100000"])
    for n in (0, -1):  # (0 means "every core" to some tools: the error says how to get torch's default)
        with pytest.raises(ConfigError, match=rf"train.threads: .*1 to {MAX_THREADS}; for torch's default .*leave "
                                              rf"train.threads out, or set it to null \(got {n}\)"):
            build_config({}, [f"train.threads={n}"])
    assert build_config({}, ["train.threads=null"]).train.threads is None


def test_batch_size_one_with_batch_norm_is_refused_before_work():
    """torch failed in the first step ("Expected more than 1 value per channel") with one sample per batch."""
    with pytest.raises(ConfigError, match="train.batch_size: 1 sample per batch cannot train model.bottleneck_dim=256"
                                          ".*set train.batch_size: 2 or more, or model.bottleneck_dim: 0"):
        build_config({}, ["train.batch_size=1", "model.bottleneck_dim=256"])
    with pytest.raises(ConfigError, match="cannot train model.backbone=resnet50"):
        build_config({}, ["train.batch_size=1", "model.backbone=resnet50", "model.bottleneck_dim=0"])
    assert build_config({}, ["train.batch_size=1", "model.bottleneck_dim=0"]).train.batch_size == 1


def test_nesterov_without_momentum_is_refused_before_work():
    """train.momentum: 0 with the default train.nesterov: true was a raw ValueError of torch's SGD ("Nesterov momentum
    requires a momentum and zero dampening") with a traceback; plain SGD is train.nesterov: false."""
    from adakit.config import TrainConfig
    from adakit.train import sgd

    with pytest.raises(ConfigError, match="train.nesterov: true needs train.momentum above 0 .*set train.nesterov: "
                                          "false"):
        build_config({}, ["train.momentum=0"])
    cfg = build_config({}, ["train.momentum=0", "train.nesterov=false"]).train
    params = [torch.nn.Parameter(torch.ones(2))]
    assert sgd([{"params": params}], cfg).param_groups[0]["momentum"] == 0
    assert TrainConfig(momentum=0.5).nesterov


def test_dropout_without_a_layer_to_act_on_is_refused():
    """model.dropout is applied by the mlp backbone and the bottleneck; with neither (identity or an image backbone
    and model.bottleneck_dim: 0) it was ignored, and the run trained without it."""
    for backbone in ("identity", "lenet"):
        with pytest.raises(ConfigError, match=f"model.dropout: 0.5 has no layer to act on.*model.backbone={backbone} "
                                              "has model.bottleneck_dim: 0; set model.bottleneck_dim"):
            build_config({}, [f"model.backbone={backbone}", "model.bottleneck_dim=0", "model.dropout=0.5"])
    for sets in (["model.bottleneck_dim=0"], ["model.backbone=identity"], ["model.backbone=lenet"]):
        assert build_config({}, [*sets, "model.dropout=0.5"]).model.dropout == 0.5
    assert build_config({}, ["model.backbone=identity", "model.bottleneck_dim=0"]).model.dropout == 0


def _run_check(sets, model=None):
    """`ActiveLoop`'s check of a config with its Python objects applied (``model``: your module), no data loaded."""
    from adakit.loop import _with_objects

    return _with_objects(build_config({}, sets), None, None, None, None, None, model, None, None, None)[0]


@pytest.mark.parametrize("sets, error", [
    (["model.backbone=identity", "model.hidden_dim=64"],
     r"model.hidden_dim: 64 is the width of the mlp backbone, and model.backbone=identity has no such layer, so the "
     r"run would ignore it; remove model.hidden_dim \(or set model.backbone: mlp\)"),
    (["model.backbone=resnet18", "model.hidden_dim=512"], r"model.hidden_dim: 512 .*model.backbone=resnet18 has no"),
    (["model.temperature=0.1"],
     r"model.temperature: 0.1 is the temperature of the cosine head, but this run has the linear head \(model.head: "
     r"linear, and objective.name=finetune keeps it\), so the run would ignore it; set model.head: cosine \(or use "
     r"the cosine head's objective: objective.name: mme, or objective.omega: mme\), or remove model.temperature"),
    (["model.temperature=0.1", "model.head=cosine", "objective.name=biwaa"],
     r"model.temperature: 0.1 is the temperature of the cosine head, but objective.name=biwaa trains the linear head, "
     r"so the run would ignore it; remove model.temperature"),
    (["train.backbone_lr_mult=1.0"],
     r"train.backbone_lr_mult: 1 multiplies the learning rate of a pretrained backbone only, and model.backbone=mlp "
     r"starts from random weights \(model.weights is not set\), so the whole model trains at train.lr and the run "
     r"would ignore it; remove train.backbone_lr_mult, or set model.weights \(imagenet or a local state-dict file\)"),
])
def test_a_setting_the_run_would_not_read_is_refused(sets, error):
    """model.hidden_dim without the mlp backbone, model.temperature without the cosine head (model.head or the
    objective's) and train.backbone_lr_mult without a pretrained backbone were ignored without a word."""
    with pytest.raises(ConfigError, match="invalid config:\n  " + error):
        _run_check(sets)


def test_the_settings_a_run_reads_and_defaults_written_out_pass():
    """The uses that read each setting pass, the defaults written out (a run folder's config.yaml run again) pass,
    and your own module (ActiveLoop(model=...)) is a pretrained backbone: it reads train.backbone_lr_mult (as the
    examples set it) but not model.hidden_dim (a warning beside a module: the config may serve mlp runs too)."""
    from adakit.config import unread_settings

    for sets in (["model.hidden_dim=64"], ["model.temperature=0.1", "model.head=cosine"],
                 ["model.temperature=0.1", "objective.name=mme"], ["model.temperature=0.1", "objective.omega=mme"],
                 ["model.temperature=0.1", "objective.name=tsf_mme"],
                 ["train.backbone_lr_mult=1", "model.weights=w.pt"],
                 ["model.backbone=resnet18", "model.weights=imagenet", "train.backbone_lr_mult=0.5"],
                 ["model.backbone=identity", "model.hidden_dim=1024", "model.temperature=0.05"]):
        _run_check(sets)
    resolved = build_config(build_config({}, ["model.backbone=resnet18"]).to_dict())  # every key set, defaults
    assert "hidden_dim" in resolved.model.model_fields_set and unread_settings(resolved) == []
    module = torch.nn.Linear(64, 8)
    assert _run_check(["train.backbone_lr_mult=1"], model=module).model.backbone == "custom"
    # a config shared with runs of the built-in mlp: a warning, and the run's config keeps the default width
    with pytest.warns(UserWarning, match=r"model.hidden_dim=64 is the width of the mlp backbone, which your own "
                                         r"module \(model=\) replaces, so this run ignores it \(its config keeps "
                                         r"the default 1024\)"):
        assert _run_check(["model.hidden_dim=64"], model=module).model.hidden_dim == 1024
    with pytest.raises(ConfigError, match=r"model.hidden_dim: 64 is the width of the mlp backbone, and your own "
                                          r"module \(ActiveLoop\(model=...\)\) has no such layer"):
        _run_check(["model.backbone=custom", "model.hidden_dim=64"])
    with pytest.raises(ConfigError, match="model.temperature"):  # also as a dict of model settings
        _run_check([], model={"temperature": 0.2})
    assert build_config({}, ["train.backbone_lr_mult=1"]).train.backbone_lr_mult == 1  # (a module may come later)


def test_adakit_run_and_activeloop_refuse_an_unread_setting_before_any_work(tmp_path):
    """`adakit run` names the config file; ActiveLoop refuses before the run folder exists; a bench names the run."""
    from typer.testing import CliRunner

    from adakit.cli import app
    from adakit.loop import ActiveLoop

    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: identity\n  hidden_dim: 64\n")
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0 and f"{path}: invalid config:" in res.output and "model.hidden_dim: 64" in res.output
    with pytest.raises(ConfigError, match="train.backbone_lr_mult: 0.5"):
        ActiveLoop({"train": {"backbone_lr_mult": 0.5}}, tmp_path / "r2", show_progress=False)
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()
    from adakit.bench import check_plan

    with pytest.raises(ConfigError, match=f"{tmp_path / 'r3'}: invalid config:\n  model.temperature: 0.2"):
        check_plan([(build_config({}, ["model.temperature=0.2"]), tmp_path / "r3")])


def test_relative_log_folders_are_made_absolute(tmp_path, monkeypatch):
    """A resumed run started from another working folder logged to another place."""
    monkeypatch.chdir(tmp_path)
    cfg = build_config({}, ["log.tensorboard=tb", "log.mlflow=ml"])
    assert (cfg.log.tensorboard, cfg.log.mlflow) == (str(tmp_path / "tb"), str(tmp_path / "ml"))
    cfg = build_config({}, ["log.tensorboard=true", "log.mlflow=http://localhost:5000"])
    assert (cfg.log.tensorboard, cfg.log.mlflow) == (True, "http://localhost:5000")


def test_set_that_switches_the_strategy_drops_the_old_ones_parameters():
    """--set query.strategy=margin on a LAS config failed on LAS's query.k; the parameters the new method does not
    take are dropped with a warning naming them; those it takes are kept."""
    base = {"query": {"strategy": "las", "k": 5}, "objective": {"name": "dann", "trade_off": 0.5}}
    with pytest.warns(UserWarning, match="dropped query.k=5, of las, which margin does not take"):
        cfg = build_config(base, ["query.strategy=margin"])
    assert cfg.query.strategy == "margin" and cfg.query.params() == {}
    with pytest.warns(UserWarning, match="dropped objective.trade_off=0.5, of dann, which finetune does not take"):
        assert build_config(base, ["objective.name=finetune"]).objective.params() == {}
    with pytest.raises(ConfigError, match="query.k"):  # given with the switch: the user's own mistake, named
        build_config(base, ["query.strategy=margin", "query.k=3"])


def test_unknown_method_parameter_lists_the_sections_own_keys_too():
    with pytest.raises(ConfigError, match=r"query.kk: unknown key; allowed keys: .*\bk, .*probs_from, .*strategy"):
        build_config({}, ["query.strategy=las", "query.kk=3"])
