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
