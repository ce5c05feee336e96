"""Model = backbone g -> bottleneck -> head c; ``forward`` returns features f and logits z."""

from __future__ import annotations

import torch
from torch import nn

from adakit.models.backbones import build_backbone
from adakit.models.grl import grad_reverse, grl_schedule
from adakit.models.heads import Bottleneck, CosineHead, LinearHead

__all__ = ["Model", "build_model", "grad_reverse", "grl_schedule"]


class Model(nn.Module):
    """Backbone + bottleneck (features f ∈ R^m) + head (logits z ∈ R^C)."""

    def __init__(self, backbone: nn.Module, bottleneck: nn.Module | None, head: nn.Module,
                 pretrained_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.bottleneck = bottleneck if bottleneck is not None else nn.Identity()
        self.head = head
        self.pretrained_backbone = pretrained_backbone
        self.feature_dim = bottleneck.out_dim if bottleneck is not None else backbone.out_dim
        self.num_classes = head.weight.shape[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.backbone(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.head(f)

    def param_groups(self, lr: float, backbone_mult: float) -> list[dict]:
        """Backbone at ``backbone_mult``·lr when pretrained (the field's 0.1×), new layers at lr."""
        mult = backbone_mult if self.pretrained_backbone else 1.0
        groups = [{"params": list(self.backbone.parameters()), "lr_mult": mult},
                  {"params": list(self.bottleneck.parameters()) + list(self.head.parameters()), "lr_mult": 1.0}]
        return [g for g in groups if g["params"]]


def build_model(cfg, input_shape: tuple[int, ...], num_classes: int) -> Model:
    backbone = build_backbone(cfg, input_shape)
    dim = backbone.out_dim
    bottleneck = Bottleneck(dim, cfg.bottleneck_dim, cfg.dropout) if cfg.bottleneck_dim > 0 else None
    if bottleneck is not None:
        dim = cfg.bottleneck_dim
    head = CosineHead(dim, num_classes, cfg.temperature) if cfg.head == "cosine" else LinearHead(dim, num_classes)
    return Model(backbone, bottleneck, head, pretrained_backbone=bool(cfg.weights))
