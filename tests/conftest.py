import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def _data_root() -> Path | None:
    env = os.environ.get("ADAKIT_DATA")
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[1].parent / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), None)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder; tests using it skip with a reason when it is absent."""
    root = _data_root()
    if root is None:
        pytest.skip("shared data not found: set ADAKIT_DATA or put ../shared/data beside the repository")
    return root


@pytest.fixture
def office31_features(data_root) -> Path:
    p = data_root / "office31" / "features-mobilenetv2"
    if not p.is_dir():
        pytest.skip(f"{p} not found")
    return p
