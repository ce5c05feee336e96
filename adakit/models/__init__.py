"""Model = backbone g -> bottleneck -> head c; ``forward`` returns features f and logits z."""

from __future__ import annotations

import torch
from torch import nn

from adakit.errors import ConfigError
from adakit.models.backbones import build_backbone
from adakit.models.grl import grad_reverse, grl_schedule
from adakit.models.heads import Bottleneck, CosineHead, LinearHead

__all__ = ["CustomBackbone", "Model", "build_model", "grad_reverse", "grl_schedule"]


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


class CustomBackbone(nn.Module):
    """A user ``nn.Module`` mapping an input batch to features; its output is flattened to (N, out_dim).

    ``out_dim`` comes from one dry forward (eval mode, no gradients) on ``sample`` (a couple of inputs).
    """

    def __init__(self, module: nn.Module, sample: torch.Tensor):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ConfigError(f"model=: expected a torch nn.Module mapping an input batch to features, got "
                              f"{type(module).__name__}")
        self.module = module
        param = next(iter(module.parameters()), None)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                out = module(sample.to(param.device if param is not None else "cpu"))
        except Exception as e:  # noqa: BLE001 - any failure of user code is reported with the input shape
            raise ConfigError(f"model=: your module failed on a batch of shape {tuple(sample.shape)} "
                              f"({type(e).__name__}: {e}); it must map inputs of that shape to features") from None
        finally:
            module.train(was_training)
        if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != sample.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"model=: your module must return one feature tensor (N, d) for a batch of N "
                              f"inputs; it returned {shape} for {tuple(sample.shape)}")
        self.out_dim = int(out[0].numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        if not isinstance(out, torch.Tensor) or out.dim() < 2 or out[0].numel() != self.out_dim:
            mode = "training" if self.module.training else "eval"
            got = (f"{tuple(out.shape)} ({out[0].numel() if out.dim() > 1 else 'no'} features per input)"
                   if isinstance(out, torch.Tensor) else type(out).__name__)
            raise ConfigError(f"model=: in {mode} mode your module returned {got} for a batch of shape "
                              f"{tuple(x.shape)}; it must return one (N, {self.out_dim}) feature tensor in both modes, "
                              "as in its first call (torchvision's GoogLeNet / Inception3 return extra outputs in "
                              "training mode: build them with aux_logits=False)")
        return out.flatten(1)


def build_model(cfg, input_shape: tuple[int, ...], num_classes: int, backbone: nn.Module | None = None,
                sample: torch.Tensor | None = None) -> Model:
    """Model for `ModelConfig`; with ``model.backbone=custom`` the user's ``backbone`` module is wrapped in a
    `CustomBackbone` (feature size from a dry forward on ``sample``, default zeros of ``input_shape``), and
    it trains at ``train.backbone_lr_mult`` × lr like a pretrained backbone."""
    if cfg.backbone == "custom":
        if backbone is None:
            raise ConfigError("model.backbone=custom: this run uses your own nn.Module; pass it again "
                              "(ActiveLoop(model=...), ActiveLoop.resume(..., model=...), load_run(..., backbone=...))")
        if sample is None:
            sample = torch.zeros(2, *input_shape)
        custom = CustomBackbone(backbone, sample)
        return _assemble(cfg, custom, num_classes, pretrained=True)
    if backbone is not None:
        raise ConfigError(f"model.backbone={cfg.backbone!r} is built by adakit; a module given as model= needs "
                          "model.backbone=custom (set automatically by ActiveLoop(model=module))")
    return _assemble(cfg, build_backbone(cfg, input_shape), num_classes, pretrained=bool(cfg.weights))


def _assemble(cfg, backbone: nn.Module, num_classes: int, pretrained: bool) -> Model:
    dim = backbone.out_dim
    bottleneck = Bottleneck(dim, cfg.bottleneck_dim, cfg.dropout) if cfg.bottleneck_dim > 0 else None
    if bottleneck is not None:
        dim = cfg.bottleneck_dim
    head = CosineHead(dim, num_classes, cfg.temperature) if cfg.head == "cosine" else LinearHead(dim, num_classes)
    return Model(backbone, bottleneck, head, pretrained_backbone=pretrained)
