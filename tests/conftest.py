import os
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# A checkout with the project's data folder beside it (as on the development machines and in CI) needs no
# ADAKIT_DATA; elsewhere set it to a folder prepared with `adakit data prepare`.
_beside = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get("ADAKIT_DATA") and _beside.is_dir():
    os.environ["ADAKIT_DATA"] = str(_beside)


def _data_root() -> Path | None:
    """$ADAKIT_DATA (the data folder: office31/, digits/, models/ as `adakit data prepare` writes them)."""
    env = os.environ.get("ADAKIT_DATA")
    return Path(env) if env and Path(env).is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder; tests using it skip with a reason when it is absent."""
    root = _data_root()
    if root is None:
        pytest.skip("real data not found: set ADAKIT_DATA to the data folder (see CONTRIBUTING.md)")
    return root


@pytest.fixture
def office31_features(data_root) -> Path:
    p = data_root / "office31" / "features-mobilenetv2"
    if not p.is_dir():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture
def unlabelled_target_config(tmp_path):
    """Writes a 3-class npz source (labelled) and target (every label -1, `data.unlabelled_value`) into tmp_path;
    returns ``make(objective=None, **train)``, which writes a CPU config over them and returns its path."""
    import numpy as np
    import yaml

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 6))
    ys = np.repeat(np.arange(3), 40)
    np.savez(tmp_path / "src.npz", feat=centres[ys] + rng.normal(0, 1, (120, 6)), y=ys)
    np.savez(tmp_path / "tgt.npz", feat=centres[ys] + 1.0 + rng.normal(0, 1, (120, 6)), y=np.full(120, -1))

    def make(objective: str | None = None, **train) -> Path:
        cfg = {"seed": 0, "data": {"format": "npz", "root": str(tmp_path), "source": "src", "target": "tgt",
                                   "unlabelled_value": -1},
               "model": {"hidden_dim": 16, "bottleneck_dim": 8}, "budget": {"total": 0.0, "rounds": 0},
               "train": {"threads": 1, "device": "cpu", **train}}
        if objective:
            cfg["objective"] = {"name": objective}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        return tmp_path / "c.yaml"

    return make


#: adakit's documented CPU steps: scikit-learn / faiss k-means, and the k-means weights (N values) that the seeding
#: draws with numpy. Host copies made inside them are expected on every device.
CPU_STEPS = frozenset({"_cpu_kmeans", "_host_weights"})


class HostCopies(TorchFunctionMode):
    """Records each tensor of ≥ ``rows`` rows taken to the host (``cpu()``, ``numpy()``, ``tolist()``,
    ``__array__``; ``.to("cpu")`` too with ``to_cpu``, where the CPU is not the computation's device) as
    (function, the adakit function that asked, shape), except inside one of `CPU_STEPS`. Calls that are no-ops
    on a CPU tensor count: on a GPU they would copy."""

    HOST = {torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.__array__}

    def __init__(self, rows: int, to_cpu: bool = False):
        super().__init__()
        self.rows, self.to_cpu = rows, to_cpu
        self.copies: list[tuple[str, str, tuple[int, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t = args[0] if args else None
        to_cpu = self.to_cpu and func is torch.Tensor.to and any(
            isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu" for a in (*args[1:2],
                                                                                         kwargs.get("device")))
        if (func in self.HOST or to_cpu) and isinstance(t, torch.Tensor) and t.dim() and t.shape[0] >= self.rows:
            where, frame = None, sys._getframe(1)
            while frame is not None:
                if frame.f_globals.get("__name__", "").startswith("adakit"):
                    if frame.f_code.co_name in CPU_STEPS:
                        break
                    where = where or f"{frame.f_globals['__name__']}.{frame.f_code.co_name}"
                frame = frame.f_back
            else:
                self.copies.append((func.__name__, where or "?", tuple(t.shape)))
        return func(*args, **kwargs)


@pytest.fixture
def gpu_kmeans_pp_schedule(monkeypatch):
    """k-means++ on the CPU with the GPU's refresh schedule (`KMEANS_PP_CPU_REFRESH`), so that a seed draws the
    same picks on both devices (BADGE, SAGE's kmeans_pp diversity); the CUDA comparisons use it."""
    from adakit.query import _algorithms

    monkeypatch.setattr(_algorithms, "KMEANS_PP_CPU_REFRESH", _algorithms.KMEANS_PP_DEVICE_REFRESH)


@pytest.fixture
def host_copies():
    """`HostCopies`: ``with (mode := host_copies(rows)): ...``, then ``mode.copies``."""
    return HostCopies


def readme_python_blocks(heading: str, stop: str = "\n### ") -> list[str]:
    """The ```python blocks of the README from ``heading`` up to the next ``stop`` (default: the next heading of
    level 3 or less)."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    part = readme.split(heading, 1)[1]
    ends = [i for s in {stop, "\n## "} if (i := part.find(s)) >= 0]
    return re.findall(r"```python\n(.*?)```", part[:min(ends, default=len(part))], flags=re.S)


@pytest.fixture
def readme_python():
    """`readme_python_blocks`, for tests that run the README's snippets."""
    return readme_python_blocks
