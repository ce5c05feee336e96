"""Backbones g: inputs -> feature vectors. torchvision models take weights from a local file only."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from adakit.errors import ConfigError, DataError


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
    import torchvision.models as tvm

    net = getattr(tvm, name)(weights=None)
    if name.startswith("resnet"):
        dim = net.fc.in_features
        net.fc = nn.Identity()
    else:  # mobilenet_v2
        dim = net.classifier[-1].in_features
        net.classifier = nn.Identity()
    net.out_dim = dim
    return net


def load_weights(net: nn.Module, path: str) -> None:
    """Load a state dict from a local file, ignoring classifier keys (fc./classifier.)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"model.weights: file not found: {p}. adakit never downloads weights; "
                        "download them once and give the local path.")
    state = torch.load(p, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items()
             if not k.startswith(("fc.", "classifier."))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(f"model.weights {p}: does not fit the backbone (missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]})")


def build_backbone(cfg, input_shape: tuple[int, ...]) -> nn.Module:
    """Backbone for `ModelConfig` and the domain's input shape; ``out_dim`` gives the feature size."""
    kind = cfg.backbone
    is_image = len(input_shape) == 3
    if kind in ("identity", "mlp") and is_image:
        raise ConfigError(f"model.backbone={kind!r} takes feature vectors, but the data are images "
                          f"{input_shape}; use lenet, resnet18, resnet50 or mobilenet_v2")
    if kind in ("lenet", "resnet18", "resnet50", "mobilenet_v2") and not is_image:
        raise ConfigError(f"model.backbone={kind!r} takes images, but the data are feature vectors "
                          f"{input_shape}; use mlp or identity")
    if kind == "identity":
        return Identity(input_shape[0])
    if kind == "mlp":
        return MLP(input_shape[0], cfg.hidden_dim, cfg.dropout)
    if kind == "lenet":
        return LeNet(input_shape[0])
    net = _torchvision(kind)
    if cfg.weights:
        load_weights(net, cfg.weights)
    return net
