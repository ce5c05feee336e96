"""The one check of a device name, for every place that takes one: ``train.device`` (the loop, `load_run`,
``adakit predict``), `adakit.select`, `adakit.inference.forward_domain` and ``adakit features``."""

from __future__ import annotations

import torch

from adakit.errors import ConfigError

#: the device types adakit runs on
DEVICE_TYPES = ("cpu", "cuda")


def check_device(name: str | torch.device, what: str = "device", extra_types: tuple[str, ...] = ()) -> torch.device:
    """The torch device for ``name`` ("auto": CUDA when available, else the CPU); a `ConfigError` naming ``what``
    for a name torch does not know, a CUDA device this machine lacks (no driver or GPU, or an index beyond the
    device count), or a device type other than cpu, cuda and ``extra_types``."""
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"{what}={name!r} is not a torch device ({e}); use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        resume = " (a stopped run goes on here with `adakit resume RUN --set train.device=cpu`)" \
            if what == "train.device" else ""
        raise ConfigError(f"{what}={name!r} but no CUDA device is available; use auto or cpu{resume}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{what}={name!r} but torch sees {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in (*DEVICE_TYPES, *extra_types):
        raise ConfigError(f"{what}={name!r}: adakit runs on cpu or cuda devices; use auto, cpu or cuda")
    return dev
