"""Backbones g: inputs -> feature vectors.

Image backbones come from torchvision (``resnet18`` … ``vit_b_16``) or from timm (``timm/<name>``, any
timm model, optional ``timm`` extra). Pretrained weights: ``model.weights: imagenet`` (torchvision's
weights API, downloaded once into the torch hub cache; timm's pretrained weights from its hub) or a local
state-dict file. Offline, a missing ImageNet checkpoint is a `ConfigError` naming the file and where to
place it.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from adakit.errors import ConfigError, DataError

IMAGENET = "imagenet"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision backbones: name -> attribute of the classification head that is replaced by Identity
TORCHVISION = {"resnet18": "fc", "resnet34": "fc", "resnet50": "fc", "resnet101": "fc",
               "mobilenet_v2": "classifier", "vit_b_16": "heads"}
FEATURE_BACKBONES = ("identity", "mlp")
IMAGE_BACKBONES = ("lenet", *TORCHVISION)
#: the built-in backbones with batch-norm layers (they cannot train on batches of one sample)
BATCH_NORM_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2")
HEAD_PREFIXES = ("fc.", "classifier.", "heads.", "head.", "head_dist.")


def check_backbone_name(name: str) -> str:
    """Validate ``model.backbone``: a built-in name or ``timm/<model name>`` (checked against timm at build)."""
    if name in FEATURE_BACKBONES or name in IMAGE_BACKBONES or name == "custom":  # custom: ActiveLoop(model=...)
        return name
    if name.startswith("timm/") and len(name) > len("timm/"):
        return name
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(FEATURE_BACKBONES + IMAGE_BACKBONES)} "
                     "or timm/<name> (any timm model, e.g. timm/resnet50, timm/vit_small_patch16_224)")


#: the smallest image side LeNet's two 5x5 convolutions and 2x2 poolings leave at least one pixel of
LENET_MIN_SIZE = 16


class LeNet(nn.Module):
    """LeNet-5 style encoder for digits (the DANN / CDAN digit experiments' architecture)."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(20, 50, 5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.out_dim = 50 * 4 * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLP(nn.Module):
    """Two-layer perceptron over feature vectors (the frozen-feature setting)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Identity(nn.Module):
    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchvision(name: str) -> nn.Module:
    """A randomly initialised torchvision model with its classification head replaced by Identity."""
    import torchvision.models as tvm

    net = tvm.get_model(name, weights=None)
    head = TORCHVISION[name]
    if head == "fc":
        dim = net.fc.in_features
    elif head == "classifier":
        dim = net.classifier[-1].in_features
    else:  # vit: heads
        dim = net.hidden_dim
    setattr(net, head, nn.Identity())
    net.out_dim = dim
    return net


def imagenet_checkpoint(name: str) -> tuple[str, Path]:
    """(url, local path in the torch hub cache) of torchvision's default ImageNet weights for ``name``."""
    import torchvision.models as tvm

    url = tvm.get_model_weights(name).DEFAULT.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def imagenet_weights_name(name: str, net: nn.Module) -> str:
    """Which ImageNet weights ``model.weights: imagenet`` gave the backbone ``name`` (``net``): torchvision's
    checkpoint file (its name holds its hash), timm's ``architecture.tag``. A library version can change the default
    weights of a model name (timm has), so feature files record this, not only ``imagenet``."""
    if name.startswith("timm/"):
        cfg = getattr(net, "pretrained_cfg", None) or {}
        return ".".join(str(p) for p in (cfg.get("architecture"), cfg.get("tag")) if p) or name
    return imagenet_checkpoint(name)[1].name


def imagenet_state_dict(name: str, progress: bool = True) -> dict:
    """torchvision's default ImageNet weights for ``name``: from the torch hub cache, else downloaded there.

    Offline (or on a failed download) a `ConfigError` names the file and the folder to place it in.
    """
    url, path = imagenet_checkpoint(name)
    if path.is_file():
        check_cached_checkpoint(path, name, url)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=progress, check_hash=True,
                                                  weights_only=True)
    except Exception as err:  # URLError/HTTPError offline, RuntimeError on a bad hash or a corrupt file
        what = "is corrupt" if path.is_file() else "is not there and could not be downloaded"
        raise ConfigError(
            f"model.weights=imagenet for {name}: the checkpoint {path} {what} ({type(err).__name__}: {err}). "
            f"Download {url} on a machine with network and place it at {path} (the torch hub cache; "
            f"TORCH_HOME moves it), or give a local state dict with model.weights: /path/to/file.pth "
            "(adakit features: --weights PATH)"
        ) from None


def check_cached_checkpoint(path: Path, name: str, url: str) -> None:
    """A `ConfigError` when the cached checkpoint ``path``'s sha256 does not start with the hash in its file name.

    torch hub checks it only when it downloads the file; one placed in the cache by hand (as the offline error
    says), half copied or another file under that name, was loaded as torchvision's weights, and feature files
    made with it recorded ``weights imagenet`` as those made with the real weights do."""
    from adakit.datasets.download import file_hash

    match = torch.hub.HASH_REGEX.search(path.name)
    if match is None:
        return
    digest = file_hash(path)
    if not digest.startswith(match.group(1)):
        raise ConfigError(
            f"model.weights=imagenet for {name}: the checkpoint {path} is corrupt or not torchvision's file (its "
            f"sha256 starts {digest[:len(match.group(1))]}, its name says {match.group(1)}). Download "
            f"{url} again and place it at {path}, or give a local state dict with model.weights: /path/to/file.pth "
            "(adakit features: --weights PATH)")


def _load_state(net: nn.Module, state, where: str, backbone: str, heads: tuple[str, ...] = HEAD_PREFIXES) -> None:
    """Load ``state`` into ``net`` (the ``backbone``), ignoring classification-head keys (``heads``: fc./classifier./
    heads./head.); weights of another architecture (a tensor of another shape, missing or extra keys) are a
    `DataError`."""
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict):
        raise DataError(f"{where}: expected a state dict (parameter name -> tensor), got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = net.state_dict()
    if not any(k in own for k in state) and any(k.startswith("backbone.") for k in state):
        # an adakit model's state dict (backbone, bottleneck, head; torch.save(model.state_dict()) of a loaded run):
        # its backbone (else refused as 'another architecture', every key being 'unexpected')
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if k in own or not k.startswith(heads)}
    other = f"these weights are for another architecture than {backbone}"
    fix = f"give weights saved from {backbone}, or set model.backbone (--backbone) to the model they come from"
    for k, v in state.items():  # (load_state_dict would raise a bare RuntimeError listing every mismatch)
        shape = tuple(getattr(v, "shape", ()))
        if k in own and shape != tuple(own[k].shape):
            if backbone == "mlp" and k == "net.0.weight" and len(shape) == 2 and shape[1] == own[k].shape[1]:
                fix = f"set model.hidden_dim: {shape[0]}, the width of the mlp these weights were saved from"
            raise DataError(f"{where}: {other}: {k} has shape {shape} in the file but {tuple(own[k].shape)} in "
                            f"{backbone}; {fix}")
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(f"{where}: does not fit the backbone: {other} (missing {missing[:5]}, unexpected "
                        f"{unexpected[:5]}); {fix}")


def load_weights(net: nn.Module, path: str, backbone: str, heads: tuple[str, ...] = HEAD_PREFIXES) -> None:
    """Load a state dict from a local file into ``net`` (the ``backbone``), ignoring classifier keys
    (``heads``: fc./classifier./heads./head.)."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(q.name for q in p.iterdir() if q.suffix in (".pth", ".pt", ".bin", ".ckpt"))[:3]
        raise DataError(f"model.weights: {p} is a folder; give the state-dict file in it"
                        + (f" (it holds {', '.join(found)})" if found else "") + ".")
    if not p.is_file():
        random = (f" {p.name!r} is read as a file name: for random initial weights leave model.weights out (null); "
                  "adakit features takes imagenet or a file (an untrained network's features are rarely useful)."
                  if p.name.strip().lower() in ("none", "null", "random", "false", "no") else "")
        raise DataError(f"model.weights: file not found: {p}. Give a local state-dict file, or "
                        f"model.weights: imagenet for a torchvision or timm backbone's ImageNet weights.{random}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of a file that is not a torch checkpoint
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found:  # (torch's own message advises weights_only=False, which runs any code the file holds)
            raise DataError(f"model.weights {p}: holds a pickled Python object ({found.group(1)}), not only tensors: "
                            "a whole model saved with torch.save(model), or a checkpoint with other objects; adakit "
                            "does not unpickle objects (that can run any code). Where it was made, save the weights "
                            f"alone: torch.save(model.state_dict(), '{p.name}') (or checkpoint['state_dict'])"
                            ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DataError(f"model.weights {p}: cannot read as a torch state dict ({type(err).__name__}: {first}): the "
                        "file is truncated or corrupt, or torch.save did not write it; copy or download it again, or "
                        "save the weights with torch.save(model.state_dict(), path)") from None
    _load_state(net, state, f"model.weights {p}", backbone, heads)


def _timm(name: str, weights: str | None, in_chans: int) -> nn.Module:
    """``timm.create_model(name, num_classes=0)``: pooled features of size ``out_dim``."""
    try:
        import timm
    except ImportError:
        raise ConfigError(f"model.backbone=timm/{name} needs timm, which is not installed: "
                          "pip install 'timm>=0.9'  (the adakit 'timm' extra)") from None
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        raise ConfigError(f"model.backbone=timm/{name}: timm has no model {name!r}"
                          + (f"; similar: {', '.join(close)}" if close else "; see timm.list_models()"))
    pretrained = weights == IMAGENET
    try:
        net = timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans)
    except Exception as err:  # network / hub errors of the pretrained download
        if not pretrained:
            raise
        cfg = timm.models.get_pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None)
        source = f"the Hugging Face hub ({hub_id})" if hub_id else (getattr(cfg, "url", None) or "timm's hub")
        hf = os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub"
        raise ConfigError(
            f"model.weights=imagenet for timm/{name}: cannot get the pretrained weights from {source} "
            f"({type(err).__name__}: {err}). On a machine with network run python -c \"import timm; "
            f"timm.create_model('{name}', pretrained=True)\" and copy the Hugging Face cache {hf} to the same "
            f"place here, or save the weights as a state dict and give model.weights: /path/to/file.pth "
            "(adakit features: --weights PATH)"
        ) from None
    if weights and not pretrained:  # the classifier timm names too (inception_v4's last_linear, volo's aux_head, ...)
        named = (getattr(net, "pretrained_cfg", None) or {}).get("classifier") or ()
        named = (named,) if isinstance(named, str) else tuple(named)
        load_weights(net, weights, f"timm/{name}", HEAD_PREFIXES + tuple(f"{c}." for c in named))
    mean = tuple(getattr(net, "pretrained_cfg", {}).get("mean", IMAGENET_MEAN))
    if weights and mean != IMAGENET_MEAN:
        warnings.warn(f"timm/{name} was trained with input mean {mean}; adakit's image domains normalise with the "
                      f"ImageNet mean {IMAGENET_MEAN}", stacklevel=2)
    net.out_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
    return net


def build_backbone(cfg, input_shape: tuple[int, ...]) -> nn.Module:
    """Backbone for `ModelConfig` and the domain's input shape; ``out_dim`` gives the feature size."""
    kind = check_backbone_name(cfg.backbone)
    if kind == "custom":
        raise ConfigError("model.backbone=custom is your own nn.Module: pass it as ActiveLoop(model=...)")
    if len(input_shape) not in (1, 3) or 0 in input_shape:
        raise ConfigError(f"model.backbone={kind!r} takes feature vectors (N, d) or images (N, C, H, W), but each "
                          f"sample has shape {tuple(input_shape)}; reshape the data: X.reshape(len(X), -1) for "
                          "feature rows, X[:, None] for one-channel images (N, H, W), or pass your own module as "
                          "ActiveLoop(model=...)")
    is_image = len(input_shape) == 3
    is_timm = kind.startswith("timm/")
    if kind in FEATURE_BACKBONES and is_image:
        raise ConfigError(f"model.backbone={kind!r} takes feature vectors, but the data are images "
                          f"{input_shape}; use lenet, {', '.join(TORCHVISION)} or timm/<name>")
    if (kind in IMAGE_BACKBONES or is_timm) and not is_image:
        raise ConfigError(f"model.backbone={kind!r} takes images, but the data are feature vectors "
                          f"{input_shape}; use mlp or identity")
    if cfg.weights == IMAGENET and not (is_timm or kind in TORCHVISION):
        raise ConfigError(f"model.weights=imagenet: {kind!r} has no ImageNet weights; use it for "
                          f"{', '.join(TORCHVISION)} or timm/<name>, or give a local state-dict file")
    if kind == "identity":
        if cfg.weights:  # (it was ignored, and the backbone learning rate multiplier applied all the same)
            raise ConfigError(f"model.weights={cfg.weights!r}: the identity backbone has no weights; remove "
                              "model.weights")
        return Identity(input_shape[0])
    if kind == "mlp":
        net = MLP(input_shape[0], cfg.hidden_dim, cfg.dropout)  # (model.weights: a state dict of this MLP)
    elif kind == "lenet":
        if min(input_shape[1:]) < LENET_MIN_SIZE:
            raise ConfigError(f"model.backbone='lenet' needs images of at least {LENET_MIN_SIZE}x{LENET_MIN_SIZE} "
                              "pixels (two 5x5 convolutions, each followed by a 2x2 pooling), got "
                              f"{input_shape[1]}x{input_shape[2]}; use larger images (data.image_size for image "
                              "files; resize arrays) or another backbone (resnet18, mobilenet_v2, or mlp on "
                              "X.reshape(len(X), -1))")
        net = LeNet(input_shape[0])
    elif is_timm:
        return _timm(kind.removeprefix("timm/"), cfg.weights, input_shape[0])
    else:
        if kind == "vit_b_16" and tuple(input_shape[1:]) != (224, 224):
            raise ConfigError(f"model.backbone=vit_b_16 takes 224x224 images, got {input_shape[1:]}; set "
                              "data.image_size: 224")
        net = _torchvision(kind)
        if cfg.weights == IMAGENET:
            _load_state(net, imagenet_state_dict(kind), f"torchvision ImageNet weights for {kind}", kind)
            return net
    if cfg.weights:
        load_weights(net, cfg.weights, kind)
    return net
