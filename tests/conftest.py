import os
from pathlib import Path

import pytest
import torch

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
