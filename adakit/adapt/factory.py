"""`adakit.objective`: an objective by name for your own training loop."""

from __future__ import annotations

from typing import Any

from adakit.adapt.base import Objective
from adakit.errors import ConfigError
from adakit.params import whole_number


def objective(name: str | type[Objective], *, feature_dim: int, num_classes: int, pool_size: int = 0,
              **params: Any) -> Objective:
    """Build a registered objective (``adakit methods`` lists them) to use in your own training loop.

    Args:
        name: a registered name (``"dann"``, ``"cdan_e"``, ``"mstn"``, ``"biwaa"``, ``"gsda"``, ``"mme"``, ...) or
            an `Objective` subclass.
        feature_dim: width m of the features your head reads (the discriminators' input).
        num_classes: number of classes C (the logits' width).
        pool_size: size of the target pool; BIWAA keeps a per-sample memory of its rows (pass
            ``target_indices=`` to `Objective.losses`).
        **params: the objective's parameters (``adakit methods dann`` lists them); unknown keys are errors.

    Returns:
        The objective, an ``nn.Module`` in training mode on the CPU: move it with ``.to(device)``, put its
        parameters (discriminators) in your optimizer beside your model's, call ``.train()`` / ``.eval()`` with
        your model, and get each step's loss terms from `Objective.losses`. Its ``state_dict`` holds the
        discriminators and moving statistics (MSTN's centroids, BIWAA's memory): checkpoint it with your model.
    """
    from adakit.registry import OBJECTIVES

    if isinstance(name, Objective):
        raise ConfigError(f"adakit.objective: got a {type(name).__name__} instance, which is built already; pass "
                          "a registered name or an Objective subclass")
    cls = OBJECTIVES.resolve(name, "adakit.objective")
    label = getattr(cls, "name", cls.__name__)
    sizes = {}
    for key, value, low in (("feature_dim", feature_dim, 1), ("num_classes", num_classes, 2),
                            ("pool_size", pool_size, 0)):
        sizes[key] = whole_number(value)
        if sizes[key] is None or sizes[key] < low:
            raise ConfigError(f"adakit.objective({label!r}): {key}= must be a whole number ≥ {low}, got {value!r}")
    obj_params = cls.Params.validated(params, f"objective({label!r})")
    try:
        cls.head_for(obj_params)  # e.g. omega='mme' (a cosine head) with an objective that needs the linear one
    except ConfigError as e:
        raise ConfigError(f"adakit.objective({label!r}): {e}") from None
    obj = cls(obj_params, **sizes)
    if getattr(obj, "warmup_runs", 1) > 1:
        raise ConfigError(f"adakit.objective({label!r}): runs={obj.warmup_runs} trains the warm-up from scratch "
                          "several times, which is ActiveLoop's job; in your own loop use runs=1 ('biwaa')")
    if obj.per_sample_memory and sizes["pool_size"] < 1:
        raise ConfigError(f"adakit.objective({label!r}) keeps a memory per target sample: pass pool_size= (the "
                          "number of samples in the target pool, labelled ones included) and target_indices= (their "
                          "positions in it) to losses()")
    return obj
