"""Experiment configuration: typed pydantic models loaded from YAML with ``--set key=value`` overrides.

Every mistake (unknown key, wrong type, value out of range, unknown method) is a `ConfigError` that
names the key path and the allowed values, raised before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adakit.adapt.paa import AnchorParams
from adakit.errors import ConfigError
from adakit.params import format_validation_error
from adakit.registry import OBJECTIVES, STRATEGIES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


DataFormat = Literal["npz", "mat", "svmlight", "image_folder", "image_list", "digits", "demo"]

DEFAULT_PATTERNS = {
    "npz": "{root}/{domain}.npz",
    "mat": "{root}/{domain}.mat",
    "svmlight": "{root}/{domain}.svmlight",
    "image_folder": "{root}/{domain}",
    "image_list": "{root}/{domain}.txt",
    "digits": "{root}",
    "demo": "",
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
    verify_images: bool = Field(True, description="image formats: open every file's header before training")
    standardize: bool = Field(False, description="features: z-score with source statistics")

    def path_of(self, domain: str, root: str) -> str:
        return (self.pattern or DEFAULT_PATTERNS[self.format]).format(root=root, domain=domain)


class ModelConfig(_Strict):
    """Backbone -> bottleneck -> head."""

    backbone: Literal["identity", "mlp", "lenet", "resnet18", "resnet50", "mobilenet_v2"] = "mlp"
    weights: str | None = Field(None, description="local file with pretrained backbone weights")
    hidden_dim: int = Field(512, ge=1, description="mlp backbone width")
    bottleneck_dim: int = Field(256, ge=0, description="0 = no bottleneck")
    head: Literal["linear", "cosine"] = "linear"
    temperature: float = Field(0.05, gt=0, description="cosine head temperature (MME)")
    dropout: float = Field(0.0, ge=0, lt=1)


class TrainConfig(_Strict):
    """One training loop for every method (METHODS.md, Protocols: optimizer defaults)."""

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
    num_workers: int = Field(0, ge=0, description="image loading workers")
    eval_batch_size: int = Field(256, ge=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's)")


class BudgetConfig(_Strict):
    """Total target labels (fraction of the pool if < 1, else a count) spread over rounds."""

    total: float = Field(0.05, ge=0)
    rounds: int = Field(5, ge=0)


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


class OracleConfig(_Strict):
    kind: Literal["simulated", "file"] = "simulated"


class ExperimentConfig(_Strict):
    name: str = "experiment"
    label: str | None = Field(None, description="display name of the method in reports (bench sets it)")
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    query: QueryConfig = QueryConfig()
    budget: BudgetConfig = BudgetConfig()
    train: TrainConfig = TrainConfig()
    oracle: OracleConfig = OracleConfig()
    anchor: AnchorParams = Field(default_factory=AnchorParams,
                                 description="LADA's progressive anchor-set augmentation: kind none | raa | laa")

    @model_validator(mode="after")
    def _check_methods(self) -> ExperimentConfig:
        OBJECTIVES.get(self.objective.name).Params.validated(self.objective.params(), "objective")
        STRATEGIES.get(self.query.strategy).Params.validated(self.query.params(), "query")
        return self

    def objective_params(self):
        return OBJECTIVES.get(self.objective.name).Params.validated(self.objective.params(), "objective")

    def query_params(self):
        return STRATEGIES.get(self.query.strategy).Params.validated(self.query.params(), "query")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set query.strategy=margin")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
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


def build_config(values: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    values = merge(values or {}, parse_overrides(overrides))
    try:
        return ExperimentConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "", ExperimentConfig)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, ...) at the top")
    try:
        return build_config(values, overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
