"""Experiment configuration: typed pydantic models loaded from YAML with ``--set key=value`` overrides.

Every mistake (unknown key, wrong type, value out of range, unknown method) is a `ConfigError` that
names the key path and the allowed values, raised before any work starts.
"""

from __future__ import annotations

import re
import string
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adakit.adapt.paa import AnchorParams
from adakit.errors import ConfigError
from adakit.params import PlainTypes, format_validation_error
from adakit.registry import OBJECTIVES, STRATEGIES


class _Strict(PlainTypes):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # numbers are finite


def absolute_path(text: str | None, pattern: bool = False) -> str | None:
    """A relative path made absolute against the current folder, so a stored run finds its files from anywhere.

    Unchanged: None, "", absolute paths and those that start with ``~``, ``$VAR`` or ``{root}`` (they do not
    depend on the folder adakit runs in). ``pattern``: the current folder's braces are doubled (``{{``).
    """
    if not text or text.startswith(("~", "$", "{root}")) or Path(text).is_absolute():
        return text
    cwd = str(Path.cwd())
    return str(Path(cwd.replace("{", "{{").replace("}", "}}") if pattern else cwd) / text)


def is_uri(text: str) -> bool:
    """``scheme://...`` or ``file:...`` (an MLflow tracking URI, say), as opposed to a path on this machine."""
    return "://" in text or text.startswith("file:")


#: the keys a ``data.pattern`` may use
PATTERN_KEYS = ("root", "domain")
#: ``train.device`` forms
DEVICE_FORMS = "auto, cpu, cuda, cuda:N (N = 0, 1, ...)"
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
#: numpy seeds are 0 .. 2**32 - 1
SEED_MAX = 2**32 - 1
#: ``train.threads`` at most (torch crashed, exit 139, on 100000)
MAX_THREADS = 1024


DataFormat = Literal["npz", "mat", "svmlight", "image_folder", "image_list", "digits", "demo", "objects"]

DEFAULT_PATTERNS = {
    "npz": "{root}/{domain}.npz",
    "mat": "{root}/{domain}.mat",
    "svmlight": "{root}/{domain}.svmlight",
    "image_folder": "{root}/{domain}",
    "image_list": "{root}/{domain}.txt",
    "digits": "{root}",
    "demo": "",
    "objects": "",  # source/target given as Python objects (ActiveLoop(source=..., target=...))
}


class DataConfig(_Strict):
    """Where the source and target domains come from and how the target is split."""

    format: DataFormat = "demo"
    root: str | None = Field(None, description="folder of the domain files; default $ADAKIT_DATA")
    source: str = "digits"
    target: str = "digits-shifted"
    pattern: str | None = Field(None, description="path of one domain, e.g. '{root}/{domain}.npz'")
    protocol: Literal["transductive", "inductive"] = "transductive"
    test_fraction: float = Field(0.5, gt=0, lt=1, description="inductive: share of target held out")
    image_size: int | None = Field(None, ge=8, description="images: crop side (default 224); digits: side "
                                   "(default 28, or 32 when MNIST-M is in the pair)")
    resize: int | None = Field(None, ge=8, description="images: shorter side before the crop (default "
                               "image_size·8/7, i.e. 256 for 224)")
    channels: Literal[1, 3] | None = Field(None, description="digits: 1 or 3 (default 1, or 3 when MNIST-M "
                                           "is in the pair)")
    verify_images: bool = Field(True, description="image formats: decode every file before training (a corrupt or "
                                                       "truncated image stops the run before any work)")
    standardize: bool = Field(False, description="features: z-score with source statistics")
    source_val: float = Field(0.0, ge=0, lt=1, description="share of the source held out (stratified, seeded) "
                              "for the source_acc and dev validators; excluded from training; 0 = none")
    feature_key: str | None = Field(None, description=".mat: name of the feature matrix ({domain} allowed, "
                                    "e.g. X_{domain}); default: the first of feat/feas/fts/X/x/features/data")
    label_key: str | None = Field(None, description=".mat: name of the label vector ({domain} allowed, e.g. "
                                  "Y_{domain}); default: the first of y/label/labels/Y/gnd")
    label_values: list[int] | None = Field(None, description="mat/svmlight/npz without classes: the integer label "
                                           "codes in class order (class i = label_values[i]); default: the "
                                           "sorted codes found in the source and target files together")
    unlabelled_value: int | None = Field(None, description="mat/svmlight/npz without classes: the label code of "
                                         "an unlabelled target sample (e.g. -1); default none: every code is a class")
    zero_based: bool | Literal["auto"] = Field(
        "auto", description="svmlight: feature indices start at 0 (true) or at 1 (false); auto: at 0 when index 0 "
                            "appears in the source or target file (scikit-learn's rule, for the pair); adakit "
                            "predict reads new files with the indexing of the run's files")

    def path_of(self, domain: str, root: str) -> str:
        return (self.pattern or DEFAULT_PATTERNS[self.format]).format(root=root, domain=domain)

    @field_validator("root")
    @classmethod
    def _absolute_root(cls, v: str | None) -> str | None:
        return absolute_path(v)

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, v: str | None) -> str | None:
        """Only ``{root}`` and ``{domain}`` may appear; braces meant literally are doubled (``{{``)."""
        if v is None:
            return v
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        except ValueError as e:
            raise ValueError(f"not a valid pattern ({e}); write literal braces as {{{{ and }}}}") from None
        bad = sorted({n for n in names if n not in PATTERN_KEYS})
        if bad:
            shown = ", ".join("{" + n + "}" for n in bad)
            raise ValueError(f"unknown key(s) {shown}; a pattern may use only {{root}} and {{domain}}")
        try:
            v.format(root="r", domain="d")
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as e:
            raise ValueError(f"not a valid pattern ({e}); use plain {{root}} and {{domain}}") from None
        return absolute_path(v, pattern=True)


class ModelConfig(_Strict):
    """Backbone -> bottleneck -> head."""

    backbone: str = Field(
        "mlp", description="identity | mlp (feature vectors); lenet | resnet18 | resnet34 | resnet50 | resnet101 | "
        "mobilenet_v2 | vit_b_16 | timm/<name> (images); custom = your own nn.Module, given as "
        "ActiveLoop(model=...)")
    weights: str | None = Field(None, description="imagenet (torchvision/timm ImageNet weights, downloaded once) "
                                "or a local state-dict file")
    # 1024 since 2026-12-02 (was 512): chosen by validators, benchmarks/results/feature-defaults.md stage E
    hidden_dim: int = Field(1024, ge=1, description="mlp backbone width")
    bottleneck_dim: int = Field(256, ge=0, description="0 = no bottleneck")
    head: Literal["linear", "cosine"] = "linear"
    temperature: float = Field(0.05, gt=0, description="cosine head temperature (MME)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after the mlp backbone and after the bottleneck")

    @field_validator("backbone")
    @classmethod
    def _check_backbone(cls, v: str) -> str:
        from adakit.models.backbones import check_backbone_name

        return check_backbone_name(v)

    @field_validator("weights")
    @classmethod
    def _absolute_weights(cls, v: str | None) -> str | None:
        from adakit.models.backbones import IMAGENET

        return v if v == IMAGENET else absolute_path(v)

    @model_validator(mode="after")
    def _check_dropout(self) -> ModelConfig:
        """``dropout`` is applied by the mlp backbone and the bottleneck only (it was ignored without either)."""
        if self.dropout > 0 and self.backbone != "mlp" and self.bottleneck_dim == 0:
            raise ConfigError(f"invalid config:\n  model.dropout: {self.dropout} has no layer to act on: it applies "
                              f"after the mlp backbone and after the bottleneck, and model.backbone={self.backbone} "
                              "has model.bottleneck_dim: 0; set model.bottleneck_dim (e.g. 256) or model.dropout: 0")
        return self


class TrainConfig(_Strict):
    """One training loop for every method (docs/methods.md, Protocols: optimizer defaults)."""

    warmup_iters: int = Field(1000, ge=0, description="iterations before the first query")
    round_iters: int = Field(500, ge=0, description="iterations after each query round")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.01, gt=0)
    backbone_lr_mult: float = Field(0.1, ge=0, description="lr multiplier of a pretrained backbone")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    lr_gamma: float = Field(10.0, ge=0)
    lr_power: float = Field(0.75, ge=0)
    labelled_target: Literal["union", "separate"] = Field(
        "separate", description="S∪T: one shared batch; S+T: two batches, two means"
    )
    class_balanced_source: bool = False
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    amp: bool = Field(True, description="mixed precision on GPU")
    cpu_amp: bool = Field(False, description="bf16 autocast on CPU: faster on CPUs with AMX or AVX512-BF16 (Intel "
                          "Xeon since Sapphire Rapids, AMD Zen 4), much slower on others; results differ from float32")
    channels_last: bool = Field(True, description="on GPU: convolutional models and image batches in the "
                                                  "channels_last memory format (faster convolutions)")
    num_workers: int = Field(0, ge=0, description="image loading worker processes per batch stream (training: "
                                                    "source, labelled and unlabelled target each; evaluation passes)")
    eval_batch_size: int = Field(256, ge=1)
    eval_checkpoints: int = Field(0, ge=0, description="evenly spaced warm-up steps at which accuracy and the "
                                  "validators are recorded and the model saved (for checkpoint selection)")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description=f"torch CPU threads, at most {MAX_THREADS} "
                                "(default: torch's); set for the whole process (torch.set_num_threads)")
    weight_average: float = Field(0.0, ge=0, le=1, description="average the weights (and float buffers, e.g. "
                                  "batch-norm statistics) uniformly over this final fraction of each fit's steps and "
                                  "end the fit on the average (stochastic weight averaging, Izmailov et al. 2018); "
                                  "0: off")
    fused_sgd: bool = Field(True, description="torch's fused SGD kernel, one pass over the parameters per step "
                            "(3x faster optimizer step than the foreach kernel on CPU); false: the foreach kernel, "
                            "which the benchmark tables committed before 2026-12-03 used (results differ in the "
                            "last float bits) and which devices other than CPU and CUDA use")

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if not _DEVICE_RE.fullmatch(v):
            raise ValueError(f"adakit runs on cpu or cuda devices; use one of: {DEVICE_FORMS}")
        return v

    @field_validator("threads", mode="before")
    @classmethod
    def _check_threads(cls, v: Any) -> Any:
        """0 or a negative count (elsewhere often "every core") said only "greater than or equal to 1"."""
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise ValueError(f"a thread count is 1 to {MAX_THREADS}; for torch's default (every core) leave "
                             "train.threads out, or set it to null")
        return v

    @model_validator(mode="after")
    def _check_nesterov(self) -> TrainConfig:
        """Nesterov momentum needs a momentum (torch's SGD refused it at the first fit, with a traceback)."""
        if self.nesterov and self.momentum == 0:
            raise ConfigError("invalid config:\n  train.nesterov: true needs train.momentum above 0 (got "
                              "train.momentum: 0); set train.nesterov: false for SGD without momentum, or "
                              "train.momentum: 0.9 (the default)")
        return self


class BudgetConfig(_Strict):
    """Total target labels (fraction of the pool if < 1, else a count) spread over rounds."""

    total: float = Field(0.05, ge=0)
    rounds: int = Field(5, ge=0)

    @field_validator("total")
    @classmethod
    def _check_total(cls, v: float) -> float:
        if v >= 1 and not float(v).is_integer():
            raise ValueError(f"{v} is neither a fraction of the pool (below 1, e.g. 0.05) nor a whole number of "
                             "labels (e.g. 30)")
        return v


class _Method(BaseModel):
    model_config = ConfigDict(extra="allow")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ObjectiveConfig(_Method):
    """Training objective by name plus its own parameters (see ``adakit methods``)."""

    name: str = "finetune"


class QueryConfig(_Method):
    """Selection strategy by name plus its own parameters."""

    strategy: str = "random"
    probs_from: Literal["model", "probe"] = Field(
        "model", description="the pool probabilities the strategy ranks by: the network being trained (model), or "
        "a logistic regression on the input features refitted each round on source + labelled target (probe; "
        "feature data and strategies that read only probabilities: random, entropy, confidence, margin, sdm)")


class OracleConfig(_Strict):
    kind: Literal["simulated", "file", "callable"] = Field(
        "simulated", description="callable = a Python function given as ActiveLoop(oracle=...)")


class ProbeConfig(_Strict):
    """The linear-probe baseline (``runner: linear_probe``): scikit-learn logistic regression."""

    standardize: bool = Field(False, description="true: z-score the features with the training set's statistics "
                              "first (StandardScaler); false (default since 2026-12-02): the raw features")
    c: float = Field(1.0, gt=0, description="inverse L2 regularisation strength C of LogisticRegression")


class LogConfig(_Strict):
    """Optional experiment loggers fed by the loop's events (extras ``tensorboard`` and ``mlflow``)."""

    tensorboard: bool | str = Field(False, description="true = <run folder>/tensorboard, or a folder for the "
                                    "TensorBoard event files")
    mlflow: bool | str = Field(False, description="true = local SQLite store <run folder>/mlflow.db, or an MLflow "
                               "tracking URI (file:, sqlite:, http:) or a folder for mlflow.db")
    experiment: str | None = Field(None, description="MLflow experiment name (default: the config's name)")

    @field_validator("tensorboard", "mlflow")
    @classmethod
    def _absolute_folder(cls, v: bool | str) -> bool | str:
        """A relative folder made absolute (`absolute_path`), so a resumed run logs where it started; URIs as given."""
        return absolute_path(v) if isinstance(v, str) and not is_uri(v) else v


class ExperimentConfig(_Strict):
    name: str = "experiment"
    label: str | None = Field(None, description="display name of the method in reports (bench sets it)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="0 .. 2**32-1 (numpy's seed range)")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    query: QueryConfig = QueryConfig()
    budget: BudgetConfig = BudgetConfig()
    train: TrainConfig = TrainConfig()
    oracle: OracleConfig = OracleConfig()
    log: LogConfig = Field(default_factory=LogConfig, description="TensorBoard / MLflow loggers")
    runner: Literal["loop", "linear_probe"] = Field(
        "loop", description="loop = the network of model:/objective:; linear_probe = scikit-learn logistic "
        "regression retrained each round with the same strategy (feature data; adakit run/bench/sweep)")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="the linear probe's options (runner: "
                               "linear_probe)")
    anchor: AnchorParams = Field(default_factory=AnchorParams,
                                 description="LADA's progressive anchor-set augmentation: kind none | raa | laa")

    @model_validator(mode="after")
    def _check_methods(self) -> ExperimentConfig:
        self.objective_params()
        self.query_params()
        return self

    @model_validator(mode="after")
    def _check_batch_norm_batch(self) -> ExperimentConfig:
        """A batch-norm layer cannot train on one sample (torch: "Expected more than 1 value per channel")."""
        from adakit.models.backbones import BATCH_NORM_BACKBONES

        model = self.model
        if self.runner != "loop" or self.train.batch_size != 1:
            return self
        if model.bottleneck_dim > 0:
            raise ConfigError(batch_norm_error(f"model.bottleneck_dim={model.bottleneck_dim} (a Linear + BatchNorm "
                                               "bottleneck)", "model.bottleneck_dim: 0 (no bottleneck)"))
        if model.backbone in BATCH_NORM_BACKBONES:
            raise ConfigError(batch_norm_error(f"model.backbone={model.backbone} (BatchNorm layers)"))
        return self

    def objective_params(self):
        return OBJECTIVES.get(self.objective.name).Params.validated(self.objective.params(), "objective",
                                                                    ObjectiveConfig.model_fields)

    def query_params(self):
        return STRATEGIES.get(self.query.strategy).Params.validated(self.query.params(), "query",
                                                                   QueryConfig.model_fields)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def user_changed(section: BaseModel, key: str) -> bool:
    """``key`` of ``section`` (a config section) set by the user to a value other than its default. A value equal to
    the default changes nothing, and a resolved config (a run folder's config.yaml, a stored config: every key
    written out) holds the default of every key its run did not read, so it can be run again."""
    return key in section.model_fields_set and getattr(section, key) != type(section).model_fields[key].default


def reads_hidden_dim(backbone: str) -> bool:
    """``model.hidden_dim`` is the width of the mlp backbone; no other backbone reads it."""
    return backbone == "mlp"


def reads_backbone_lr_mult(backbone: str, weights: str | None) -> bool:
    """``train.backbone_lr_mult`` scales the lr of a pretrained backbone only (`adakit.models.Model.param_groups`):
    one built with ``model.weights``, or your own module (``model.backbone: custom``)."""
    return backbone == "custom" or bool(weights)


def objective_head(objective: ObjectiveConfig | dict) -> str | None:
    """The head ``objective`` (the objective section) makes the model use: "cosine" for MME and ``omega: mme``,
    None where ``model.head`` stands (`adakit.adapt.base.Objective.head_for`)."""
    section = objective if isinstance(objective, ObjectiveConfig) else ObjectiveConfig.model_validate(objective)
    cls = OBJECTIVES.get(section.name)
    return cls.head_for(cls.Params.validated(section.params(), "objective", ObjectiveConfig.model_fields))


def reads_temperature(head: str, objective_head: str | None) -> bool:
    """``model.temperature`` is the cosine head's: ``model.head: cosine``, or an objective that needs that head."""
    return (objective_head or head) == "cosine"


def unread_settings(cfg: ExperimentConfig) -> list[str]:
    """The settings of ``cfg`` that the user changed (`user_changed`) but that its run would never read, each as
    ``section.key: why; what to do`` (adakit ignored them before 2026-12-05). ``cfg``: the run's config with the
    Python objects of `ActiveLoop` applied (your module makes ``model.backbone: custom``)."""
    model, train, out = cfg.model, cfg.train, []
    own = "your own module (ActiveLoop(model=...))" if model.backbone == "custom" else \
        f"model.backbone={model.backbone}"
    if user_changed(model, "hidden_dim") and not reads_hidden_dim(model.backbone):
        out.append(f"model.hidden_dim: {model.hidden_dim} is the width of the mlp backbone, and {own} has no such "
                   "layer, so the run would ignore it; remove model.hidden_dim (or set model.backbone: mlp)")
    if user_changed(model, "temperature"):
        head = objective_head(cfg.objective)
        if not reads_temperature(model.head, head) and head is not None:
            out.append(f"model.temperature: {model.temperature:g} is the temperature of the cosine head, but "
                       f"objective.name={cfg.objective.name} trains the {head} head, so the run would ignore it; "
                       "remove model.temperature")
        elif not reads_temperature(model.head, head):
            out.append(f"model.temperature: {model.temperature:g} is the temperature of the cosine head, but this run "
                       f"has the {model.head} head (model.head: {model.head}, and objective.name={cfg.objective.name} "
                       "keeps it), so the run would ignore it; set model.head: cosine (or use the cosine head's "
                       "objective: objective.name: mme, or objective.omega: mme), or remove model.temperature")
    if user_changed(train, "backbone_lr_mult") and not reads_backbone_lr_mult(model.backbone, model.weights):
        out.append(f"train.backbone_lr_mult: {train.backbone_lr_mult:g} multiplies the learning rate of a pretrained "
                   f"backbone only, and {own} starts from random weights (model.weights is not set), so the whole "
                   "model trains at train.lr and the run would ignore it; remove train.backbone_lr_mult, or set "
                   "model.weights (imagenet or a local state-dict file)")
    return out


def check_unread_settings(cfg: ExperimentConfig) -> None:
    """Refuse (`ConfigError`) a network run's config (``runner: loop``; `adakit.loop.check_run_config` calls it for
    those only) with `unread_settings`, naming each, before any work."""
    unread = unread_settings(cfg)
    if unread:
        raise ConfigError("invalid config:\n  " + "\n  ".join(unread))


def batch_norm_error(model: str, other: str = "") -> str:
    """The error of ``train.batch_size: 1`` with a model (``model``: the setting) that has batch-norm layers."""
    return (f"invalid config:\n  train.batch_size: 1 sample per batch cannot train {model}: batch normalization needs "
            f"at least 2; set train.batch_size: 2 or more{', or ' + other if other else ''}")


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently, so a second
    ``train:`` section would drop the first), with YAML 1.2's numbers (`_number`) instead of YAML 1.1's."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
                try:
                    repeated = key in seen
                except TypeError:  # an unhashable key: the base class names it
                    continue
                if repeated:  # (also twice on one line: {lr: 1, lr: 2})
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice (lines {seen[key]} and {line}); keep one (a "
                        "repeated section replaces the first whole)", key_node.start_mark)
                seen[key] = line
        return super().construct_mapping(node, deep)


def _number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float | str:
    """A plain scalar that YAML 1.2's core schema reads as a number: that number (``5``, ``-3``, ``0.10``, ``1e-3``,
    ``.inf``), except an integer written with a leading zero (``01``, ``007``), kept as the text written: a name
    keeps it (a domain ``01`` was ``1``) and a number setting reads it as that number."""
    text = loader.construct_scalar(node)
    try:
        if text.lstrip("+-").lower() in (".inf", ".nan"):
            return float(text.replace(".", "", 1))
        if node.tag == _INT:
            return text if len(text.lstrip("+-")) > 1 and text.lstrip("+-").startswith("0") else int(text)
        return float(text)
    except ValueError:  # (an explicit tag: !!int 0x10)
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a decimal number", node.start_mark) \
            from None


# YAML 1.1's number forms (octal 010, sexagesimal 12:30 = 750, 1_000, 0x10) are not numbers in YAML 1.2's core
# schema: only decimal integers, decimal floats with an optional exponent (1e-3, a string in YAML 1.1), .inf, .nan
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_UniqueKeyLoader.add_implicit_resolver(_INT, re.compile(r"[-+]?[0-9]+\Z"), list("-+0123456789"))
_UniqueKeyLoader.add_implicit_resolver(_FLOAT, re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z|[-+]?\.(inf|Inf|INF)\Z|\.(nan|NaN|NAN)\Z"),
    list("-+.0123456789"))
_UniqueKeyLoader.add_constructor(_INT, _number)
_UniqueKeyLoader.add_constructor(_FLOAT, _number)


def read_yaml(text: str) -> Any:
    """A YAML document read safely (configs, bench files, ``--set`` and ``--grid`` values), with repeated keys
    refused (`yaml.YAMLError`) and numbers as `_number` reads them."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_file(path: Path, what: str = "config") -> Any:
    """The YAML document of a config or bench file (`read_yaml`, empty = {}); what cannot be read is a
    `ConfigError` naming the file."""
    try:
        return read_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to read; a {what} holds sections of plain values") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the {what} file ({err})") from None


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set query.strategy=margin")
        key, raw = item.split("=", 1)
        try:
            value = read_yaml(raw) if raw != "" else ""
        except (yaml.YAMLError, RecursionError):  # not YAML (or nested beyond Python's limit): the plain text
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


#: the sections that name a method: their model, the key that names the method, and its registry
_METHOD_SECTIONS = {"objective": (ObjectiveConfig, "name", OBJECTIVES), "query": (QueryConfig, "strategy", STRATEGIES)}


def _switched_methods(values: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the parameters of an objective or strategy that ``extra`` (``--set``) replaces by one
    without them (``query.k`` of las, ``--set query.strategy=margin``), with a warning naming them."""
    out = dict(values)
    for section, (model, key, registry) in _METHOD_SECTIONS.items():
        old, new = values.get(section), extra.get(section)
        if not isinstance(old, dict) or not isinstance(new, dict) or key not in new:
            continue
        own = model.model_fields
        if new[key] == old.get(key, own[key].default):
            continue
        try:
            params = registry.get(new[key]).Params.model_fields
        except (ConfigError, TypeError):  # an unknown name: validation names it
            continue
        dropped = [k for k in old if k not in own and k not in params and k not in new]
        if dropped:
            out[section] = {k: v for k, v in old.items() if k not in dropped}
            shown = ", ".join(f"{section}.{k}={old[k]}" for k in dropped)
            warnings.warn(f"--set {section}.{key}={new[key]}: dropped {shown}, of {old.get(key, own[key].default)}, "
                          f"which {new[key]} does not take", stacklevel=2)
    return out


def build_config(values: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    """The config of ``values`` (sections) with ``overrides`` (``key=value``); an override that switches the
    objective or strategy drops the previous one's parameters the new one does not take (`_switched_methods`)."""
    extra = parse_overrides(overrides)
    values = merge(_switched_methods(values or {}, extra), extra)
    try:
        return ExperimentConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "", ExperimentConfig)) from None
    except RecursionError:
        raise ConfigError("invalid config: values nested too deeply; a config holds sections of plain values") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    values = read_yaml_file(path)
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, ...) at the top")
    try:
        return build_config(values, overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
