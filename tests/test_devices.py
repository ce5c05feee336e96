"""One device check (`adakit.devices.check_device`) for train.device, `adakit.select`, `forward_domain` and
``adakit features``: a CUDA device this machine lacks, a CUDA index beyond the device count, and device types
adakit does not run on (mps, xpu, meta) are `ConfigError`s naming the value, never torch's raw errors. "No such
device" is simulated by patching ``torch.cuda.is_available`` / ``device_count`` (as the code sees them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import adakit
from adakit.cli import app
from adakit.data.domain import TensorDomain
from adakit.devices import check_device
from adakit.errors import ConfigError
from adakit.inference import forward_domain
from adakit.models import Model
from adakit.models.backbones import Identity
from adakit.models.heads import LinearHead

OTHER_TYPES = ["mps", "xpu", "meta"]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_check_device_names_what_is_wrong(no_cuda):
    assert check_device("cpu") == torch.device("cpu") and check_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"^x='cuda' but no CUDA device is available; use auto or cpu$"):
        check_device("cuda", "x")
    with pytest.raises(ConfigError, match="x='gpu0' is not a torch device"):
        check_device("gpu0", "x")
    for name in OTHER_TYPES:
        with pytest.raises(ConfigError, match=f"x='{name}': adakit runs on cpu or cuda devices"):
            check_device(name, "x")
    assert check_device("meta", "x", extra_types=("meta",)) == torch.device("meta")


def test_check_device_checks_the_cuda_index_against_the_device_count(one_gpu):
    assert check_device("cuda:0") == torch.device("cuda:0") and check_device("auto") == torch.device("cuda")
    with pytest.raises(ConfigError, match=r"x='cuda:1' but torch sees 1 CUDA device\(s\)"):
        check_device("cuda:1", "x")


@pytest.mark.parametrize("device", ["cuda", *OTHER_TYPES, torch.device("meta")])
def test_select_refuses_a_device_it_cannot_use(no_cuda, device):
    p = np.full((10, 3), 1 / 3)
    with pytest.raises(ConfigError, match=r"adakit\.select\('margin'\): device="):
        adakit.select("margin", probs=p, budget=2, device=device)


def test_select_checks_the_cuda_index(one_gpu):
    with pytest.raises(ConfigError, match=r"adakit\.select\('badge'\): device='cuda:3' but torch sees 1 CUDA"):
        adakit.select("badge", probs=np.full((10, 3), 1 / 3), embeddings=np.zeros((10, 4)), budget=2,
                      device="cuda:3")


def _model_and_domain() -> tuple[Model, TensorDomain]:
    dom = TensorDomain(name="t", classes=["a", "b"], ids=np.array(["t/0", "t/1"]), y=np.array([0, 1]),
                       x=torch.zeros(2, 4))
    return Model(Identity(4), None, LinearHead(4, 2)), dom


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps", "xpu"])
def test_forward_domain_refuses_a_device_it_cannot_use_and_leaves_the_model_as_it_was(no_cuda, device):
    model, dom = _model_and_domain()
    with pytest.raises(ConfigError, match=f"forward_domain: device='{device}'"):
        forward_domain(model, dom, device=device)
    assert model.training
    f, z = forward_domain(model, dom, device="auto")  # (no CUDA: the CPU)
    assert f.shape == (2, 4) and z.shape == (2, 2)


@pytest.fixture
def tiny_images(tmp_path):
    """2 classes x 1 random 40x40 RGB image."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "tiny" / c).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "tiny" / c / "0.png")
    return tmp_path / "tiny"


@pytest.mark.parametrize("device", ["cuda", "mps", "xpu", "meta"])
def test_features_command_refuses_a_device_it_cannot_use_without_a_traceback(no_cuda, tiny_images, tmp_path,
                                                                              device):
    out = tmp_path / "f.npz"
    res = CliRunner().invoke(app, ["features", str(tiny_images), "--out", str(out), "--backbone", "resnet18",
                                   "--weights", str(tmp_path / "r18.pth"), "--device", device, "--quiet"])
    assert res.exit_code != 0 and not isinstance(res.exception, (RuntimeError, AssertionError)), res.output
    assert f"--device='{device}'" in res.output and "Traceback" not in res.output, res.output
    assert not out.exists()
